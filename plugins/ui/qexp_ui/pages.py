"""The HTML pages: experiments, runs, a run, an artifact, compare, sweep and rolling. Every page is rendered
on the server with its data in the HTML; JavaScript only adds charts, sorting without reload and live
updates."""
from __future__ import annotations

import os
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from qexp.ext import (
    PARENT_TAG,
    ROLLING_WINDOW_RUN_PARAM,
    ROLLING_WINDOW_TAG,
    SWEEP_TAG,
    ArtifactPathError,
    FilterSyntaxError,
    PageTokenError,
    QexpError,
)

from . import artifacts as arts, quant
from .formatting import now_ms
from .store import Page, UIStore
from .table import PAGE_SIZES, RunsQuery, available_keys, default_columns
from .web import HTTPError, json_script, load_run, render, run_ids, store_of, valid_run_ids

MAX_COMPARE = 50
COUNT_IDS_UP_TO = 1000  # ids a refused compare request counts, to say how many were given


def add_routes(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse)
    def experiments(request: Request, deleted: int = 0) -> Response:
        st = store_of(request)
        summary = st.summary()
        rows = []
        for e in st.experiments():
            s = summary.get(str(e.id), {})
            rows.append({"id": str(e.id), "name": e.name, "counts": s.get("counts", {}), "total": s.get("total", 0),
                         "last": s.get("last_activity")})
        gone = st.deleted_experiments() if deleted else None
        return render(request, "experiments.html", experiments=rows, deleted=gone or [], show_deleted=bool(deleted),
                      keeps_deleted=gone is not None, statuses=["RUNNING", "FINISHED", "FAILED", "SCHEDULED"])

    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request) -> Response:
        st = store_of(request)
        q = RunsQuery.from_params(request.query_params)
        fragment = bool(request.query_params.get("fragment"))  # a refresh of the table by the page's script
        names = st.experiment_names()
        unknown = [e for e in q.exp_ids if e not in names]
        if unknown:
            raise HTTPError(404, "Experiment not found", f"no experiment with id {', '.join(unknown)} in "
                                                         f"{st.manager.uri}")
        error, status = None, 200
        try:
            q.check_order()
            page = st.runs_page(q.exp_ids or None, q.filter, q.order_list(), q.size, q.token)
        except PageTokenError as exc:  # a token of another search, or damaged: say so, offer the first page
            error, status, page = f"{exc}\n(the link to the first page below starts the search again)", 400, \
                Page([], None, 0)
        except FilterSyntaxError as exc:
            error, status, page = str(exc), 400, Page([], None, 0)
        if not q.chosen:
            q.columns = default_columns(page.rows)
        total = None
        if not q.filter and st.fast_counts():
            summary = st.summary()
            total = sum(summary.get(e, {}).get("total", 0) for e in (q.exp_ids or names))
        keys = None if fragment else available_keys(page.rows)  # the chooser asks /api/keys for the others
        ctx = dict(q=q, page=page, error=error, names=names, total=total, heartbeats=st.heartbeats(page.rows),
                   keys=keys, sizes=PAGE_SIZES, now=now_ms(), multi_exp=len(q.exp_ids) != 1,
                   live=any(r["status"] == "RUNNING" for r in page.rows))
        return render(request, "_runs_table.html" if fragment else "runs.html", status=status, **ctx)

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> Response:
        st = store_of(request)
        row, rec = load_run(request, run_id)
        artifact_list = rec.list_artifacts(recursive=True)
        tags = row["tags"]
        parent_id = tags.get(PARENT_TAG) or None
        parent = st.run_row(parent_id) if parent_id else None
        children = st.children(run_id)
        metric_keys = sorted(row["metrics"])
        config_yaml, config_error = None, None
        if "config" in artifact_list:
            config_yaml, config_error = saved_config(request, rec)
        backtest = backtest_of(request, rec, artifact_list)
        exp_name = st.experiment_names().get(row["experiment_id"], row["experiment_id"])
        data = {"run_id": run_id, "status": row["status"], "start_time": row["start_time"],
                "metric_keys": metric_keys, "backtest": backtest["curves"] if backtest else None}
        single = {k for k in metric_keys if request.app.state.history.known_count(run_id, k) == 1}
        return render(request, "run.html", row=row, rec=rec, parent=parent, children=children,
                      metric_keys=[k for k in metric_keys if not k.startswith("system/")],
                      scalar_keys=[k for k in metric_keys if k in single and not k.startswith("system/")],
                      system_keys=[k for k in metric_keys if k.startswith("system/")],
                      tree=arts.tree(artifact_list), images=[a for a in artifact_list if arts.content_type(a)],
                      config_yaml=config_yaml, config_error=config_error, exp_name=exp_name,
                      rerun=rerun_command(request, row, exp_name) if config_yaml else None,
                      backtest=backtest, heartbeat=rec.last_heartbeat_ms() if row["status"] == "RUNNING" else None,
                      data_json=json_script(data), now=now_ms(), is_sweep=bool(tags.get(SWEEP_TAG)),
                      is_rolling=quant.is_rolling_combined(tags), is_window=quant.is_rolling_window(tags))

    @app.get("/runs/{run_id}/artifact", response_class=HTMLResponse)
    def artifact_page(request: Request, run_id: str, path: str = "") -> Response:
        row, rec = load_run(request, run_id)
        pv = read_artifact(arts.preview, rec, run_id, path)
        clean = arts.clean_artifact_path(path) or ""
        return render(request, "artifact.html", row=row, path=clean, preview=pv, parts=clean.split("/"))

    @app.get("/runs/{run_id}/artifact/raw")
    def artifact_raw(request: Request, run_id: str, path: str = "") -> Response:
        _, rec = load_run(request, run_id)
        data = read_artifact(arts.read, rec, run_id, path)
        ctype = arts.content_type(path)
        if ctype:
            return Response(data, media_type=ctype, headers={"Cache-Control": "private, max-age=60"})
        name = os.path.basename(path).replace('"', "") or "artifact"
        # anything else is a download: never rendered by the browser as a page of this origin
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/runs/{run_id}/config.yaml")
    def config_yaml(request: Request, run_id: str) -> Response:
        _, rec = load_run(request, run_id)
        text, error = saved_config(request, rec)
        if text is None:
            raise HTTPError(404, "No config", f"run {run_id} saved no config that can be shown ({error})")
        return PlainTextResponse(text, media_type="application/x-yaml",
                                 headers={"Content-Disposition": f'attachment; filename="config_{run_id[:8]}.yaml"'})

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request) -> Response:
        st = store_of(request)
        ids = run_ids(request, COUNT_IDS_UP_TO)
        if not 2 <= len(ids) <= MAX_COMPARE:
            given = str(len(ids)) if len(ids) < COUNT_IDS_UP_TO else f"{COUNT_IDS_UP_TO} or more"
            raise HTTPError(400, "Pick 2 to 50 runs", f"compare takes 2 to {MAX_COMPARE} runs; {given} given. "
                                                      f"Tick them in a runs table and press Compare.")
        rows = st.rows_for(ids)
        missing = [r for r in ids if r not in {x["run_id"] for x in rows}]
        if missing:
            raise HTTPError(404, "Run not found", f"no run with id {', '.join(missing)} in {st.manager.uri}")
        show_all = request.query_params.get("all") == "1"
        pkeys = sorted({k for r in rows for k in r["params"]})
        differing = quant.varying_params([r["params"] for r in rows])
        mkeys = sorted({k for r in rows for k in r["metrics"]})
        backtests: dict[str, dict[str, Any]] = {}
        for r in rows:
            try:
                rec = st.recorder(r["run_id"])
                bt = backtest_of(request, rec, rec.list_artifacts(recursive=True))
            except QexpError:
                bt = None
            if bt:
                backtests[r["run_id"]] = bt
        risk_keys = sorted({k for bt in backtests.values() for k in bt["risk"]})
        numeric = [k for k in differing if all(quant.as_number(r["params"].get(k)) is not None for r in rows)]
        objective = request.query_params.get("metric") or quant.pick_objective({"tags": {}}, rows)
        sweepish = len(rows) >= 3 and bool(differing) or any(r["tags"].get(SWEEP_TAG) for r in rows)
        shown_metrics = [k for k in mkeys if not k.startswith("system/")]
        data = {"runs": [{"run_id": r["run_id"], "name": r["run_name"] or r["run_id"][:8]} for r in rows],
                "metric_keys": shown_metrics,
                "backtests": {k: v["curves"] for k, v in backtests.items() if v.get("curves")},
                "parcoords": quant.parcoords(rows, differing, objective) if sweepish else None,
                "scatter": {"params": numeric or differing, "metrics": shown_metrics, "objective": objective,
                            "points": [{"run_id": r["run_id"], "name": r["run_name"], "params": r["params"],
                                        "metrics": {k: quant.as_number(v) for k, v in r["metrics"].items()}}
                                       for r in rows]} if sweepish else None}
        return render(request, "compare.html", rows=rows, pkeys=pkeys, differing=set(differing), show_all=show_all,
                      mkeys=mkeys, backtests=backtests, risk_keys=risk_keys, data_json=json_script(data),
                      sweepish=sweepish, ids=ids, objective=objective)

    @app.get("/sweeps/{run_id}", response_class=HTMLResponse)
    def sweep_page(request: Request, run_id: str) -> Response:
        st = store_of(request)
        row, _ = load_run(request, run_id)
        children = st.children(run_id)
        parent_id = row["tags"].get(PARENT_TAG)
        if not children and parent_id and row["tags"].get(SWEEP_TAG):
            return RedirectResponse(f"/sweeps/{parent_id}", status_code=303)  # a trial: show its sweep
        if not children:
            raise HTTPError(404, "Not a sweep", f"run {run_id} has no trial runs (children tagged "
                                                f"{PARENT_TAG} = {run_id})")
        objective = request.query_params.get("metric") or None
        # fANOVA fits a forest: computed again only when a trial changes
        version = tuple((c["run_id"], c["status"], c["end_time"], tuple(sorted(map(str, c["metrics"].items()))))
                        for c in children)
        sw = request.app.state.derived.get_by((run_id, f"sweep:{objective}"), version,
                                              lambda: quant.sweep(row, children, objective=objective))
        metric_choices = sorted({k for c in children for k in c["metrics"] if not k.startswith("system/")})
        data = {"objective": sw.objective, "goal": sw.goal,
                "trials": [{"number": t["number"], "value": t["value"], "run_id": t["run_id"], "state": t["state"]}
                           for t in sw.trials],
                "parcoords": quant.parcoords(children, sw.params, sw.objective),
                "importance": sw.importance}
        return render(request, "sweep.html", row=row, sweep=sw, metric_choices=metric_choices,
                      data_json=json_script(data))

    @app.get("/rolling/{run_id}", response_class=HTMLResponse)
    def rolling_page(request: Request, run_id: str) -> Response:
        st = store_of(request)
        row, rec = load_run(request, run_id)
        tags, params = row["tags"], row["params"]
        if quant.is_rolling_window(tags):  # a window run: show the combined run it belongs to
            combined = combined_of(st, run_id, tags.get(ROLLING_WINDOW_TAG, ""))
            if combined:
                return RedirectResponse(f"/rolling/{combined}", status_code=303)
        if not quant.is_rolling_combined(tags) and quant.ROLLING_IC not in row["metrics"]:
            raise HTTPError(404, "Not a rolling run", f"run {run_id} is not the combined run of a `qexp rolling` "
                                                      f"(tag qexp.rolling, params rolling.window.<i>.test)")
        ic_by_step: dict[int, float | None] = {}
        if quant.ROLLING_IC in row["metrics"]:
            ic_by_step = quant.ic_steps(request.app.state.history.series(rec, quant.ROLLING_IC))
        linked = [v for k, v in params.items() if k.startswith("rolling.window.") and k.endswith(".run_id")]
        window_rows = {r["run_id"]: r for r in st.rows_for(valid_run_ids(linked))}
        windows = quant.rolling_windows(params, ic_by_step, window_rows)
        combined_ic = quant.as_number(row["metrics"].get("IC"))
        data = {"windows": windows, "combined_ic": combined_ic}
        return render(request, "rolling.html", row=row, windows=windows, combined_ic=combined_ic,
                      windows_exp=params.get("exp_name") or tags.get(quant.ROLLING_TAG), data_json=json_script(data))


