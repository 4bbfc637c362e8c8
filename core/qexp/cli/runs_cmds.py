"""``qexp runs``: list, show, compare and delete runs."""
from __future__ import annotations

import click

from .common import experiment_ids, fail, manager, uri_option
from .output import print_json, print_table


@click.group("runs")
def runs_group() -> None:
    """Runs (recorders)."""


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


def add_commands(cli: click.Group) -> None:
    cli.add_command(runs_group)
