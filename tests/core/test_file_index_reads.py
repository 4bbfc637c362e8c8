"""The file store's index under a long-lived reader (``qexp ui``): sort indexes only for keys some run has, in
stores large enough to need them, at most MAX_SORT_INDEXES with the least recently used dropped; a reader
opened with ``sort_indexes=False`` makes none; ``reap_interval`` spaces the looks for dead run owners."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import qexp
from qexp import R
from qexp.ext import create_manager


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from qexp_file import index
    monkeypatch.setattr(index, "SORT_INDEX_MIN_RUNS", 10)
    monkeypatch.setattr(index, "MAX_SORT_INDEXES", 3)
    uri = str(tmp_path / "runs")
    qexp.init(uri=uri)
    for i in range(12):
        with R.start(experiment_name="many", recorder_name=f"r{i}"):
            R.log_metrics(a=float(i), b=-float(i), c=i / 2, d=i * 3.0)
            R.log_params(p=str(i))
    return uri


def sort_indexes(uri: str) -> list[str]:
    return create_manager(uri).store.index.sort_index_names()


def test_no_index_for_keys_no_run_has(store: str) -> None:
    m = create_manager(store)
    exp = m.get_exp(experiment_name="many").id
    for i in range(40):  # a crawler or a typo in a URL: sorts by keys no run has
        df = m.search_records([exp], order_by=[f"metrics.`junk{i}` DESC"], max_results=5)
        assert len(df) == 5
    assert sort_indexes(store) == []
    m.search_records([exp], order_by=["metrics.a DESC"], max_results=5)
    assert len(sort_indexes(store)) == 1  # a real key still gets its index


def test_least_recently_used_index_makes_room(store: str) -> None:
    m = create_manager(store)
    exp = m.get_exp(experiment_name="many").id
    names = {}
    for key in ("a", "b", "c"):
        m.search_records([exp], order_by=[f"metrics.{key} DESC"], max_results=5)
        names[key] = (set(sort_indexes(store)) - set(names.values())).pop()
    idx = m.store.index
    idx._exec("UPDATE sort_index_use SET last_used = 5 WHERE name = ?", [names["b"]])  # b: used longest ago
    idx._exec("UPDATE sort_index_use SET last_used = 9 WHERE name IN (?, ?)", [names["a"], names["c"]])
    other = create_manager(store)  # another process, which knows none of them yet
    df = other.search_records([exp], order_by=["metrics.d DESC"], max_results=3)
    assert list(df["metrics.d"]) == [33.0, 30.0, 27.0]
    have = set(sort_indexes(store))
    assert len(have) == 3 and names["b"] not in have and {names["a"], names["c"]} <= have


def test_small_store_and_reader_make_no_index(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = create_manager(store, sort_indexes=False)
    exp = reader.get_exp(experiment_name="many").id
    df = reader.search_records([exp], order_by=["metrics.c ASC"], max_results=4)
    assert list(df["metrics.c"]) == [0.0, 0.5, 1.0, 1.5] and sort_indexes(store) == []
    from qexp_file import index
    monkeypatch.setattr(index, "SORT_INDEX_MIN_RUNS", 1000)
    create_manager(store).search_records([exp], order_by=["metrics.c ASC"], max_results=4)
    assert sort_indexes(store) == []  # 12 runs sort in no time


def _dead_run(uri: str) -> str:
    """A run left RUNNING by a process that died without ending it."""
    code = textwrap.dedent(f"""
        import os, qexp
        from qexp import R
        qexp.init(uri={uri!r})
        R.start_exp(experiment_name="many", recorder_name="dead")
        R.log_metrics(x=1.0)
        R.get_recorder().flush()
        print(R.get_recorder().id, flush=True)
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_reap_interval_spaces_the_liveness_checks(store: str) -> None:
    reader = create_manager(store, reap_interval=60)
    exp = reader.get_exp(experiment_name="many").id
    assert reader.run_stats([exp])[exp]["counts"] == {"FINISHED": 12}
    dead = _dead_run(store)
    status = dict(zip(*[reader.search_records([exp])[c] for c in ("run_id", "status")]))
    assert status[dead] == "RUNNING"  # looked less than reap_interval ago
    fresh = create_manager(store)  # default: every search looks
    status = dict(zip(*[fresh.search_records([exp])[c] for c in ("run_id", "status")]))
    assert status[dead] == "FAILED"
