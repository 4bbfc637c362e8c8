"""``qexp rolling CONFIG``: retrain the config's model every ``--step`` trading days and evaluate the
combined predictions (Qlib's ``python -m qlib.contrib.rolling``)."""
from __future__ import annotations

import click

from .common import fail
from .output import print_table


@click.command("rolling")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--step", type=int, default=20, show_default=True, help="Trading days between retrains (and the "
              "length of each test window).")
@click.option("--horizon", type=int, default=20, show_default=True, help="Prediction horizon in trading days: "
              "rewrites an Alpha158/Alpha360 label and truncates each train/valid end by horizon + 1 days.")
@click.option("--rtype", type=click.Choice(["expanding", "sliding"]), default="expanding", show_default=True,
              help="expanding: the train start stays; sliding: every segment moves.")
@click.option("--executor", default=None, metavar="URI", help="Where the windows train: local (default, in "
              "order in this process), process://N, dask://HOST:PORT, ...")
@click.option("--experiment-name", default="rolling", show_default=True, help="Experiment of the combined run "
              "(the window runs go to NAME_models).")
@click.option("--uri", envvar="QEXP_URI", default=None, help="Tracking store URI (overrides qlib_init).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override any config key, value parsed as YAML (repeatable).")
@click.option("--roll-fit-window", is_flag=True, help="Refit the processors (normalisers) on each window's "
              "train segment (Qlib keeps them fit on the config's fit window).")
def rolling_cmd(config: str, step: int, horizon: int, rtype: str, executor: str | None, experiment_name: str,
                uri: str | None, overrides: tuple[str, ...], roll_fit_window: bool) -> None:
    """Rolling retrain of a workflow config: each window's run holds its predictions; one combined run holds
    them all and the config's analysis records."""
    from ..exceptions import QexpError
    from ..task.rolling import Rolling, day_text
    from .run_cmd import summarize
    try:
        rolling = Rolling(config, exp_name=experiment_name, horizon=horizon, step=step, rtype=rtype,
                          executor=executor, uri=uri, overrides=list(overrides), roll_fit_window=roll_fit_window)
        rec = rolling.run()
    except QexpError as exc:
        fail(str(exc))
    rows = []
    for i, (task, r, ic) in enumerate(zip(rolling._tasks, rolling._recs, rolling.window_ics)):
        start, end = task["dataset"]["kwargs"]["segments"]["test"]
        rows.append([i, day_text(start), day_text(end), r.id, ic])
    print_table(["window", "test start", "test end", "run", "IC"], rows,
                title=f"{len(rows)} windows in experiment {rolling.rolling_exp}")
    summarize(rec)


def add_commands(cli: click.Group) -> None:
    cli.add_command(rolling_cmd)
