"""``qexp runs``: list, show, compare, delete runs, and re-run the records of one."""
from __future__ import annotations

import datetime as _dt
import textwrap
from typing import Any

import click

from .common import announce_store, experiment_ids, fail, find_recorder, manager, uri_option
from .output import Col, print_fitted_table, print_json, print_table, terminal_width

SHORT_ID = 8  # characters of a run id shown in tables; any unique prefix of 4 or more is accepted back


@click.group("runs")
def runs_group() -> None:
    """Runs (recorders). RUN arguments take a full run id or a unique prefix (the 8 characters listed)."""


# The headline metrics of Qlib's records, shown by `qexp runs list` when no --metric is given.
LIST_METRICS = {"IC": "IC", "ICIR": "ICIR", "Rank IC": "Rank IC",
                "1day.excess_return_with_cost.annualized_return": "excess\n(cost)",
                "1day.excess_return_with_cost.information_ratio": "IR\n(cost)",
                "1day.excess_return_with_cost.max_drawdown": "max DD\n(cost)"}
COST_LEGEND = "(cost): the 1day excess return with cost: annualized, information ratio, max drawdown"
LIST_MAX_OTHER = 6


def _iso(ms: Any) -> str | None:
    if ms is None:
        return None
    return _dt.datetime.fromtimestamp(int(ms) / 1000, tz=_dt.timezone.utc).isoformat()


def _local_minute(ms: Any) -> str:
    if ms is None:
        return ""
    return _dt.datetime.fromtimestamp(int(ms) / 1000).strftime("%Y-%m-%d %H:%M")


def json_rows(rows: list[dict], exp_names: dict[str, str]) -> list[dict]:
    """The ``--json`` form of search rows: the columns of ``search_records`` (every key on every row, null
    where a run lacks it) plus ``experiment_name`` and ``run_name``."""
    keys = {kind: sorted({k for r in rows for k in r[kind]}) for kind in ("metrics", "params", "tags")}
    out = []
    for r in rows:
        d: dict[str, Any] = {"run_id": r["run_id"], "experiment_id": r["experiment_id"],
                             "experiment_name": exp_names.get(str(r["experiment_id"])),
                             "run_name": r.get("run_name") or r["tags"].get("mlflow.runName"),
                             "status": r.get("status"), "artifact_uri": r.get("artifact_uri"),
                             "start_time": _iso(r.get("start_time")), "end_time": _iso(r.get("end_time"))}
        for kind, ks in keys.items():
            d.update({f"{kind}.{k}": r[kind].get(k) for k in ks})
        out.append(d)
    return out


@runs_group.command("list")
@uri_option
@click.option("--exp", multiple=True, help="Experiment name or id (repeatable; default: all).")
@click.option("--filter", "filter_string", default="", help="MLflow-style filter, e.g. \"metrics.IC > 0.02\".")
@click.option("--order-by", multiple=True, help="e.g. \"metrics.IC DESC\" (repeatable).")
@click.option("--max", "max_results", type=click.IntRange(min=1), default=None, help="At most this many runs.")
@click.option("--metric", "-m", "metrics", multiple=True,
              help="A metric column to show (repeatable; default: IC, ICIR, Rank IC and the excess return "
                   "with cost when the runs have them, else the first few metrics).")
@click.option("--json", "as_json", is_flag=True,
              help="Every column of every run, as JSON (NaN and +-inf as the strings \"nan\", \"inf\", \"-inf\"; "
                   "null: not logged).")
def runs_list(uri: str | None, exp: tuple[str, ...], filter_string: str, order_by: tuple[str, ...],
              max_results: int | None, metrics: tuple[str, ...], as_json: bool) -> None:
    """List runs, newest first, with their headline metrics (one line each, at any terminal width)."""
    from qexp.exceptions import FilterSyntaxError
    m = manager(uri)
    announce_store(m)
    exp_names = {e.id: e.name for e in m.list_experiments().values()}
    try:
        rows = m.search_rows(experiment_ids(m, exp), filter_string=filter_string, order_by=list(order_by),
                             max_results=max_results)
    except FilterSyntaxError as exc:
        fail(str(exc))
    if as_json:
        print_json(json_rows(rows, exp_names))
        return
    present = sorted({k for r in rows for k in r["metrics"]})
    if metrics:
        unknown = [k for k in metrics if k not in present]
        if unknown and rows:
            fail(f"no run listed has metric(s) {', '.join(map(repr, unknown))}; the metrics are: "
                 f"{', '.join(present) or 'none'}")
        shown = {k: k for k in metrics}
    else:
        shown = {k: label for k, label in LIST_METRICS.items() if k in present}
        if not shown:
            shown = {k: k for k in present[:LIST_MAX_OTHER]}
    # when even shortened names do not fit: the start time goes first, then the last two metrics, the status,
    # then more metrics from the right (the id, the names and the first metric always stay)
    n = len(shown)
    cols = [Col("run"), Col("experiment", fixed=False, min_width=6), Col("name", fixed=False, min_width=8),
            Col("status", drop=4), Col("started", drop=1)]
    cols += [Col(label, drop=None if i == 0 else (2 + (n - 1 - i) if n - 1 - i < 2 else 3 + (n - 1 - i)),
                 right=True) for i, label in enumerate(shown.values())]
    table = [[r["run_id"][:SHORT_ID], exp_names.get(str(r["experiment_id"]), r["experiment_id"]),
              r.get("run_name") or r["tags"].get("mlflow.runName") or "", r.get("status") or "",
              _local_minute(r.get("start_time"))] + [r["metrics"].get(k) for k in shown] for r in rows]
    dropped = print_fitted_table(cols, table)
    hidden = len(present) - len(shown) + sum(1 for d in dropped if d in shown.values())
    width = terminal_width()
    if any("(cost)" in label for label in shown.values() if label not in dropped):
        click.echo(textwrap.fill(COST_LEGEND, width))
    note = f"{len(rows)} run(s)"
    if hidden > 0:
        note += f"; {hidden} more metric(s): pick columns with --metric NAME, or --json for all"
    if [d for d in dropped if d not in shown.values()]:
        note += f"; left out to fit the width: {', '.join(d for d in dropped if d not in shown.values())}"
    click.echo(textwrap.fill(note, width))


