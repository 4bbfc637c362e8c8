# qexp: `make demo` runs the main job on the built-in synthetic market, `make test` the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# a Python with pyqlib 0.9.7 for the side-by-side benchmarks (see benchmarks/_qlib_peer.py)
QLIB_PYTHON ?= /tmp/qlibvenv/bin/python
STAMP := $(VENV)/.qexp-installed
DEMO_STAMP := $(VENV)/.qexp-demo-installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-gigabyte CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# the demo needs only the core, data, models (LightGBM) and records: the `demo` extra, not `dev` (torch,
# mlflow, wandb, pytest: about 1.8 GB); a venv made by `make install`/`make test` already has it all
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -f $(STAMP) || $(BIN)/python -m pip install -q --upgrade pip
	test -f $(STAMP) || $(BIN)/python -m pip install -q -e ".[demo]"
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/qexp run examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml
	@echo "The run is stored in $${QEXP_URI:-$(CURDIR)/qexp_runs} (the 'store:' line above); list it with: $(BIN)/qexp runs list"

# the example third-party plugin is installed for real, so its test goes through the packaging path a
# third party uses (its entry point, `qexp plugins`, `qexp run`)
test: $(STAMP)
	$(BIN)/python -m pip install -q --no-build-isolation -e examples/plugin
	$(BIN)/python -m pytest -q -p no:cacheprovider

# ruff and mypy (configured in pyproject.toml: mypy checks core/qexp, every plugin and the example plugin)
lint: $(STAMP)
	$(BIN)/ruff check core plugins tests benchmarks examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_tracking.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_backtest.py
	$(BIN)/python benchmarks/bench_models.py --zoo --zoo-fraction 0.1 --gbdt --gbdt-stocks 100
	$(BIN)/python benchmarks/bench_workflow.py
	$(BIN)/python benchmarks/bench_executors.py
	$(BIN)/python benchmarks/bench_rolling.py --qlib-python $(QLIB_PYTHON)
	$(BIN)/python benchmarks/bench_cache.py
	$(BIN)/python benchmarks/bench_cache.py --overhead --overhead-runs 2
	$(BIN)/python benchmarks/bench_ui.py --reduced

clean:
	rm -rf $(VENV) qexp_runs
