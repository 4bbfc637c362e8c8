"""``qexp runs report RUN_ID``: the signal and portfolio metrics of a run, and where its pictures are."""
from __future__ import annotations

import os
import re
from typing import Any

import click

from qexp.ext import uri_option

__all__ = ["add_commands", "report_cmd", "collect_report"]

SIGNAL_KEYS = ["IC", "ICIR", "Rank IC", "Rank ICIR", "Long-Short Ann Return", "Long-Short Ann Sharpe",
               "Long-Avg Ann Return", "Long-Avg Ann Sharpe", "MSE", "RMSE"]
RISK_NAMES = ["mean", "std", "annualized_return", "information_ratio", "max_drawdown"]
_PORT_RE = re.compile(r"^(?P<freq>\w+)\.excess_return_(?P<kind>with|without)_cost\.(?P<name>\w+)$")
_IND_RE = re.compile(r"^(?P<freq>\w+)\.(?P<name>ffr|pa|pos)$")
PICTURE_DIRS = ("sig_analysis", "portfolio_analysis")


def _picture_path(recorder: Any, artifact: str) -> str:
    """A local path of ``artifact``: in place for a file store, else a downloaded copy."""
    from qexp.ext import file_uri_to_path, uri_scheme
    try:
        root = recorder.get_artifact_uri()
    except Exception:
        root = ""
    if root and uri_scheme(root) in ("", "file"):
        path = os.path.join(file_uri_to_path(root), *artifact.split("/"))
        if os.path.exists(path):
            return path
    return recorder.download_artifact(artifact)


def collect_report(recorder: Any) -> dict[str, Any]:
    """``{"run", "signal": {key: value}, "portfolio": {freq: {name: {"without_cost", "with_cost"}}},
    "indicators": {freq: {ffr, pa, pos}}, "pictures": {artifact: local path}}`` for one recorder."""
    metrics = recorder.list_metrics()
    signal = {k: metrics[k] for k in SIGNAL_KEYS if k in metrics}
    portfolio: dict[str, dict[str, dict[str, float]]] = {}
    indicators: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        m = _PORT_RE.match(key)
        if m:
            row = portfolio.setdefault(m["freq"], {}).setdefault(m["name"], {})
            row[f"{m['kind']}_cost"] = value
            continue
        m = _IND_RE.match(key)
        if m:
            indicators.setdefault(m["freq"], {})[m["name"]] = value
    pictures = {}
    for folder in PICTURE_DIRS:
        for art in recorder.list_artifacts(folder):
            if art.endswith(".png"):
                pictures[art] = _picture_path(recorder, art)
    from .port_ana_record import BENCHMARK_TAG
    benchmark = recorder.list_tags().get(BENCHMARK_TAG) if portfolio else None
    return {"run": {"id": recorder.id, "name": recorder.name, "experiment_id": recorder.experiment_id,
                    "status": recorder.status},
            "signal": signal, "portfolio": portfolio, "benchmark": benchmark, "indicators": indicators,
            "pictures": pictures}


@click.command("report")
@uri_option
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def report_cmd(uri: str | None, run_id: str, as_json: bool) -> None:
    """Signal metrics (IC, ICIR, ...), portfolio risk analysis and the pictures of run RUN (an id or a unique
    prefix of one)."""
    from qexp.ext import QexpError, announce_store, cli_manager, find_recorder, print_json, print_table
    m = cli_manager(uri)
    announce_store(m)
    recorder = find_recorder(m, run_id)
    try:
        data = collect_report(recorder)
    except QexpError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        print_json(data)
        return
    run = data["run"]
    if not (data["signal"] or data["portfolio"] or data["indicators"]):
        click.echo(f"run {run['id']} has no signal or portfolio metrics yet; run SigAnaRecord / PortAnaRecord on "
                   f"it: qexp runs rerun-records {str(run['id'])[:8]} --record SigAnaRecord --record PortAnaRecord")
    if data["signal"]:
        print_table(["metric", "value"], list(data["signal"].items()),
                    title=f"signal analysis: run {run['id']} ({run['name'] or ''})")
    absolute = data["benchmark"] == "none"
    what = "return (no benchmark)" if absolute else "excess return"
    for freq, rows in sorted(data["portfolio"].items()):
        names = [n for n in RISK_NAMES if n in rows] + sorted(set(rows) - set(RISK_NAMES))
        print_table(["metric", f"{what} without cost", f"{what} with cost"],
                    [[n, rows[n].get("without_cost"), rows[n].get("with_cost")] for n in names],
                    title=f"portfolio analysis ({freq})" + (f", benchmark {data['benchmark']}" if data["benchmark"]
                                                            and not absolute else ""))
        if absolute:
            click.echo("the backtest had benchmark: null, so these are absolute returns (the metrics keep Qlib's "
                       "names excess_return_*)")
    for freq, ind in sorted(data["indicators"].items()):
        print_table(["indicator", "value"], [[k, ind[k]] for k in ("ffr", "pa", "pos") if k in ind],
                    title=f"trade indicators ({freq})")
    if data["pictures"]:
        print_table(["picture", "path"], list(data["pictures"].items()), title="pictures")


def add_commands(cli: click.Group) -> None:
    """Add ``report`` to the ``runs`` group of the ``qexp`` command."""
    runs = cli.commands.get("runs") if isinstance(cli, click.Group) else None
    if not isinstance(runs, click.Group):
        raise RuntimeError("the qexp command has no 'runs' group to add 'report' to")
    runs.add_command(report_cmd)
