"""The on-disk dataset cache: hits, misses on data or config changes, opt-out, concurrent fills."""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qexp import data_api
from qexp_data import cache
from qexp_data.handler import DataHandlerLP

from .fake_provider import PanelProvider, make_panel
from .test_handler import LOADER

START, END = "2020-01-08", "2020-02-25"


def build(**kw) -> DataHandlerLP:
    args = dict(instruments="all", start_time=START, end_time=END, data_loader=LOADER)
    args.update(kw)
    return DataHandlerLP(**args)


def raw(h):
    return h.fetch(col_set="__raw", data_key="raw")


def entries() -> list[Path]:
    assert cache.wait_for_writes(timeout=60)
    root = cache.cache_root()
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def test_second_construction_hits(provider):
    first = raw(build())
    assert provider.calls == 1 and len(entries()) == 1
    assert str(entries()[0]).startswith(os.environ["QEXP_CACHE_DIR"])
    second = raw(build())
    assert provider.calls == 1
    pd.testing.assert_frame_equal(second, first)  # exact, dtypes and index included
    # processing is redone on the cached raw data
    h = build(learn_processors=["DropnaLabel"])
    assert provider.calls == 1 and len(h.fetch(data_key="learn")) < len(first)


def test_data_change_misses(provider):
    first = raw(build())
    provider.panel.loc[(pd.Timestamp("2020-02-03"), "AAA"), "close"] = 999.0
    second = raw(build())
    assert provider.calls == 2
    assert second.loc[(pd.Timestamp("2020-02-03"), "AAA"), ("feature", "CLOSE")] == 999.0
    assert first.loc[(pd.Timestamp("2020-02-03"), "AAA"), ("feature", "CLOSE")] != 999.0


@pytest.mark.parametrize("change", [
    {"instruments": "mkt"},
    {"instruments": ["AAA", "BBB"]},
    {"start_time": "2020-01-09"},
    {"end_time": "2020-02-24"},
    {"data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {
        "feature": (["$close", "Mean($close, 10)/$close", "Ref($close, 1)/$close"], ["CLOSE", "MA5", "ROC1"]),
        "label": LOADER["kwargs"]["config"]["label"]}}}},
    {"data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {
        "feature": (["$close", "Mean($close, 5)/$close", "Ref($close, 1)/$close"], ["CLOSE", "MA", "ROC1"]),
        "label": LOADER["kwargs"]["config"]["label"]}}}},
])
def test_config_change_misses(provider, change):
    build()
    build(**change)
    assert provider.calls == 2
    assert len(entries()) == 2


def test_opt_out(provider, monkeypatch):
    build(cache=False)
    build(cache=False)
    assert provider.calls == 2 and entries() == []
    monkeypatch.setenv("QEXP_DATASET_CACHE", "0")
    build()
    assert provider.calls == 3 and entries() == []
    build(cache=True)  # the kwarg wins over the environment
    assert len(entries()) == 1


def test_no_version_no_local_folder_no_cache(panel):
    prov = PanelProvider(panel, expose_version=False, uri="memory://x")
    old = data_api._global["provider"]
    data_api.set_provider(prov)
    try:
        build()
        build()
    finally:
        data_api.set_provider(old)
    assert prov.calls == 2 and entries() == []


def _write_qlib_layout(root: Path, codes) -> None:
    (root / "calendars").mkdir(parents=True)
    (root / "calendars" / "day.txt").write_text("2020-01-01\n")
    (root / "instruments").mkdir()
    (root / "instruments" / "all.txt").write_text("".join(f"{c}\t2020-01-01\t2020-03-01\n" for c in codes))
    for c in codes:
        (root / "features" / c.lower()).mkdir(parents=True)
        np.array([0, 1, 2], dtype="<f4").tofile(root / "features" / c.lower() / "close.day.bin")


def test_local_folder_fingerprint(panel, tmp_path):
    """Without a version hook, a local provider folder is fingerprinted by file sizes and mtimes."""
    root = tmp_path / "qlib_data"
    _write_qlib_layout(root, ["AAA", "BBB", "CCC", "DDD", "ZZZ"])
    prov = PanelProvider(panel, expose_version=False, uri=str(root))
    old = data_api._global["provider"]
    data_api.set_provider(prov)
    try:
        build(instruments=["AAA", "BBB"])
        build(instruments=["AAA", "BBB"])
        assert prov.calls == 1
        # a feature file of an instrument not used: still a hit
        np.array([0, 5], dtype="<f4").tofile(root / "features" / "zzz" / "close.day.bin")
        build(instruments=["AAA", "BBB"])
        assert prov.calls == 1
        # a feature file used: miss
        np.array([0, 1, 2, 3], dtype="<f4").tofile(root / "features" / "aaa" / "close.day.bin")
        build(instruments=["AAA", "BBB"])
        assert prov.calls == 2
        # the calendar: miss
        (root / "calendars" / "day.txt").write_text("2020-01-01\n2020-01-02\n")
        build(instruments=["AAA", "BBB"])
        assert prov.calls == 3
        # a market name reads its member list through the provider; an instruments file change misses
        build(instruments="all")
        build(instruments="all")
        assert prov.calls == 4
        os.utime(root / "instruments" / "all.txt", ns=(time.time_ns(), time.time_ns() + 10**9))
        build(instruments="all")
        assert prov.calls == 5
    finally:
        data_api.set_provider(old)


