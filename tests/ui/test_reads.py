"""What the UI reads and how it shows it (in process, Starlette's TestClient): escaping of store text in the
page's JSON, non-finite metric values, paging by the backend (one page asked for, row numbers from the token,
forged tokens), heartbeats of RUNNING runs, deleted experiments, hostile pickles, the column chooser's keys,
the caches that spare repeated reads, and a metric logged without flush() reaching the live endpoint."""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qexp
from qexp import R
from qexp.ext import create_manager

pytest.importorskip("fastapi", reason="the ui extra is not installed (pip install \"qexp[ui]\")")

from fastapi.testclient import TestClient  # noqa: E402

from qexp_ui.app import create_app  # noqa: E402
from qexp_ui.series import HistoryCache, Series  # noqa: E402

from .stores import writer_env  # noqa: E402

HTML = {"Accept": "text/html"}
LOCAL = "http://127.0.0.1:5000"
NASTY = "x<!--<script>y</script><img src=z onerror=alert(1)>&amp;\u2028"


class Boom:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def page_data(html: str) -> Any:
    m = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert m, "no page data"
    raw = m.group(1)
    assert "<" not in raw and ">" not in raw and "&" not in raw  # nothing can end or comment out the block
    return json.loads(raw)


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Any]:
    uri = str(tmp_path / "runs")
    qexp.init(uri=uri)
    ids = {}
    for i in range(5):
        with R.start(experiment_name="exp", recorder_name=f"run-{i}"):
            R.log_params(lr=i / 10, **{f"only{i}": "x"})
            R.log_metrics(IC=i / 100)
            ids[i] = R.get_recorder().id
    with R.start(experiment_name="odd", recorder_name=NASTY):
        rec = R.get_recorder()
        R.log_params(**{"note": NASTY, "model.kwargs.kind": "<b>bold</b>"})
        for step, v in enumerate([1.0, math.inf, 2.0, -math.inf, 3.0]):
            R.log_metrics(step=step, curve=v)
        R.log_metrics(last_nan=1.0, step=0)
        R.log_metrics(last_nan=math.nan, step=1)
        R.log_metrics(up=math.inf, down=-math.inf)
        R.save_objects(config=Boom(str(tmp_path / "pwned")))
    return {"uri": uri, "ids": ids, "odd": rec.id, "exp": R.get_exp(experiment_name="exp").id,
            "odd_exp": rec.experiment_id, "tmp": tmp_path}


def client(uri: str, **kw: Any) -> TestClient:
    return TestClient(create_app(uri, **kw), base_url=LOCAL)


# ---- escaping -----------------------------------------------------------------------------------------

def test_store_text_cannot_break_the_page(store: dict) -> None:
    c = client(store["uri"])
    other = store["ids"][0]
    for url in (f"/runs/{store['odd']}", f"/compare?runs={store['odd']}&runs={other}"):
        html = c.get(url, headers=HTML).text
        assert "<!--<script>" not in html and "<b>bold</b>" not in html and "<img src=z" not in html
        data = page_data(html)
        text = json.dumps(data, ensure_ascii=False)
        if "compare" in url:
            assert NASTY in [r["name"] for r in data["runs"]]  # the text itself survives, escaped
        else:
            assert data["run_id"] == store["odd"] and "curve" in data["metric_keys"]
        assert "\\u003c" not in text  # decoded by JSON.parse back to the real characters
    html = c.get(f"/runs?exp={store['odd_exp']}", headers=HTML).text
    assert "&lt;!--&lt;script&gt;" in html and "<!--<script>" not in html


def test_a_hostile_config_pickle_renders_without_running(store: dict) -> None:
    c = client(store["uri"])
    r = c.get(f"/runs/{store['odd']}", headers=HTML)
    assert r.status_code == 200
    section = r.text.split('<section id="config">')[1].split("</section>")[0]
    assert 'class="error-box"' in section and "system" in section  # says what it refused
    assert 'id="rerun"' not in section and 'id="config-yaml"' not in section
    assert c.get(f"/runs/{store['odd']}/config.yaml").status_code == 404
    assert c.get(f"/runs/{store['odd']}/artifact", params={"path": "config"}, headers=HTML).status_code == 200
    assert not (store["tmp"] / "pwned").exists()


