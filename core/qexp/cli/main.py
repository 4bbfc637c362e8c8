"""``qexp``: experiments, runs, plugins. Plugins add commands through the ``register_commands`` hook."""
from __future__ import annotations

import sys
from typing import Any

import click

from .output import print_json, print_table

uri_option = click.option("--uri", envvar="QEXP_URI", default=None,
                          help="Tracking store URI (default: $QEXP_URI, else ./qexp_runs).")


def manager(uri: str | None):
    """An ExpManager for the CLI's ``--uri`` (no run is started)."""
    from qexp.settings import create_manager
    return create_manager(uri)


def fail(msg: str) -> None:
    raise click.ClickException(msg)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qexp")
def cli() -> None:
    """qexp: experiment management for quantitative research (Qlib's R API and qrun, on plugins)."""


# ---- plugins ------------------------------------------------------------------------------------
@cli.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_cmd(show_all: bool, as_json: bool) -> None:
    """List installed plugins: name, version, hooks and the URI schemes they serve."""
    from qexp.plugins import get_plugins, load_errors
    plugins = get_plugins(all=show_all)
    if as_json:
        print_json(plugins)
        return
    rows = [[p["name"], p["version"], ", ".join(p["hooks"]),
             "; ".join(f"{k}: {', '.join(v)}" for k, v in p["schemes"].items())] for p in plugins]
    print_table(["name", "version", "hooks", "schemes"], rows)
    for name, err in load_errors().items():
        click.echo(f"warning: plugin {name!r} failed to load: {err}", err=True)


# ---- experiments --------------------------------------------------------------------------------
@cli.group("exp")
def exp_group() -> None:
    """Experiments."""


@exp_group.command("list")
@uri_option
@click.option("--json", "as_json", is_flag=True)
def exp_list(uri: str | None, as_json: bool) -> None:
    """List experiments."""
    exps = manager(uri).list_experiments()
    rows = [{"id": e.id, "name": e.name} for e in exps.values()]
    if as_json:
        print_json(rows)
    else:
        print_table(["id", "name"], [[r["id"], r["name"]] for r in rows])


