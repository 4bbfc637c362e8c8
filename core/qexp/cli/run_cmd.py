"""``qexp run CONFIG``: train a Qlib-style workflow YAML (``qrun`` is the same command)."""
from __future__ import annotations

import sys

import click

from .output import print_table


@click.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--experiment-name", default=None, help="Experiment to record into (default: the config's "
              "experiment_name, else 'workflow').")
@click.option("--uri", envvar="QEXP_URI", default=None, help="Tracking store URI (overrides qlib_init).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override any config key, value parsed as YAML (repeatable).")
@click.option("--dry-run", is_flag=True, help="Validate the config and print the resolved task; train nothing.")
def run_cmd(config: str, experiment_name: str | None, uri: str | None, overrides: tuple[str, ...],
            dry_run: bool) -> None:
    """Run a workflow config: dataset, model fit and records, recorded as one run."""
    import yaml

    from qexp.exceptions import ConfigError, QexpError
    from qexp.workflow import apply_sys, check_provider, init_settings, load_workflow, run_workflow, validate
    try:
        wf = load_workflow(config, list(overrides), experiment_name)
    except ConfigError as exc:
        raise click.ClickException(str(exc))
    if dry_run:
        apply_sys(wf.config, wf.path.parent)
        problems = validate(wf.config) + check_provider(init_settings(wf.config, uri))
        if problems:
            raise click.ClickException("the config has problems:\n  " + "\n  ".join(problems))
        click.echo(yaml.safe_dump({"experiment_name": wf.experiment_name, "task": wf.config["task"]},
                                  sort_keys=False, default_flow_style=None))
        click.echo("config OK: every class resolves, placeholders fill, segments are ordered", err=True)
        return
    try:
        rec = run_workflow(wf, uri)
    except ConfigError as exc:
        raise click.ClickException(str(exc))
    except QexpError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}")
    summarize(rec)


def summarize(rec) -> None:  # type: ignore[no-untyped-def]
    """The run's metrics, id, store and pictures."""
    metrics = rec.list_metrics()
    keys = sorted(k for k in metrics if not k.startswith(("l2.", "train_", "valid_")) and "." not in k[:1])
    rows = [[k, metrics[k]] for k in keys]
    print_table(["metric", "value"], rows, title=f"run {rec.id} ({rec.status})")
    click.echo(f"run id:   {rec.id}")
    click.echo(f"stored:   {rec.get_artifact_uri()}")
    pictures = [a for a in rec.list_artifacts(recursive=True) if a.endswith(".png")]
    local = None
    try:
        local = rec.get_local_dir()
    except RuntimeError:
        pass
    for pic in pictures:
        click.echo(f"picture:  {local + '/artifacts/' + pic if local else pic}")
    sys.stdout.flush()


def add_commands(cli: click.Group) -> None:
    cli.add_command(run_cmd)
