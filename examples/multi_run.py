"""Several configs trained in parallel processes into one experiment, then compared with search_records.

    python examples/multi_run.py [--uri ./qexp_runs] [--workers 2]

Each worker process runs one variant of the LightGBM Alpha158 example (a different learning rate / leaves),
all into the experiment "lgb_sweep"; the file store's lock makes the shared experiment safe to create from
every process at once. The comparison is a plain DataFrame from R.search_records.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

CONFIG = Path(__file__).parent / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"
VARIANTS = {
    "lr0.2-leaves210": ["task.model.kwargs.learning_rate=0.2", "task.model.kwargs.num_leaves=210"],
    "lr0.05-leaves64": ["task.model.kwargs.learning_rate=0.05", "task.model.kwargs.num_leaves=64"],
    "lr0.1-leaves32": ["task.model.kwargs.learning_rate=0.1", "task.model.kwargs.num_leaves=32"],
}
EXPERIMENT = "lgb_sweep"


def train(name: str, overrides: list[str], uri: str, config: str, extra: list[str]) -> str:
    from qexp.workflow import load_workflow, run_workflow
    wf = load_workflow(config, overrides + ["task.model.kwargs.num_threads=1"] + extra, EXPERIMENT)
    rec = run_workflow(wf, uri)
    rec.set_tags(variant=name)
    return rec.id


def main(uri: str, workers: int = 2, config: str = str(CONFIG), extra: list[str] | None = None,
         variants: dict[str, list[str]] | None = None):
    import qexp
    from qexp import R
    variants = variants or VARIANTS
    # spawn, not fork: a forked child would inherit locks held by the parent's threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(train, name, ov, uri, config, extra or []) for name, ov in variants.items()}
        ids = {name: f.result() for name, f in futures.items()}
    qexp.init(uri=uri)
    exp = R.get_exp(experiment_name=EXPERIMENT, create=False)
    df = R.search_records([exp.id], filter_string="attributes.status = 'FINISHED'",
                          order_by=["metrics.`Rank IC` DESC"])
    cols = ["tags.variant", "params.model.kwargs.learning_rate", "params.model.kwargs.num_leaves", "metrics.IC",
            "metrics.Rank IC", "metrics.1day.excess_return_with_cost.annualized_return"]
    table = df[df["run_id"].isin(ids.values())][[c for c in cols if c in df.columns]]
    print(table.to_string(index=False))
    return ids, table


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--uri", default=os.environ.get("QEXP_URI", "./qexp_runs"))
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    main(os.path.abspath(a.uri), a.workers)
