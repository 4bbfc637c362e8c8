"""One worker process running several calls at once (a Dask worker with threads): plugins load once for all
threads, and calls whose ``qexp.init`` settings differ never share the process-wide store and provider."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

import qexp
from qexp import R, worker
from qexp.multirun import FINISHED, run_many

from .helpers import REPO, DaskProcesses, child_env, make_market, tiny_config, write_config


def test_plugins_load_once_for_threads_that_ask_at_the_same_time():
    """The second thread used to return before anything was registered ('cannot resolve class LGBModel')."""
    code = textwrap.dedent("""
        import threading
        from qexp import plugins, registry
        barrier = threading.Barrier(4)
        out = {}
        def go(i):
            barrier.wait()
            plugins.load_plugins()
            out[i] = registry.components.resolve("LGBModel", "qlib.contrib.model.gbdt") is not None
        threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(sorted(out.items()))
    """)
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                              env=child_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str([(i, True) for i in range(4)]), done.stdout


def _spans(log: list, name: str, settings: dict | None, hold: float = 0.3) -> None:
    with worker.session(settings):
        start = time.monotonic()
        seen = qexp.get_settings().get("region") if settings is not None else None
        time.sleep(hold)
        log.append((name, start, time.monotonic(), seen))


def _overlap(a: tuple, b: tuple) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def test_the_session_gate_serialises_other_settings_and_shares_equal_ones(tmp_path):
    us = {"uri": str(tmp_path / "a"), "region": "us"}
    cn = {"uri": str(tmp_path / "b"), "region": "cn"}
    log: list = []
    threads = [threading.Thread(target=_spans, args=(log, name, s)) for name, s in
               (("us1", us), ("us2", dict(us)), ("cn", cn))]
    for t in threads:
        t.start()
        time.sleep(0.05)  # arrival order: us1, us2, cn
    for t in threads:
        t.join()
    us1, us2, cn_ = (next(s for s in log if s[0] == n) for n in ("us1", "us2", "cn"))
    assert _overlap(us1, us2), log           # equal settings run side by side
    assert not _overlap(us1, cn_) and not _overlap(us2, cn_), log
    assert us1[3] == us2[3] == "us" and cn_[3] == "cn"  # each ran under its own settings
    # a call that initialises qexp itself runs alone
    log.clear()
    threads = [threading.Thread(target=_spans, args=(log, "own", None)),
               threading.Thread(target=_spans, args=(log, "us", us))]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert not _overlap(log[0], log[1]), log


@pytest.fixture(scope="module")
def two_markets(tmp_path_factory):
    root = tmp_path_factory.mktemp("markets")
    return make_market(root / "m3", seed=3), make_market(root / "m9", seed=9)


@pytest.fixture(scope="module")
def configs_and_local_metrics(two_markets, tmp_path_factory):
    """Configs on two markets (and a second model on the first), with the metrics each gives alone."""
    work = tmp_path_factory.mktemp("configs")
    m3, m9 = two_markets
    paths = [write_config(work / "a.yaml", tiny_config(m3)),
             write_config(work / "b.yaml", tiny_config(m9)),
             write_config(work / "c.yaml", tiny_config(m3, num_leaves=7, learning_rate=0.2))]
    got = run_many([str(p) for p in paths], "local", uri=str(work / "local"))
    assert [r.state for r in got] == [FINISHED] * 3, [r.error for r in got]
    return paths, [r.metrics for r in got]


def _check_same_metrics(paths, expected, executor, store):
    got = run_many([str(p) for p in paths], executor, uri=str(store))
    assert [r.state for r in got] == [FINISHED] * 3, [r.error for r in got]
    for want, r in zip(expected, got):
        assert set(want) == set(r.metrics)
        for k in want:
            assert r.metrics[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), (r.name, k)
    assert expected[0]["IC"] != pytest.approx(expected[1]["IC"], abs=1e-6)  # the data really differ
    qexp.init(uri=str(store))
    recs = {r.name: R.get_recorder(recorder_id=r.run_id) for r in got}
    a, b = ((recs[str(paths[i])]._start_ms, recs[str(paths[i])]._end_ms) for i in (0, 1))
    assert a[1] <= b[0] or b[1] <= a[0], (a, b)  # other data: one after the other in the worker


@pytest.mark.slow
def test_two_configs_on_other_data_in_one_dask_worker_with_two_threads(configs_and_local_metrics, tmp_path):
    paths, expected = configs_and_local_metrics
    procs = DaskProcesses(tmp_path / "dask", n_workers=1, nthreads=2,
                          env=child_env(QEXP_CACHE_DIR=str(tmp_path / "cache")))
    try:
        procs.wait(1)
        _check_same_metrics(paths, expected, f"dask://127.0.0.1:{procs.port}?timeout=30", tmp_path / "store")
    finally:
        procs.stop()


@pytest.mark.slow
def test_two_configs_on_other_data_on_dask_local_with_two_threads(configs_and_local_metrics, tmp_path):
    paths, expected = configs_and_local_metrics
    _check_same_metrics(paths, expected, "dask+local://1?threads=2", tmp_path / "store")
