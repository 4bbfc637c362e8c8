"""``qexp run CONFIG``: train a Qlib-style workflow YAML (``qrun`` is the same command)."""
from __future__ import annotations

import os
import re
import sys
from typing import Any

import click

from .errors import QexpCommand, debug, one_line
from .output import print_table
from .run_many import multirun_options, run_many_command


@click.command("run", cls=QexpCommand)
@click.argument("configs", metavar="CONFIG...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--experiment-name", default=None, help="Experiment to record into (default: the config's "
              "experiment_name, else 'workflow').")
@click.option("--uri", envvar="QEXP_URI", default=None, help="Tracking store URI (overrides qlib_init).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override any config key, value parsed as YAML (repeatable).")
@click.option("--dry-run", is_flag=True, help="Check everything a run checks before training (classes, constructor "
              "arguments, data folder, instruments, benchmark) and print the resolved task; create nothing.")
@click.option("--system-metrics", is_flag=True, help="Log system/* metrics (CPU, memory, disk, network, GPU, "
              "process) of each run, as MLflow names them (same as qlib_init.system_metrics: true).")
@click.option("--system-metrics-interval", type=float, default=None, metavar="S",
              help="Seconds between system-metric samples (default 10; 1 suits short runs).")
@multirun_options
def run_cmd(configs: tuple[str, ...], experiment_name: str | None, uri: str | None, overrides: tuple[str, ...],
            dry_run: bool, executor: str | None = None, max_parallel: int | None = None, retries: int = 2,
            system_metrics: bool = False, system_metrics_interval: float | None = None) -> None:
    """Run a workflow config: dataset, model fit and records, recorded as one run. Several configs (or
    --executor): each is run once, on the executor, and one table shows them all."""
    from qexp.workflow import load_workflow, run_workflow
    # as qlib_init settings, so they reach qexp.init in every worker and are saved with the config
    if system_metrics:
        overrides += ("qlib_init.system_metrics=true",)
    if system_metrics_interval is not None:
        overrides += (f"qlib_init.system_metrics_interval={system_metrics_interval}",)
    if len(configs) > 1 or executor is not None:
        if dry_run:
            for path in configs:
                _dry_run(load_workflow(path, list(overrides), experiment_name), uri)
            return
        run_many_command(list(configs), experiment_name, uri, list(overrides), executor, max_parallel, retries)
        return
    config = configs[0]
    wf = load_workflow(config, list(overrides), experiment_name)
    if dry_run:
        _dry_run(wf, uri)
        return
    try:
        rec = run_workflow(wf, uri)
    except (Exception, KeyboardInterrupt) as exc:
        if debug() or isinstance(exc, click.ClickException):
            raise
        run = wf.recorder
        note = ""
        if run is not None and run.id:
            note = (f"run {run.id[:8]} ({run.name}) in experiment {wf.experiment_name!r} is marked {run.status}; "
                    f"its config is saved: `qexp runs show {run.id[:8]}`")
        raise one_line(exc, note) from exc
    summarize(rec)


def _dry_run(wf: Any, uri: str | None) -> None:
    import yaml

    from qexp.workflow import dry_run
    report = dry_run(wf, uri)
    for note in report.warnings:
        click.echo(f"warning: {note}", err=True)
    if report.problems:
        raise click.ClickException("the config has problems:\n  " + "\n  ".join(report.problems))
    click.echo(yaml.safe_dump({"experiment_name": wf.experiment_name, "task": wf.config["task"]},
                              sort_keys=False, default_flow_style=None))
    _print_runtime(wf, uri)
    click.echo("config OK: every class resolves and takes its arguments, placeholders fill, segments are ordered, "
               "the data has the instruments and the benchmark" + (" (see the warnings above)" if report.warnings
                                                                    else ""), err=True)


def _print_runtime(wf: Any, uri: str | None) -> None:
    """The runtime settings the run would use (threads, caches, memory cache, logging, system metrics)."""
    import yaml

    from qexp.exceptions import ConfigError
    from qexp.log import validate as validate_logging
    from qexp.runtime import effective_runtime_settings, validate
    from qexp.workflow import init_settings
    settings = init_settings(wf.config, uri)
    try:
        validate(settings)
        validate_logging(settings)
        runtime = effective_runtime_settings(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(yaml.safe_dump({"runtime": runtime}, sort_keys=False, default_flow_style=False))


# Per-iteration training curves (``l2.valid``, ``rmse.train``, ``RMSE.valid``, ``l2.valid.sub2``, ``train_loss``)
# and sampled series (``system/...``): their last point is not a result of the run.
_CURVE_METRIC = re.compile(r"(^|[._])(train|valid)([._]|$)|^system/")


def _is_curve_metric(key: str) -> bool:
    return bool(_CURVE_METRIC.search(key))


def summarize(rec: Any) -> None:
    """The run's metrics, id, store and pictures."""
    from qexp import R
    from qexp.uri import local_path, uri_scheme
    metrics = rec.list_metrics()
    keys = sorted(k for k in metrics if not _is_curve_metric(k))
    rows = [[k, metrics[k]] for k in keys]
    print_table(["metric", "value"], rows, title=f"run {rec.id} ({rec.status})")
    store = R.get_uri()
    click.echo(f"run id:   {rec.id} (name {rec.name}; `qexp runs show {rec.id[:8]}` shows it)")
    click.echo(f"store:    {local_path(store) or store}")
    click.echo(f"stored:   {rec.get_artifact_uri()}")
    art = rec.get_artifact_uri()
    folder = local_path(art) if uri_scheme(art) in ("", "file") else None
    for pic in (a for a in rec.list_artifacts(recursive=True) if a.endswith(".png")):
        click.echo(f"picture:  {os.path.join(folder, *pic.split('/')) if folder else pic}")
    sys.stdout.flush()


def add_commands(cli: click.Group) -> None:
    cli.add_command(run_cmd)

