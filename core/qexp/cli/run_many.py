"""``qexp run A.yaml B.yaml ... [--executor URI] [--max-parallel K]``: many configs, one run each.

``qexp run`` hands over to :func:`run_many_command` when it gets more than one config or ``--executor``.
While the runs go, a live table (on a terminal) or one line per change (in logs) shows each config as
queued, running, finished or failed; at the end, the metrics of all runs. The exit status is the number of
configs that did not finish, capped at 100 (0: all finished).
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import click

from .output import print_table

EXECUTOR_HELP = ("Where the runs go: local (in this process, one after another), process://N (N processes on "
                 "this machine), dask://HOST:PORT (a running Dask scheduler), dask+local://N (a Dask cluster on "
                 "this machine for the call). Default: $QEXP_EXECUTOR, else local. Given, or with several "
                 "configs, `qexp run` runs them all and prints one table.")


def multirun_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``qexp run`` adds for many configs."""
    f = click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
                     help="How many more times a config whose worker died (killed, out of memory) is run; a config "
                          "that raises an error is not run again.")(f)
    f = click.option("--max-parallel", type=click.IntRange(min=1), default=None, metavar="K",
                     help="Submit at most K configs at a time (default: all; the executor runs as many as it "
                          "has workers).")(f)
    f = click.option("--executor", default=None, metavar="URI", help=EXECUTOR_HELP)(f)
    return f


def run_many_command(configs: list[str], experiment_name: str | None, uri: str | None, overrides: list[str],
                     executor: str | None, max_parallel: int | None, retries: int) -> None:
    """Run every config, show progress, print the table; exit with the number that did not finish."""
    from qexp.multirun import CANCELLED, FAILED, FINISHED, counts, exit_code, metrics_table, plain_progress, run_many
    live = _LiveTable() if sys.stderr.isatty() else None
    progress = live.update if live is not None else plain_progress()
    try:
        if live is not None:
            live.start()
        runs = run_many(configs, executor, experiment_name=experiment_name, uri=uri, overrides=overrides,
                        max_parallel=max_parallel, retries=retries, progress=progress)
    finally:
        if live is not None:
            live.stop()
    cols, rows = metrics_table(runs)
    c = counts(runs)
    print_table(cols, rows, title=f"{len(runs)} configs: {c[FINISHED]} finished, {c[FAILED]} failed"
                + (f", {c[CANCELLED]} cancelled" if c[CANCELLED] else ""))
    sys.stdout.flush()
    code = exit_code(runs)
    if code:
        click.echo(f"{code} config(s) did not finish; the exit status is their number (at most 100)", err=True)
        raise click.exceptions.Exit(code)


class _LiveTable:
    """The progress table on a terminal (rich Live on stderr, redrawn in place)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live
        self._runs: list[Any] = []
        self._live = Live(self, console=Console(stderr=True), refresh_per_second=4, transient=False)

    def start(self) -> None:
        self._live.start()

    def stop(self) -> None:
        self._live.stop()

    def update(self, runs: list[Any]) -> None:
        self._runs = runs
        self._live.refresh()

    def __rich__(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        from qexp.multirun import counts, progress_rows
        c = counts(self._runs)
        # plain text, never markup: a config name or an error may hold [brackets]
        table = Table(title=Text(" ".join(f"{k}: {v}" for k, v in c.items() if v) or "starting"))
        for col in ("config", "state", "time", "run", "error"):
            table.add_column(col, overflow="fold")
        for row in progress_rows(self._runs):
            table.add_row(*[Text(str(v)) for v in row])
        return table
