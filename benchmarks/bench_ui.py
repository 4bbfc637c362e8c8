"""UI benchmark: server time of `qexp ui` pages on a large file store and on an MLflow SQLite store, beside
`mlflow server` answering the same searches on the same SQLite store.

    python benchmarks/bench_ui.py                 # 100,000 file runs, 10,000 MLflow runs, 1,000,000 points
    python benchmarks/bench_ui.py --reduced       # 10,000 file runs, 2,000 MLflow runs (a shared machine)
    python benchmarks/bench_ui.py --runs N --mlflow-runs M --points P --repeat R --workdir DIR --keep

Stores (10 params and 20 metrics per run, like issue 18; one more run holds a P-point metric):

- file store: one run is recorded through the API (so meta.json is what the store writes today); the other
  runs are written in the store's documented folder layout (meta.json, params.jsonl, tags.jsonl,
  metrics.jsonl) and the index is built by the store's own import path, ``rebuild_index()`` (= ``qexp
  index rebuild``).
- MLflow store: one run is logged through ``MlflowClient``; the others are its rows in MLflow's own tables
  (runs, params, tags, metrics, latest_metrics) cloned with new ids and values in one SQLite transaction.

Requests (each timed ``--repeat`` times after one warm-up; the median is shown): the first runs page, a
filtered page (``metrics.IC > 0.5 AND params.p1 = 'v3'``), a page sorted by a metric, a run page and the
P-point metric's chart data (cold = first request, warm = next ones). ``qexp ui`` reports its own time in a
``Server-Timing`` header; ``mlflow server`` gets the same searches on ``/ajax-api/2.0/mlflow/runs/search``
(100 runs, same filter and order), timed at the client over loopback, as are qexp's for the ratio. Targets:
every file-store request under 300 ms. The machine this runs on may be shared: numbers are indicative.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("QEXP_LOAD_PLUGINS", "file,mlflow,ui")
os.environ.setdefault("QEXP_AUTOLOG_GIT", "0")
N_PARAMS, N_METRICS = 10, 20
FILTER = "metrics.IC > 0.5 AND params.p1 = 'v3'"
SORT = "metrics.m3 DESC"
PAGE = 100


def metric_names() -> list[str]:
    return ["IC"] + [f"m{i}" for i in range(1, N_METRICS)]


def run_values(rng: random.Random, i: int) -> tuple[dict[str, str], dict[str, float]]:
    params = {f"p{k}": f"v{rng.randrange(10)}" for k in range(N_PARAMS)}
    params["p0"] = str(round(10 ** rng.uniform(-3, -1), 6))
    metrics = {k: rng.random() for k in metric_names()}
    return params, metrics


# ---- the file store -----------------------------------------------------------------------------------

def make_file_store(root: Path, n: int, points: int, seed: int = 0) -> dict[str, Any]:
    from qexp.ext import create_manager
    rng = random.Random(seed)
    m = create_manager(str(root))
    exp = m.create_exp("bench")
    rec = exp.create_recorder("template")
    rec.start_run()
    p, mt = run_values(rng, 0)
    rec.log_params(**p)
    rec.log_metrics(**mt)
    rec.end_run()
    template = json.loads((Path(rec.get_local_dir()) / "meta.json").read_text())
    exp_dir = Path(rec.get_local_dir()).parent
    t0 = template["start_time"] - (n + 10) * 60_000
    for i in range(n):
        run_id = uuid.uuid4().hex
        d = exp_dir / run_id
        d.mkdir()
        start = t0 + i * 60_000
        meta = dict(template, run_id=run_id, run_name=f"run-{i}", start_time=start, end_time=start + 30_000,
                    status="FINISHED", parent_run_id=None)
        params, metrics = run_values(rng, i)
        (d / "meta.json").write_text(json.dumps(meta))
        (d / "params.jsonl").write_text("".join(json.dumps({"key": k, "value": v, "timestamp": start}) + "\n"
                                                for k, v in params.items()))
        (d / "tags.jsonl").write_text(json.dumps({"key": "mlflow.runName", "value": f"run-{i}"}) + "\n")
        (d / "metrics.jsonl").write_text("".join(
            f'{{"key":"{k}","value":{v!r},"timestamp":{start + 1000},"step":0}}\n' for k, v in metrics.items()))
    # the run with the long metric, through the API (its points appended in one write)
    big = exp.create_recorder("big-metric")
    big.start_run()
    ts = template["start_time"]
    lines = "".join(f'{{"key":"big","value":{v!r},"timestamp":{ts + j},"step":{j}}}\n'
                    for j, v in enumerate(random_walk(points, seed)))
    with open(Path(big.get_local_dir()) / "metrics.jsonl", "a") as f:
        f.write(lines)
    big.end_run()
    built = m.rebuild_index()
    return {"exp": exp.id, "run": rec.id, "big": big.id, "indexed": built}


def random_walk(n: int, seed: int) -> list[float]:
    import numpy as np
    return np.cumsum(np.random.default_rng(seed).normal(size=n)).tolist()


# ---- the MLflow store ---------------------------------------------------------------------------------

def make_mlflow_store(db: Path, n: int, points: int, seed: int = 1) -> dict[str, Any]:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient
    rng = random.Random(seed)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("bench", artifact_location=str(db.parent / "mlartifacts" / "bench"))
    run = client.create_run(exp_id, run_name="template")
    rid = run.info.run_id
    p, mt = run_values(rng, 0)
    now = int(time.time() * 1000)
    client.log_batch(rid, metrics=[Metric(k, v, now, 0) for k, v in mt.items()],
                     params=[Param(k, v) for k, v in p.items()], tags=[RunTag("bench", "1")])
    client.set_terminated(rid)
    big = client.create_run(exp_id, run_name="big-metric").info.run_id
    client.set_terminated(big)
    conn = sqlite3.connect(db)
    tables = {}
    for table in ("runs", "params", "tags", "metrics", "latest_metrics"):
        cur = conn.execute(f"SELECT * FROM {table} WHERE run_uuid = ?", (rid,))
        cols = [c[0] for c in cur.description]
        tables[table] = (cols, [dict(zip(cols, r)) for r in cur.fetchall()])
    rows: dict[str, list[tuple]] = {t: [] for t in tables}
    t0 = now - (n + 10) * 60_000
    for i in range(n):
        new = uuid.uuid4().hex
        start = t0 + i * 60_000
        params, metrics = run_values(rng, i)
        cols, (r,) = tables["runs"]
        rows["runs"].append(tuple({**r, "run_uuid": new, "name": f"run-{i}", "start_time": start,
                                   "end_time": start + 30_000,
                                   "artifact_uri": str(r["artifact_uri"]).replace(rid, new)}[c] for c in cols))
        cols, _ = tables["params"]
        rows["params"] += [tuple({"key": k, "value": v, "run_uuid": new}[c] for c in cols) for k, v in params.items()]
        cols, trows = tables["tags"]
        for tr in trows:
            val = f"run-{i}" if tr["key"] == "mlflow.runName" else tr["value"]
            rows["tags"].append(tuple({**tr, "run_uuid": new, "value": val}[c] for c in cols))
        for table in ("metrics", "latest_metrics"):
            cols, mrows = tables[table]
            proto = mrows[0]
            rows[table] += [tuple({**proto, "key": k, "value": v, "timestamp": start + 1000, "step": 0,
                                   "run_uuid": new}[c] for c in cols) for k, v in metrics.items()]
    cols, mrows = tables["metrics"]
    proto = mrows[0]
    walk = random_walk(points, seed)
    rows["metrics"] += [tuple({**proto, "key": "big", "value": v, "timestamp": now + j, "step": j, "run_uuid": big}[c]
                              for c in cols) for j, v in enumerate(walk)]
    cols, mrows = tables["latest_metrics"]
    rows["latest_metrics"].append(tuple({**mrows[0], "key": "big", "value": walk[-1], "timestamp": now + points - 1,
                                         "step": points - 1, "run_uuid": big}[c] for c in cols))
    with conn:
        for table, data in rows.items():
            cols = tables[table][0]
            conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", data)
    conn.close()
    return {"exp": exp_id, "run": rid, "big": big, "uri": uri}


# ---- servers and timing -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode})")
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def start(cmd: list[str], health: str, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=dict(os.environ))
    try:
        wait_up(health, proc)
    except RuntimeError:
        proc.kill()
        raise RuntimeError(f"{cmd[:4]} failed: {log.read_text()[-2000:]}") from None
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def fetch(url: str, body: dict | None = None, timeout: float = 600) -> tuple[float, float | None, int]:
    """(client ms, server ms from Server-Timing or None, bytes)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Accept": "text/html", "Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        payload = r.read()
        st = r.headers.get("Server-Timing")
    client = (time.perf_counter() - t) * 1000
    server = float(st.split("dur=")[1]) if st and "dur=" in st else None
    return client, server, len(payload)