# ---- NaN and infinities -------------------------------------------------------------------------------

def test_non_finite_latest_values_are_shown(store: dict) -> None:
    c = client(store["uri"])
    html = c.get(f"/runs/{store['odd']}", headers=HTML).text
    latest = dict(re.findall(r'data-metric-row="([^"]+)"><td>[^<]*</td><td class="num latest">([^<]*)</td>', html))
    assert latest == {"curve": "3", "last_nan": "NaN", "up": "inf", "down": "-inf"}
    live = c.get(f"/api/runs/{store['odd']}/live").json()
    assert live["metrics"] == {"curve": 3.0, "last_nan": "NaN", "up": "inf", "down": "-inf"}
    p = c.get(f"/api/runs/{store['odd']}/metric", params={"key": "curve"}).json()
    assert p["values"] == [1.0, None, 2.0, None, 3.0] and p["flags"] == [None, "inf", None, "-inf", None]
    assert (p["min"], p["max"], p["last"]) == (1.0, 3.0, 3.0)  # the axis range comes from finite values
    p = c.get(f"/api/runs/{store['odd']}/metric", params={"key": "last_nan"}).json()
    assert p["last"] == "NaN" and p["flags"] == [None, "NaN"]
    runs = c.get(f"/runs?exp={store['odd_exp']}&col=metrics.up&col=metrics.last_nan", headers=HTML).text
    assert re.search(r'data-col="metrics.up">inf<', runs) and re.search(r'data-col="metrics.last_nan">NaN<', runs)