@runs_group.command("show")
@uri_option
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True)
def runs_show(uri: str | None, run_id: str, as_json: bool) -> None:
    """Show one run: info, params, latest metrics, tags and artifacts."""
    m = manager(uri)
    announce_store(m)
    rec = find_recorder(m, run_id)
    data: dict[str, Any] = {"info": rec.info, "params": rec.list_params(), "metrics": rec.list_metrics(),
                            "tags": rec.list_tags(), "artifacts": rec.list_artifacts(recursive=True),
                            "artifact_uri": rec.get_artifact_uri()}
    if as_json:
        print_json(data)
        return
    print_table(["field", "value"], [[k, v] for k, v in data["info"].items()] +
                [["artifact_uri", data["artifact_uri"]]], title=f"run {rec.id}")
    for section in ("params", "metrics", "tags"):
        if data[section]:
            print_table(["key", "value"], sorted(data[section].items()), title=section)
    if data["artifacts"]:
        print_table(["artifact"], [[a] for a in data["artifacts"]], title="artifacts")


@runs_group.command("compare")
@uri_option
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN RUN...")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all-params", is_flag=True, help="Show params that are equal across runs too.")
def runs_compare(uri: str | None, run_ids: tuple[str, ...], as_json: bool, all_params: bool) -> None:
    """Params and metrics of several runs side by side (params that differ, unless --all-params)."""
    if len(run_ids) < 2:
        fail("give at least two run ids to compare")
    m = manager(uri)
    announce_store(m)
    recs = [find_recorder(m, r) for r in run_ids]
    params = [r.list_params() for r in recs]
    metrics = [r.list_metrics() for r in recs]
    pkeys = sorted({k for p in params for k in p})
    if not all_params:
        pkeys = [k for k in pkeys if len({p.get(k) for p in params}) > 1]
    mkeys = sorted({k for m_ in metrics for k in m_})
    if as_json:
        print_json({"runs": [r.id for r in recs], "params": {k: [p.get(k) for p in params] for k in pkeys},
                    "metrics": {k: [m_.get(k) for m_ in metrics] for k in mkeys}})
        return
    header = ["key"] + [f"{r.name or ''} {(r.id or '')[:SHORT_ID]}" for r in recs]
    rows: list[list[Any]] = [[f"params.{k}", *[p.get(k) for p in params]] for k in pkeys]
    rows += [[f"metrics.{k}", *[m_.get(k) for m_ in metrics]] for k in mkeys]
    print_table(header, rows, title="compare")


@runs_group.command("delete")
@uri_option
@click.argument("run_id", metavar="RUN")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def runs_delete(uri: str | None, run_id: str, yes: bool) -> None:
    """Delete a run."""
    m = manager(uri)
    rec = find_recorder(m, run_id)
    if not yes:
        click.confirm(f"Delete run {rec.id} ({rec.name})?", abort=True)
    m.get_exp(experiment_id=rec.experiment_id, create=False).delete_recorder(recorder_id=rec.id)
    click.echo(f"deleted run {rec.id}")


@runs_group.command("rerun-records")
@uri_option
@click.argument("run_id", metavar="RUN")
@click.option("--record", "records", multiple=True, metavar="CLASS",
              help="Only this record template of the run's task (repeatable, e.g. PortAnaRecord; default: all).")
def runs_rerun_records(uri: str | None, run_id: str, records: tuple[str, ...]) -> None:
    """Generate the records of a run's task again on the saved model: no new fit.

    For a backtest that failed after a long fit: fix what failed (the benchmark, the data), then re-run
    PortAnaRecord on the same run. The model is the run's params.pkl, the dataset is rebuilt from the saved
    task; a FAILED run whose records now all succeed ends FINISHED.
    """
    from qexp.workflow import rerun_records
    m = manager(uri)
    announce_store(m)
    rec = find_recorder(m, run_id)
    done = rerun_records(rec, list(records) or None)
    click.echo(f"re-ran {', '.join(done)} on run {rec.id} ({rec.status})")


def add_commands(cli: click.Group) -> None:
    cli.add_command(runs_group)