def test_unreadable_entry_is_recomputed(provider):
    first = raw(build())
    (entries()[0] / "values.npy").write_bytes(b"garbage")
    again = raw(build())
    assert provider.calls == 2
    pd.testing.assert_frame_equal(again, first)


# ---- concurrency -----------------------------------------------------------------------------------
def _fill_worker(barrier, delay: float) -> tuple[int, str]:
    """Child process: same provider data, same config; returns (features calls, digest of the frame)."""
    prov = PanelProvider(make_panel())
    original = prov.features

    def slow_features(*a, **k):  # widen the race window
        time.sleep(delay)
        return original(*a, **k)

    prov.features = slow_features
    data_api.set_provider(prov)
    barrier.wait(timeout=60)
    df = raw(build())
    digest = hashlib.sha256(np.ascontiguousarray(df.to_numpy()).tobytes()).hexdigest()
    return prov.calls, digest


def _store_worker(barrier, key: str) -> bool:
    df = raw(build(cache=False)) if data_api.has_provider() else None
    barrier.wait(timeout=60)
    return cache.store(key, df)


def _init_child():
    data_api.set_provider(PanelProvider(make_panel()))


def test_concurrent_fill_computes_once(provider):
    ctx = mp.get_context("spawn")
    n = 3
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            results = pool.starmap(_fill_worker, [(barrier, 1.0)] * n)
    calls = [c for c, _ in results]
    assert sum(calls) == 1, f"the entry was computed {sum(calls)} times"
    assert len({d for _, d in results}) == 1
    assert len(entries()) == 1
    assert not list(cache.cache_root().glob(".tmp-*"))
    # the parent (same data, same config) reads the entry the children wrote
    build()
    assert provider.calls == 0


def test_concurrent_store_is_atomic(provider):
    ctx = mp.get_context("spawn")
    n = 4
    key = "k" * 40
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n, initializer=_init_child) as pool:
            ok = pool.starmap(_store_worker, [(barrier, key)] * n)
    assert all(ok)
    assert [p.name for p in entries()] == [key]
    assert not list(cache.cache_root().glob(".tmp-*"))
    got = cache.load(key)
    pd.testing.assert_frame_equal(got, raw(build(cache=False)))


def test_data_version_sources(tmp_path):
    _write_qlib_layout(tmp_path / "d", ["AAA"])

    class Hooked:
        uri = "memory://x"

        def data_version(self):
            return "v7"

    class SynthLike:  # a non-path URI over a generated local folder (the lazy synthetic market)
        uri = "synth:params"
        root = tmp_path / "d"

        def list_instruments(self, *a, **k):
            return ["AAA"]

    assert cache.data_version(Hooked()) == "data_version:v7"
    v1 = cache.data_version(SynthLike())
    assert v1 is not None and v1.startswith("files:")
    np.array([0, 9], dtype="<f4").tofile(tmp_path / "d" / "features" / "aaa" / "close.day.bin")
    assert cache.data_version(SynthLike()) != v1


def test_stale_temp_entries_are_removed(provider):
    root = cache.cache_root()
    root.mkdir(parents=True)
    stale, fresh = root / ".tmp-dead-1", root / ".tmp-live-2"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - cache.STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    build()
    assert cache.wait_for_writes(timeout=60)
    assert not stale.exists() and fresh.exists()


def test_background_write_is_isolated_from_later_changes(provider, monkeypatch):
    monkeypatch.delenv("QEXP_CACHE_SYNC_WRITE", raising=False)
    assert cache.background_writes()
    h = build()
    h._data.iloc[0, 0] = 12345.0  # an in-place change right after construction, maybe while writing
    assert cache.wait_for_writes(timeout=60)
    fresh = raw(build(cache=False))
    assert fresh.iloc[0, 0] != 12345.0
    pd.testing.assert_frame_equal(cache.load(entries()[0].name), fresh)
    monkeypatch.setenv("QEXP_CACHE_SYNC_WRITE", "1")
    assert not cache.background_writes()