def measure(url: str, repeat: int, body: dict | None = None, cold: bool = False) -> dict[str, Any]:
    first = fetch(url, body)
    runs = [fetch(url, body) for _ in range(repeat)]
    out = {"client": statistics.median(r[0] for r in runs), "bytes": runs[-1][2],
           "server": statistics.median(r[1] for r in runs) if runs[0][1] is not None else None}
    if cold:
        out["cold_client"], out["cold_server"] = first[0], first[1]
    return out


def ui_requests(base: str, info: dict, repeat: int) -> dict[str, dict]:
    q = urllib.parse.quote
    exp = info["exp"]
    return {  # cold = the first request (e.g. the first sort by a key builds the file index's sort index)
        "experiments page": measure(f"{base}/", repeat, cold=True),
        "first runs page": measure(f"{base}/runs?exp={exp}", repeat, cold=True),
        "filtered page": measure(f"{base}/runs?exp={exp}&filter={q(FILTER)}", repeat, cold=True),
        "sorted page": measure(f"{base}/runs?exp={exp}&order={q(SORT)}", repeat, cold=True),
        "run page": measure(f"{base}/runs/{info['run']}", repeat, cold=True),
        "run page of the long-metric run": measure(f"{base}/runs/{info['big']}", repeat, cold=True),
        "metric chart": measure(f"{base}/api/runs/{info['big']}/metric?key=big", repeat, cold=True),
    }