def test_non_finite_values_on_mlflow(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    qexp.init(uri=uri)
    with R.start(experiment_name="nf"):
        R.log_metrics(a=1.0, step=0)
        R.log_metrics(a=math.nan, step=1)
        R.log_metrics(b=math.inf)
        run = R.get_recorder().id
    c = client(uri)
    html = c.get(f"/runs/{run}", headers=HTML).text
    latest = dict(re.findall(r'data-metric-row="([^"]+)"><td>[^<]*</td><td class="num latest">([^<]*)</td>', html))
    assert latest == {"a": "NaN", "b": "inf"}
    assert c.get(f"/api/runs/{run}/live").json()["metrics"] == {"a": "NaN", "b": "inf"}


# ---- paging -------------------------------------------------------------------------------------------

class Counting:
    """A manager that counts the searches the UI asks of it (and how many rows each may return)."""

    def __init__(self, real: Any):
        self._real = real
        self.searches: list[int | None] = []

    def search_rows(self, *a: Any, **kw: Any) -> Any:
        self.searches.append(kw.get("max_results"))
        return self._real.search_rows(*a, **kw)

    def search_records(self, *a: Any, **kw: Any) -> Any:
        self.searches.append(kw.get("max_results"))
        return self._real.search_records(*a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_the_runs_page_asks_for_one_page(store: dict) -> None:
    proxy = Counting(create_manager(store["uri"]))
    c = TestClient(create_app(manager=proxy), base_url=LOCAL)
    r = c.get(f"/runs?exp={store['exp']}&size=2", headers=HTML)
    assert r.status_code == 200 and proxy.searches == [2]  # one search, one page of rows
    nxt = re.search(r'class="pager-next" href="([^"]+)"', r.text).group(1).replace("&amp;", "&")
    assert "start=" not in nxt
    proxy.searches.clear()
    second = c.get(nxt, headers=HTML).text
    assert proxy.searches == [2] and "runs 3–4" in second  # the row numbers come from the token
    proxy.searches.clear()
    c.get(f"/runs?exp={store['exp']}&size=2&fragment=1", headers=HTML)
    assert proxy.searches == [2]
    proxy.searches.clear()
    assert c.get(f"/api/runs/{store['ids'][1]}/metric", params={"key": "IC"}).status_code == 200
    assert proxy.searches == []  # a chart needs the run's recorder, not a search


def test_forged_and_foreign_page_tokens_are_readable_errors(store: dict) -> None:
    import base64
    c = client(store["uri"])
    r = c.get(f"/runs?exp={store['exp']}&size=2", headers=HTML)
    token = re.search(r"page_token=([^&\"]+)", r.text).group(1)
    from urllib.parse import unquote
    inner = json.loads(base64.urlsafe_b64decode(unquote(token) + "=="))
    for forged in ({**inner, "o": 10 ** 23}, {**inner, "o": -3}):
        bad = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
        r = c.get(f"/runs?exp={store['exp']}&size=2&page_token={bad}", headers=HTML)
        assert r.status_code == 400 and 'id="filter-error"' in r.text and "page_token" in r.text
        assert 'class="pager-first"' in r.text
    r = c.get(f"/runs?exp={store['exp']}&size=2&order=metrics.IC%20DESC&page_token={token}", headers=HTML)
    assert r.status_code == 400 and "another search" in r.text


# ---- heartbeats, deleted experiments, the column chooser ----------------------------------------------

def test_running_runs_show_their_heartbeat(store: dict) -> None:
    R.start_exp(experiment_name="live", recorder_name="still-going")
    try:
        R.log_metrics(step=0, loss=1.0)
        R.get_recorder().flush()
        run = R.get_recorder().id
        exp = R.get_recorder().experiment_id
        c = client(store["uri"])
        for url in (f"/runs?exp={exp}", f"/runs/{run}"):
            html = c.get(url, headers=HTML).text
            beat = int(re.search(r'data-heartbeat="(\d+)"', html).group(1))
            assert abs(beat - time.time() * 1000) < 30_000, url
        assert abs(c.get(f"/api/runs/{run}/live").json()["heartbeat"] - time.time() * 1000) < 30_000
    finally:
        R.end_exp()


def test_deleted_experiments_on_request(store: dict, tmp_path: Path) -> None:
    c = client(store["uri"])
    assert "keeps nothing of a deleted experiment" in c.get("/?deleted=1", headers=HTML).text  # files: gone
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    qexp.init(uri=uri)
    for name in ("kept", "dropped"):
        with R.start(experiment_name=name):
            R.log_metrics(x=1.0)
    R.delete_exp(experiment_name="dropped")
    c = client(uri)
    home = c.get("/", headers=HTML).text
    assert "dropped" not in home and 'id="show-deleted"' in home
    shown = c.get("/?deleted=1", headers=HTML).text
    table = shown.split('id="deleted-experiments"')[1]
    assert "dropped-deleted-" in table and ">kept<" not in table


def test_deleted_experiments_through_the_wandb_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The W&B backend keeps its runs in a local store and answers as that store does."""
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    m = create_manager(f"wandb://qexp-test?mode=offline&store=sqlite:///{tmp_path / 'ml.db'}")
    m.create_exp("kept")
    m.create_exp("dropped")
    m.delete_exp(experiment_name="dropped")
    assert [e.name.split("-deleted-")[0] for e in m.list_deleted_experiments()] == ["dropped"]
    shown = TestClient(create_app(manager=m), base_url=LOCAL).get("/?deleted=1", headers=HTML).text
    assert "dropped-deleted-" in shown.split('id="deleted-experiments"')[1]
    files = create_manager(f"wandb://qexp-test?mode=offline&store={tmp_path / 'files'}")
    assert files.list_deleted_experiments() is None


def test_the_column_chooser_offers_keys_beyond_the_page(store: dict) -> None:
    c = client(store["uri"])
    page = c.get(f"/runs?exp={store['exp']}&size=1", headers=HTML).text
    offered = set(re.findall(r'name="col" value="params\.([^"]+)"', page))
    assert offered == {"lr", "only4"}  # the newest run only
    keys = c.get("/api/keys", params={"exp": store["exp"]}).json()
    assert {f"only{i}" for i in range(5)} <= set(keys["params"]) and "IC" in keys["metrics"]
    assert 'id="extra-column"' in page  # and any key by name


# ---- caches ---------------------------------------------------------------------------------------------

def test_history_cache_is_bounded_by_bytes() -> None:
    class Rec:
        status, end_time = "FINISHED", "x"

        def __init__(self, i: int):
            self.id = f"run{i}"

        def metric_history_since(self, key: str, cursor: Any) -> Any:
            import pandas as pd
            n = 10_000
            df = pd.DataFrame({"step": np.arange(n), "value": np.ones(n), "timestamp": np.arange(n)})
            df.attrs["restart"] = True
            return df, n
    cache = HistoryCache(max_bytes=1_000_000)  # 240 kB per history: four fit
    for i in range(10):
        assert len(cache.series(Rec(i), "m")) == 10_000
    assert cache.nbytes() <= 1_000_000 and cache.known_count("run9", "m") == 10_000
    assert cache.known_count("run0", "m") is None
    assert Series.empty().nbytes == 0


def test_config_and_backtest_are_read_once_per_version(store: dict) -> None:
    app = create_app(store["uri"])
    c = TestClient(app, base_url=LOCAL)
    reads: list[str] = []
    real = app.state.store.recorder

    def counting(run_id: str) -> Any:
        rec = real(run_id)
        original = rec.read_artifact

        def read(path: str) -> bytes:
            reads.append(path)
            return original(path)
        rec.read_artifact = read
        return rec
    app.state.store.recorder = counting
    run = store["ids"][0]
    rec = create_manager(store["uri"]).get_recorder_by_id(run)
    rec.log_bytes(pickle.dumps({"task": {"model": "a"}}), "config")
    for _ in range(3):
        assert "model: a" in c.get(f"/runs/{run}", headers=HTML).text
    assert reads == ["config"]
    time.sleep(0.01)
    rec.log_bytes(pickle.dumps({"task": {"model": "bb"}}), "config")
    assert "model: bb" in c.get(f"/runs/{run}", headers=HTML).text and reads == ["config", "config"]


# ---- live within 2 s of a metric being logged, without flush() ------------------------------------------

WRITER = textwrap.dedent("""
    import os, sys, time, qexp
    from qexp import R
    qexp.init(uri=sys.argv[1])
    with R.start(experiment_name="latency"):
        R.log_metrics(step=0, warm=1.0)
        R.get_recorder().flush()
        print(R.get_recorder().id, flush=True)
        sys.stdin.readline()               # the test is ready
        R.log_metrics(step=0, fresh=2.0)   # no flush(): the store's own time bound must write it
        print("logged", flush=True)
        sys.stdin.readline()
""")


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_metric_logged_without_flush_is_live_within_2s(tmp_path: Path, kind: str) -> None:
    if kind == "sqlite":
        pytest.importorskip("mlflow")
        uri = f"sqlite:///{tmp_path / 'ml.db'}"
    else:
        uri = str(tmp_path / "runs")
    env = writer_env()
    for k in ("QEXP_HEARTBEAT_INTERVAL", "QEXP_MLFLOW_FLUSH_INTERVAL", "QEXP_METRIC_FLUSH_INTERVAL"):
        env.pop(k, None)  # the defaults, as users have them
    proc = subprocess.Popen([sys.executable, "-c", WRITER, uri], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        run = proc.stdout.readline().strip()
        assert run, "the writer did not start"
        c = client(uri)
        assert "fresh" not in c.get(f"/api/runs/{run}/live").json()["metric_keys"]
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "logged"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            live = c.get(f"/api/runs/{run}/live").json()
            if "fresh" in live["metric_keys"]:
                break
            time.sleep(0.05)
        took = time.monotonic() - t0
        assert live["metrics"].get("fresh") == 2.0 and took < 2.0, f"visible after {took:.2f} s"
    finally:
        if proc.poll() is None:
            proc.stdin.write("end\n")
            proc.stdin.flush()
        proc.wait(60)
