"""The example third-party plugin package (examples/plugin), installed for real by `make test`
(pip install -e examples/plugin): found through its entry point, its model trains through `qexp run`, its
record template runs and its hook receives the run's end."""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..services import service_missing

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "examples" / "plugin" / "workflow_config_onefeature.yaml"
SMALL = ["task.dataset.kwargs.handler.kwargs.start_time=2016-01-01",
         "task.dataset.kwargs.handler.kwargs.end_time=2019-12-31",
         "task.dataset.kwargs.segments.train=[2016-01-01, 2017-12-31]",
         "task.dataset.kwargs.segments.valid=[2018-01-01, 2018-12-31]",
         "task.dataset.kwargs.segments.test=[2019-01-01, 2019-12-31]"]


@pytest.fixture(scope="module")
def installed() -> None:
    try:
        md.distribution("qexp-example-plugin")
    except md.PackageNotFoundError:
        service_missing("the example plugin is not installed: `make test` installs it (pip install -e examples/plugin)")


def qexp_cli(*args: str, env_extra: dict[str, str] | None = None, cwd: Path | None = None):
    env = {**os.environ, **(env_extra or {})}
    env.pop("QEXP_LOAD_PLUGINS", None)  # every installed plugin loads, as for a user
    return subprocess.run([sys.executable, "-m", "qexp", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_listed_by_qexp_plugins(installed):
    p = qexp_cli("plugins", "--json")
    assert p.returncode == 0, p.stderr
    example = {x["name"]: x for x in json.loads(p.stdout)}["example"]
    assert example["version"] == "0.1.0" and not example["builtin"] and example["module"] == "qexp_example.plugin"
    assert example["hooks"] == ["recorder_ended", "register_models", "register_record_templates"]
    assert sorted(example["components"]) == ["OneFeature", "TopkExcessRecord"]


def test_model_record_and_hook_through_qexp_run(installed, tmp_path):
    from qexp_data.synth import SynthParams, write_synth
    market = tmp_path / "market"
    write_synth(market, SynthParams(instruments=40, start="2016-01-01", end="2019-12-31", seed=3))
    store, journal = tmp_path / "runs", tmp_path / "journal.jsonl"
    args = ["run", str(CONFIG), "--uri", str(store), "--set", f"qlib_init.provider_uri={market}"]
    for s in SMALL:
        args += ["--set", s]
    p = qexp_cli(*args, env_extra={"QEXP_EXAMPLE_JOURNAL": str(journal)}, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]

    from qexp_example import OneFeature

    import qexp
    from qexp import R
    qexp.init(uri=str(store))
    runs = R.search_records()
    assert len(runs) == 1
    rec = R.get_recorder(recorder_id=runs["run_id"].iloc[0])
    assert rec.status == "FINISHED"
    model = rec.load_object("params.pkl")
    assert isinstance(model, OneFeature) and model.sign in (1.0, -1.0)  # trained
    excess = rec.load_object("example/topk_excess.pkl")
    assert len(excess) > 200  # one value per test day of 2019
    assert rec.list_metrics()["example.topk_excess"] == pytest.approx(float(excess.mean()))
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert [(x["run_id"], x["status"]) for x in lines] == [(rec.id, "FINISHED")]
    assert lines[0]["metrics"]["example.topk_excess"] == pytest.approx(float(excess.mean()))