def mlflow_requests(base: str, info: dict, repeat: int) -> dict[str, dict]:
    search = f"{base}/ajax-api/2.0/mlflow/runs/search"
    exp = info["exp"]
    body = {"experiment_ids": [exp], "max_results": PAGE, "order_by": ["attributes.start_time DESC"]}
    return {
        "first runs page": measure(search, repeat, body),
        "filtered page": measure(search, repeat, {**body, "filter": FILTER}),
        "sorted page": measure(search, repeat, {**body, "order_by": [SORT]}),
        "run page": measure(f"{base}/ajax-api/2.0/mlflow/runs/get?run_id={info['run']}", repeat),
        "metric chart": measure(f"{base}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?"
                                f"run_ids={info['big']}&metric_key=big&max_results=320", repeat, cold=True),
    }


def fmt(v: float | None) -> str:
    return "—" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None, help="file-store runs (default 100,000; 10,000 reduced)")
    ap.add_argument("--mlflow-runs", type=int, default=None, help="MLflow runs (default 10,000; 2,000 reduced)")
    ap.add_argument("--points", type=int, default=1_000_000, help="points of the long metric")
    ap.add_argument("--reduced", action="store_true", help="smaller stores for a shared machine")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", default=None, help="where the stores go (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--no-mlflow", action="store_true")
    a = ap.parse_args()
    n_file = a.runs or (10_000 if a.reduced else 100_000)
    n_ml = a.mlflow_runs or (2_000 if a.reduced else 10_000)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="qexp-bench-ui-"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    results: dict[str, dict[str, dict]] = {}
    try:
        t = time.perf_counter()
        finfo = make_file_store(work / "files", n_file, a.points)
        print(f"file store: {finfo['indexed']:,} runs (+1 with {a.points:,} points) written and indexed in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        port = free_port()
        ui = start([py, "-m", "qexp", "ui", "--uri", str(work / "files"), "--port", str(port)],
                   f"http://127.0.0.1:{port}/healthz", work / "ui-files.log")
        try:
            results["qexp ui, files"] = ui_requests(f"http://127.0.0.1:{port}", finfo, a.repeat)
        finally:
            stop(ui)
        if not a.no_mlflow:
            t = time.perf_counter()
            minfo = make_mlflow_store(work / "mlflow.db", n_ml, a.points)
            print(f"MLflow store: {n_ml:,} runs (+1 with {a.points:,} points) in {time.perf_counter() - t:.1f} s",
                  flush=True)
            port = free_port()
            ui = start([py, "-m", "qexp", "ui", "--uri", minfo["uri"], "--port", str(port)],
                       f"http://127.0.0.1:{port}/healthz", work / "ui-mlflow.log")
            try:
                results["qexp ui, MLflow"] = ui_requests(f"http://127.0.0.1:{port}", minfo, a.repeat)
            finally:
                stop(ui)
            port = free_port()
            srv = start([py, "-m", "mlflow", "server", "--backend-store-uri", minfo["uri"], "--host", "127.0.0.1",
                         "--port", str(port), "--workers", "1", "--default-artifact-root",
                         str(work / "mlartifacts")], f"http://127.0.0.1:{port}/health", work / "mlflow.log")
            try:
                results["mlflow server"] = mlflow_requests(f"http://127.0.0.1:{port}", minfo, a.repeat)
            finally:
                stop(srv)
        report(results, n_file, n_ml, a.points)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"stores kept in {work}")


def report(results: dict[str, dict[str, dict]], n_file: int, n_ml: int, points: int) -> None:
    rows = ["experiments page", "first runs page", "filtered page", "sorted page", "run page",
            "run page of the long-metric run", "metric chart"]
    files, ml, peer = results.get("qexp ui, files", {}), results.get("qexp ui, MLflow", {}), \
        results.get("mlflow server", {})
    print()
    print(f"| request | qexp ui, {n_file:,} file runs: server ms (client ms) | qexp ui, {n_ml:,} MLflow runs | "
          f"mlflow server, same store: client ms | mlflow server / qexp ui (same store) |")
    print("|---|---|---|---|---|")
    for r in rows:
        f, m, p = files.get(r), ml.get(r), peer.get(r)
        cells = []
        for x in (f, m):
            if not x:
                cells.append("—")
                continue
            s = f"{fmt(x['server'])} ({fmt(x['client'])})"
            if "cold_server" in x:
                s = f"warm {s}, cold {fmt(x['cold_server'])}"
            cells.append(s)
        pc = "—" if not p else (f"{fmt(p['client'])}" + (f", cold {fmt(p['cold_client'])}" if "cold_client" in p else ""))
        ratio = "—" if not (p and m) else f"{p['client'] / m['client']:.2g}x"
        print(f"| {r} | {cells[0]} | {cells[1]} | {pc} | {ratio} |")
    slow = [r for r in rows if files.get(r) and (files[r]["server"] or 0) >= 300]  # warm requests
    print()
    print(f"file-store target (every request < 300 ms server time): "
          f"{'met' if not slow else 'NOT met for ' + ', '.join(slow)}; the 1,000,000-point chart's cold request "
          f"parses the run's metrics once ({points:,} points), then it is served from memory")


if __name__ == "__main__":
    main()
