"""The HTML pages: experiments, runs, a run, an artifact, compare, sweep and rolling. Every page is rendered
on the server with its data in the HTML; JavaScript only adds charts, sorting without reload and live
updates."""
from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from qexp.ext import ArtifactPathError, FilterSyntaxError, QexpError

from . import artifacts as arts, quant
from .formatting import now_ms
from .store import Page
from .table import PAGE_SIZES, RunsQuery, available_keys, default_columns
from .web import HTTPError, heartbeat_ms, json_script, live_info, load_run, render, store_of

MAX_COMPARE = 50


def add_routes(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse)
    def experiments(request: Request, deleted: int = 0) -> Response:
        st = store_of(request)
        exps = st.experiments()
        summary = st.summary()
        rows = []
        for e in exps:
            s = summary.get(str(e.id), {})
            rows.append({"id": str(e.id), "name": e.name, "counts": s.get("counts", {}), "total": s.get("total", 0),
                         "last": s.get("last_activity")})
        gone = st.deleted_experiments() if deleted else []
        return render(request, "experiments.html", experiments=rows, deleted=gone, show_deleted=bool(deleted),
                      can_list_deleted=callable(getattr(st.manager, "list_deleted_experiments", None)),
                      statuses=["RUNNING", "FINISHED", "FAILED", "SCHEDULED"])

    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request) -> Response:
        st = store_of(request)
        q = RunsQuery.from_params(request.query_params)
        names = st.experiment_names()
        unknown = [e for e in q.exp_ids if e not in names]
        if unknown:
            raise HTTPError(404, "Experiment not found", f"no experiment with id {', '.join(unknown)} in "
                                                         f"{st.manager.uri}")
        error, status = None, 200
        try:
            q.check_order()
            page = st.runs_page(q.exp_ids or None, q.filter, q.order_list(), q.size, q.token, q.start)
        except FilterSyntaxError as exc:
            error, status, page = str(exc), 400, Page([], None, 0, None)
        except QexpError as exc:  # e.g. a page token from another search
            error, status, page = str(exc), 400, Page([], None, 0, None)
        if not q.chosen:
            q.columns = default_columns(page.rows)
        total = None
        if not q.filter and st.fast_counts():
            summary = st.summary()
            total = sum(summary.get(e, {}).get("total", 0) for e in (q.exp_ids or names))
        ctx = dict(q=q, page=page, error=error, names=names, total=total, heartbeats=live_info(st, page.rows),
                   keys=available_keys(page.rows), sizes=PAGE_SIZES, now=now_ms(),
                   multi_exp=len(q.exp_ids) != 1)
        template = "_runs_table.html" if request.query_params.get("fragment") else "runs.html"
        return render(request, template, status=status, **ctx)

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> Response:
        st = store_of(request)
        row, rec = load_run(request, run_id)
        history = request.app.state.history
        artifact_list = rec.list_artifacts(recursive=True)
        tags = row["tags"]
        parent_id = tags.get(quant.PARENT_TAG) or None
        parent = st.run_row(parent_id) if parent_id else None
        children = st.children(run_id)
        counts = history.cached_counts(rec)
        metric_keys = sorted(set(row["metrics"]) | set(counts))
        config_yaml, config_error = None, None
        if "config" in artifact_list:
            try:
                config_yaml = arts.to_yaml(arts.unpickle(rec.read_artifact("config")))
            except Exception as exc:
                config_error = f"{type(exc).__name__}: {exc}"
        backtest = quant.load_backtest(rec, artifact_list)
        names = st.experiment_names()
        exp_name = names.get(row["experiment_id"], row["experiment_id"])
        data = {"run_id": run_id, "status": row["status"], "start_time": row["start_time"],
                "metric_keys": metric_keys, "backtest": backtest["curves"] if backtest else None}
        return render(request, "run.html", row=row, rec=rec, parent=parent, children=children,
                      metric_keys=[k for k in metric_keys if not k.startswith("system/")], counts=counts,
                      scalar_keys=[k for k in metric_keys if counts.get(k) == 1 and not k.startswith("system/")],
                      system_keys=[k for k in metric_keys if k.startswith("system/")],
                      tree=arts.tree(artifact_list), images=[a for a in artifact_list if arts.content_type(a)],
                      config_yaml=config_yaml, config_error=config_error, exp_name=exp_name,
                      rerun=rerun_command(request, row, exp_name) if config_yaml else None,
                      backtest=backtest, heartbeat=heartbeat_ms(rec) if row["status"] == "RUNNING" else None,
                      data_json=json_script(data), now=now_ms(), is_sweep=bool(tags.get(quant.SWEEP_TAG)),
                      is_rolling=bool(tags.get(quant.ROLLING_TAG)))

    @app.get("/runs/{run_id}/artifact", response_class=HTMLResponse)
    def artifact_page(request: Request, run_id: str, path: str = "") -> Response:
        row, rec = load_run(request, run_id)
        try:
            pv = arts.preview(rec, path)
        except ArtifactPathError as exc:
            raise HTTPError(400, "Artifact path refused", str(exc)) from None
        except (FileNotFoundError, IsADirectoryError, QexpError) as exc:
            raise HTTPError(404, "Artifact not found", f"run {run_id} has no artifact file {path!r} ({exc})") from None
        return render(request, "artifact.html", row=row, path=arts.clean_artifact_path(path), preview=pv,
                      parts=(arts.clean_artifact_path(path) or "").split("/"))

    @app.get("/runs/{run_id}/artifact/raw")
    def artifact_raw(request: Request, run_id: str, path: str = "") -> Response:
        _, rec = load_run(request, run_id)
        try:
            data = arts.read(rec, path)
        except ArtifactPathError as exc:
            raise HTTPError(400, "Artifact path refused", str(exc)) from None
        except (FileNotFoundError, IsADirectoryError, QexpError) as exc:
            raise HTTPError(404, "Artifact not found", f"run {run_id} has no artifact file {path!r} ({exc})") from None
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
        try:
            text = arts.to_yaml(arts.unpickle(rec.read_artifact("config")))
        except (FileNotFoundError, QexpError) as exc:
            raise HTTPError(404, "No config", f"run {run_id} saved no config ({exc})") from None
        return PlainTextResponse(text, media_type="application/x-yaml",
                                 headers={"Content-Disposition": f'attachment; filename="config_{run_id[:8]}.yaml"'})

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request) -> Response:
        st = store_of(request)
        ids: list[str] = []
        for v in request.query_params.getlist("runs"):
            for part in v.split(","):
                if part.strip() and part.strip() not in ids:
                    ids.append(part.strip())
        if not 2 <= len(ids) <= MAX_COMPARE:
            raise HTTPError(400, "Pick 2 to 50 runs", f"compare takes 2 to {MAX_COMPARE} runs; {len(ids)} given. "
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
                bt = quant.load_backtest(rec, rec.list_artifacts(recursive=True))
            except QexpError:
                bt = None
            if bt:
                backtests[r["run_id"]] = bt
        risk_keys = sorted({k for bt in backtests.values() for k in bt["risk"]})
        numeric = [k for k in differing if all(quant.as_number(r["params"].get(k)) is not None for r in rows)]
        objective = request.query_params.get("metric") or quant.pick_objective({"tags": {}}, rows)
        sweepish = len(rows) >= 3 and bool(differing) or any(r["tags"].get(quant.SWEEP_TAG) for r in rows)
        data = {"runs": [{"run_id": r["run_id"], "name": r["run_name"] or r["run_id"][:8]} for r in rows],
                "metric_keys": [k for k in mkeys if not k.startswith("system/")],
                "backtests": {k: v["curves"] for k, v in backtests.items() if v.get("curves")},
                "parcoords": quant.parcoords(rows, differing, objective) if sweepish else None,
                "scatter": {"params": numeric or differing, "metrics": [k for k in mkeys if not k.startswith("system/")],
                            "objective": objective,
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
        parent_id = row["tags"].get(quant.PARENT_TAG)
        if not children and parent_id and row["tags"].get(quant.SWEEP_TAG):
            return RedirectResponse(f"/sweeps/{parent_id}", status_code=303)  # a trial: show its sweep
        if not children:
            raise HTTPError(404, "Not a sweep", f"run {run_id} has no trial runs (children tagged "
                                                f"{quant.PARENT_TAG} = {run_id})")
        sw = quant.sweep(row, children, objective=request.query_params.get("metric") or None)
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
        children = st.children(run_id)
        ic_by_step: dict[int, float] = {}
        if "rolling/IC" in row["metrics"] or "rolling/IC" in (request.app.state.history.keys(rec) or []):
            s = request.app.state.history.series(rec, "rolling/IC", version=(row["status"], row["end_time"]))
            for step, v in zip(s.steps.tolist(), s.values.tolist()):
                ic_by_step[int(step)] = quant.as_number(v)  # type: ignore[assignment]
        windows = quant.rolling_windows(children, ic_by_step)
        if not windows and ic_by_step:  # windows known only by their IC steps
            windows = [{"index": k, "run_id": None, "name": f"window {k}", "status": None, "start": None,
                        "end": None, "ic": v, "own_ic": None} for k, v in sorted(ic_by_step.items())]
        combined = quant.as_number(row["metrics"].get("IC"))
        data = {"windows": windows, "combined_ic": combined}
        return render(request, "rolling.html", row=row, windows=windows, combined_ic=combined,
                      data_json=json_script(data))


def rerun_command(request: Request, row: dict[str, Any], exp_name: str) -> str:
    """One shell line that writes the run's saved config to a file and runs it again in the same store."""
    import shlex
    uri = request.app.state.config.uri
    name = f"rerun_{row['run_id'][:8]}.yaml"
    return (f"qexp runs export-config {row['run_id']} -o {name} --uri {shlex.quote(uri)} && "
            f"qexp run {name} --uri {shlex.quote(uri)} --experiment-name {shlex.quote(exp_name)}")
