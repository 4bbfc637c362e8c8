"""``qexp sweep CONFIG --space SPACE.yaml``: a hyperparameter sweep on Optuna, one child run per trial."""
from __future__ import annotations

import sys

import click

SPACE_HELP = ("The space, in the format of W&B sweeps: method (grid, random, tpe), metric {name, goal} and "
              "parameters keyed by dotted config paths. Default: the config's 'sweep:' key.")


@click.command("sweep")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--space", "space_path", type=click.Path(dir_okay=False), default=None, help=SPACE_HELP)
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="How many trials in all (default: run_cap of the space; grid: every point).")
@click.option("--executor", default=None, metavar="URI",
              help="Where trials run: local (default), process://N, dask://HOST:PORT, dask+local://N.")
@click.option("--experiment-name", default=None, help="Experiment of the parent run and the trials (default: the "
              "config's experiment_name).")
@click.option("--uri", envvar="QEXP_URI", default=None, help="Tracking store URI (overrides qlib_init).")
@click.option("--resume", default=None, metavar="SWEEP_ID", help="Continue this sweep: only the missing trials run.")
@click.option("--study-uri", default=None, metavar="URI",
              help="Where the Optuna study is kept (default: STORE/.qexp/sweeps.sqlite for a file store, else a "
                   "SQLite file under ~/.qexp/sweeps); e.g. postgresql://... for workers on several machines.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override any config key for every trial (repeatable).")
@click.option("--max-parallel", type=click.IntRange(min=1), default=None, metavar="K",
              help="Trials running at once (default: the executor's workers).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="How many more times a trial whose worker died is run.")
@click.option("--seed", type=int, default=None, help="Seed of the sampler (default: the space's seed).")
def sweep_cmd(config: str, space_path: str | None, trials: int | None, executor: str | None,
              experiment_name: str | None, uri: str | None, resume: str | None, study_uri: str | None,
              overrides: tuple[str, ...], max_parallel: int | None, retries: int, seed: int | None) -> None:
    """Sweep CONFIG's hyperparameters: a parent run, one child run per trial, then the best config, the top
    trials and the parameter importance."""
    from .driver import run_sweep
    from .report import print_report

    def echo(line: str) -> None:
        click.echo(line, err=True)

    result = run_sweep(config, space_path, trials=trials, executor=executor, experiment_name=experiment_name,
                       uri=uri, resume=resume, study_uri=study_uri, overrides=list(overrides),
                       max_parallel=max_parallel, retries=retries, seed=seed, echo=echo)
    print_report(result, click.echo)
    sys.stdout.flush()