@exp_group.command("delete")
@uri_option
@click.argument("name_or_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def exp_delete(uri: str | None, name_or_id: str, yes: bool) -> None:
    """Delete an experiment (by name, or by id) and its runs."""
    from qexp.exceptions import ExpNotFoundError
    m = manager(uri)
    try:
        exp = m.get_exp(experiment_name=name_or_id, create=False)
    except ExpNotFoundError:
        try:
            exp = m.get_exp(experiment_id=name_or_id, create=False)
        except ExpNotFoundError as exc:
            fail(str(exc))
    if not yes:
        click.confirm(f"Delete experiment {exp.name!r} (id {exp.id}) and all its runs?", abort=True)
    m.delete_exp(experiment_id=exp.id)
    click.echo(f"deleted experiment {exp.name!r} (id {exp.id})")


# ---- runs ---------------------------------------------------------------------------------------
@cli.group("runs")
def runs_group() -> None:
    """Runs (recorders)."""


def experiment_ids(m: Any, exp: tuple[str, ...]) -> list[str] | None:
    """Ids of the experiments named (by name, else by id) in a command's ``--exp`` options; None for none
    named (all). An unknown one is a clear CLI error. Plugin commands with ``--exp`` use this too."""
    from qexp.exceptions import ExpNotFoundError
    if not exp:
        return None
    ids = []
    for e in exp:
        try:
            ids.append(m.get_exp(experiment_name=e, create=False).id)
        except ExpNotFoundError:
            try:
                ids.append(m.get_exp(experiment_id=e, create=False).id)
            except ExpNotFoundError as exc:
                fail(str(exc))
    return ids


# The headline metrics of Qlib's records, shown by `qexp runs list` when no --metric is given.
LIST_METRICS = {"IC": "IC", "ICIR": "ICIR", "Rank IC": "Rank IC",
                "1day.excess_return_with_cost.annualized_return": "ann. excess (cost)",
                "1day.excess_return_with_cost.information_ratio": "IR (cost)",
                "1day.excess_return_with_cost.max_drawdown": "max DD (cost)"}
LIST_MAX_OTHER = 6


@runs_group.command("list")
@uri_option
@click.option("--exp", multiple=True, help="Experiment name or id (repeatable; default: all).")
@click.option("--filter", "filter_string", default="", help="MLflow-style filter, e.g. \"metrics.IC > 0.02\".")
@click.option("--order-by", multiple=True, help="e.g. \"metrics.IC DESC\" (repeatable).")
@click.option("--max", "max_results", type=int, default=None, help="At most this many runs.")
@click.option("--metric", "-m", "metrics", multiple=True,
              help="A metric column to show (repeatable; default: IC, ICIR, Rank IC and the excess return "
                   "with cost when the runs have them, else the first few metrics).")
@click.option("--json", "as_json", is_flag=True, help="Every column of every run, as JSON.")
def runs_list(uri: str | None, exp: tuple[str, ...], filter_string: str, order_by: tuple[str, ...],
              max_results: int | None, metrics: tuple[str, ...], as_json: bool) -> None:
    """List runs, newest first, with their headline metrics."""
    from qexp.exceptions import FilterSyntaxError
    m = manager(uri)
    try:
        df = m.search_records(experiment_ids(m, exp), filter_string=filter_string, order_by=list(order_by),
                              max_results=max_results)
    except FilterSyntaxError as exc:
        fail(str(exc))
    if as_json:
        print_json(df.to_dict(orient="records"))
        return
    present = [c[len("metrics."):] for c in df.columns if c.startswith("metrics.")]
    if metrics:
        unknown = [k for k in metrics if k not in present]
        if unknown and len(df):
            fail(f"no run listed has metric(s) {', '.join(map(repr, unknown))}; the metrics are: "
                 f"{', '.join(sorted(present)) or 'none'}")
        shown = {k: k for k in metrics}
    else:
        shown = {k: label for k, label in LIST_METRICS.items() if k in present}
        if not shown:
            shown = {k: k for k in sorted(present)[:LIST_MAX_OTHER]}
    cols = [c for c in ["run_id", "experiment_id", "tags.mlflow.runName", "status", "start_time"] if c in df.columns]
    metric_cols = [f"metrics.{k}" for k in shown if f"metrics.{k}" in df.columns]
    rows = [[str(r[c])[:19] if c == "start_time" else r[c] for c in cols + metric_cols] for _, r in df.iterrows()]
    header = [{"tags.mlflow.runName": "name", "experiment_id": "exp"}.get(c, c) for c in cols]
    print_table(header + [shown[c[len("metrics."):]] for c in metric_cols], rows)
    hidden = len(present) - len(metric_cols)
    if hidden > 0:
        click.echo(f"{len(df)} run(s); {hidden} more metric(s): pick columns with --metric NAME, or --json for all")


def _recorder(uri: str | None, run_id: str):
    from qexp.exceptions import QexpError
    try:
        return manager(uri).get_recorder_by_id(run_id)
    except QexpError as exc:
        fail(str(exc))


@runs_group.command("show")
@uri_option
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
def runs_show(uri: str | None, run_id: str, as_json: bool) -> None:
    """Show one run: info, params, latest metrics, tags and artifacts."""
    rec = _recorder(uri, run_id)
    data = {"info": rec.info, "params": rec.list_params(), "metrics": rec.list_metrics(), "tags": rec.list_tags(),
            "artifacts": rec.list_artifacts(recursive=True), "artifact_uri": rec.get_artifact_uri()}
    if as_json:
        print_json(data)
        return
    print_table(["field", "value"], [[k, v] for k, v in data["info"].items()] +
                [["artifact_uri", data["artifact_uri"]]], title=f"run {run_id}")
    for section in ("params", "metrics", "tags"):
        if data[section]:
            print_table(["key", "value"], sorted(data[section].items()), title=section)
    if data["artifacts"]:
        print_table(["artifact"], [[a] for a in data["artifacts"]], title="artifacts")


@runs_group.command("compare")
@uri_option
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--all-params", is_flag=True, help="Show params that are equal across runs too.")
def runs_compare(uri: str | None, run_ids: tuple[str, ...], as_json: bool, all_params: bool) -> None:
    """Params and metrics of several runs side by side (params that differ, unless --all-params)."""
    if len(run_ids) < 2:
        fail("give at least two run ids to compare")
    recs = [_recorder(uri, r) for r in run_ids]
    params = [r.list_params() for r in recs]
    metrics = [r.list_metrics() for r in recs]
    pkeys = sorted({k for p in params for k in p})
    if not all_params:
        pkeys = [k for k in pkeys if len({p.get(k) for p in params}) > 1]
    mkeys = sorted({k for m in metrics for k in m})
    if as_json:
        print_json({"runs": list(run_ids), "params": {k: [p.get(k) for p in params] for k in pkeys},
                    "metrics": {k: [m.get(k) for m in metrics] for k in mkeys}})
        return
    header = ["key"] + [f"{r.name or ''} {r.id[:8]}" for r in recs]
    rows = [[f"params.{k}"] + [p.get(k) for p in params] for k in pkeys]
    rows += [[f"metrics.{k}"] + [m.get(k) for m in metrics] for k in mkeys]
    print_table(header, rows, title="compare")


@runs_group.command("delete")
@uri_option
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def runs_delete(uri: str | None, run_id: str, yes: bool) -> None:
    """Delete a run."""
    m = manager(uri)
    rec = _recorder(uri, run_id)
    if not yes:
        click.confirm(f"Delete run {run_id} ({rec.name})?", abort=True)
    m.get_exp(experiment_id=rec.experiment_id, create=False).delete_recorder(recorder_id=run_id)
    click.echo(f"deleted run {run_id}")


# ---- index --------------------------------------------------------------------------------------
@cli.group("index")
def index_group() -> None:
    """The search index of a file store."""


@index_group.command("rebuild")
@uri_option
def index_rebuild(uri: str | None) -> None:
    """Rebuild the search index from the run folders (it is a cache; the folders are the truth)."""
    m = manager(uri)
    rebuild = getattr(m, "rebuild_index", None)
    if rebuild is None:
        fail(f"the {type(m).__name__} backend keeps no local index to rebuild")
    click.echo(f"indexed {rebuild()} runs in {m.uri}")


from .run_cmd import run_cmd  # noqa: E402

cli.add_command(run_cmd)


# ---- plugin commands ----------------------------------------------------------------------------
_commands_loaded = False


def get_cli() -> click.Group:
    """The ``qexp`` group with every plugin's commands added."""
    global _commands_loaded
    if not _commands_loaded:
        _commands_loaded = True
        from qexp.plugins import pm, load_plugins
        load_plugins()
        for impl in pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # a plugin's broken command must not break the CLI
                click.echo(f"warning: plugin {impl.plugin_name!r} failed to add its commands: {exc}", err=True)
    return cli


def main(argv: list[str] | None = None) -> None:
    get_cli()(args=argv, prog_name="qexp")


def qrun_main() -> None:
    """``qrun CONFIG``: the Qlib-style alias of ``qexp run CONFIG``."""
    get_cli()  # plugins loaded, as for `qexp run`
    run_cmd.main(args=sys.argv[1:], prog_name="qrun")


from . import migrate_cmd  # noqa: E402,F401  (adds `qexp runs migrate` to runs_group)