def read_artifact(read: Callable[[Any, str], Any], rec: Any, run_id: str, path: str) -> Any:
    """``read(rec, path)`` (a preview or the raw bytes) with the artifact pages' errors: 400 for a path the
    store refuses, 404 for a file the run does not have."""
    try:
        return read(rec, path)
    except ArtifactPathError as exc:
        raise HTTPError(400, "Artifact path refused", str(exc)) from None
    except (FileNotFoundError, IsADirectoryError, QexpError) as exc:
        raise HTTPError(404, "Artifact not found", f"run {run_id} has no artifact file {path!r} ({exc})") from None


def saved_config(request: Request, rec: Any) -> tuple[str | None, str | None]:
    """The run's saved ``config`` as YAML (read through the restricted unpickler only), or why not."""
    def compute() -> tuple[str | None, str | None]:
        try:
            return arts.to_yaml(arts.unpickle(rec.read_artifact("config"))), None
        except Exception as exc:  # noqa: BLE001 - refused by the unpickler, missing, damaged: say which
            return None, f"{type(exc).__name__}: {exc}"
    return request.app.state.derived.get(rec, "config", ["config"], compute)


def backtest_of(request: Request, rec: Any, artifacts: list[str]) -> dict[str, Any] | None:
    """The run's backtest curves and risk table, computed once per version of its reports."""
    used = [a for a in artifacts if a.startswith("portfolio_analysis/")]
    if not used:
        return None
    return request.app.state.derived.get(rec, "backtest", used, lambda: quant.load_backtest(rec, artifacts))


def combined_of(st: UIStore, run_id: str, window: str) -> str | None:
    """The combined rolling run that names ``run_id`` as its window ``window``."""
    if not window.isdigit():
        return None
    rows = st.manager.search_rows(None, filter_string=f"params.`{ROLLING_WINDOW_RUN_PARAM.format(window)}` = "
                                                      f"'{run_id}'", max_results=1)
    return rows[0]["run_id"] if rows else None


def rerun_command(request: Request, row: dict[str, Any], exp_name: str) -> str:
    """One shell line that writes the run's saved config to a file and runs it again in the same store."""
    import shlex
    uri = request.app.state.config.uri
    name = f"rerun_{row['run_id'][:8]}.yaml"
    return (f"qexp runs export-config {row['run_id']} -o {name} --uri {shlex.quote(uri)} && "
            f"qexp run {name} --uri {shlex.quote(uri)} --experiment-name {shlex.quote(exp_name)}")

