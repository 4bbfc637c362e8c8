"""Qlib's runtime settings: each key changes what qexp does (or is accepted with a notice naming it); bad values
and unknown keys raise at ``qexp.init`` naming the key and what it accepts."""
from __future__ import annotations

import concurrent.futures as cf
import logging
import shutil

import numpy as np
import pandas as pd
import pytest

import qexp
from qexp.runtime import QLIB_SETTINGS, effective_runtime_settings

FIELDS = ["$close/Ref($close, 1) - 1", "Mean($close, 5)/$close", "Std($volume, 10)"]
START, END = "2019-06-01", "2020-03-31"


def _init(tmp_path, root, **kw):
    qexp.init(uri=str(tmp_path / "store"), provider_uri=str(root), **kw)
    from qexp.ext import get_provider
    return get_provider()


def _alpha158(**kw):
    from qexp_data.alpha import Alpha158
    return Alpha158(instruments="all", start_time=START, end_time=END, fit_start_time=START, fit_end_time="2019-12-31",
                    **kw)


def _entries():
    from qexp_data import cache
    assert cache.wait_for_writes(60)
    return cache.active_store().stats()


# ---- kernels -----------------------------------------------------------------------------------------
def test_kernels_sets_the_expression_engines_threads(tmp_path, synth_root, monkeypatch):
    from qexp_data import provider as prov_mod
    monkeypatch.setattr(prov_mod, "MIN_CODES_PER_THREAD", 4)
    pools: list[int] = []
    real = cf.ThreadPoolExecutor

    class Recording(real):  # type: ignore[misc,valid-type]
        def __init__(self, max_workers=None, *a, **k):
            pools.append(max_workers)
            super().__init__(max_workers, *a, **k)

    monkeypatch.setattr(cf, "ThreadPoolExecutor", Recording)
    one = _init(tmp_path, synth_root, kernels=1).features("all", FIELDS, START, END)
    assert pools == []
    three = _init(tmp_path, synth_root, kernels=3).features("all", FIELDS, START, END)
    assert pools == [3]
    asked = []
    _init(tmp_path, synth_root, kernels=lambda freq: asked.append(freq) or 2).features("all", FIELDS, START, END)
    assert asked == ["day"] and pools[-1] == 2
    pd.testing.assert_frame_equal(one, three)
    monkeypatch.setenv("QEXP_DATA_THREADS", "2")          # without kernels, the environment still decides
    _init(tmp_path, synth_root).features("all", FIELDS, START, END)
    assert pools[-1] == 2


# ---- expression_cache --------------------------------------------------------------------------------
def test_expression_cache_keeps_each_instruments_series(tmp_path, synth_root, monkeypatch):
    direct = _init(tmp_path, synth_root).features("all", FIELDS, START, END)
    assert _entries()["small_entries"] == 2          # no series: only the calendar and the 'all' market
    prov = _init(tmp_path, synth_root, expression_cache="DiskExpressionCache")
    calls = []
    real = type(prov)._evaluate

    def counting(self, *a, **k):
        calls.append(a[3] if len(a) > 3 else None)
        return real(self, *a, **k)

    monkeypatch.setattr(type(prov), "_evaluate", counting)
    first = prov.features("all", FIELDS, START, END)
    assert len(calls) == 1
    n_codes = first.index.get_level_values("instrument").nunique()
    assert _entries()["small_entries"] == len(FIELDS) * n_codes + 2
    again = prov.features("all", FIELDS, "2019-09-02", END)   # another range: read from the cache
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, direct)
    pd.testing.assert_frame_equal(again, direct.loc[pd.Timestamp("2019-09-02"):])
    # default_disk_cache=2 rebuilds, 0 skips the expression cache
    _init(tmp_path, synth_root, expression_cache="DiskExpressionCache", default_disk_cache=2).features(
        "all", FIELDS, START, END)
    assert len(calls) == 2


def test_default_disk_cache_0_skips_the_expression_cache(tmp_path, synth_root, monkeypatch):
    from qexp_data import exprcache
    through_cache = []
    real = exprcache.evaluate_cached

    def counting(*a, **k):
        through_cache.append(1)
        return real(*a, **k)

    monkeypatch.setattr(exprcache, "evaluate_cached", counting)
    cached = _init(tmp_path, synth_root, expression_cache="DiskExpressionCache").features("all", FIELDS, START, END)
    assert through_cache == [1]
    n_entries = _entries()["small_entries"]
    assert n_entries > 2                                # the series (beside the calendar and the market)
    skipped = _init(tmp_path, synth_root, expression_cache="DiskExpressionCache", default_disk_cache=0).features(
        "all", FIELDS, "2019-09-02", END)
    assert through_cache == [1]                         # computed directly: the cache neither read nor written
    assert _entries()["small_entries"] == n_entries
    pd.testing.assert_frame_equal(skipped, cached.loc[pd.Timestamp("2019-09-02"):])


def test_default_conf_server_turns_the_disk_caches_on(tmp_path, synth_root):
    from qexp_data import cache
    _init(tmp_path, synth_root, default_conf="server")
    assert cache.expression_cache_enabled() and cache.enabled()
    _init(tmp_path, synth_root)
    assert not cache.expression_cache_enabled()


# ---- dataset_cache, local_cache_path, default_disk_cache -----------------------------------------------
def _count_loads(monkeypatch) -> list[int]:
    from qexp_data.loader import QlibDataLoader
    calls: list[int] = []
    real = QlibDataLoader._compute

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(QlibDataLoader, "_compute", counting)
    return calls


def test_dataset_cache_values(tmp_path, synth_root, monkeypatch):
    calls = _count_loads(monkeypatch)
    _init(tmp_path, synth_root, dataset_cache=None)
    _alpha158()
    _alpha158()
    assert len(calls) == 2 and _entries()["entries"] == 0
    _init(tmp_path, synth_root, dataset_cache="DiskDatasetCache")
    a = _alpha158()
    b = _alpha158()
    assert len(calls) == 3 and _entries()["entries"] == 1
    pd.testing.assert_frame_equal(a.fetch(col_set="__raw", data_key="raw"), b.fetch(col_set="__raw", data_key="raw"))
    simple = tmp_path / "simple"
    _init(tmp_path, synth_root, dataset_cache="SimpleDatasetCache", local_cache_path=str(simple))
    _alpha158()
    assert len(calls) == 4 and _entries()["uri"] == str(simple) and _entries()["entries"] == 1


def test_local_cache_path_moves_the_disk_store(tmp_path, synth_root):
    where = tmp_path / "elsewhere"
    _init(tmp_path, synth_root, local_cache_path=str(where))
    _alpha158()
    assert _entries()["uri"] == str(where) and _entries()["entries"] == 1


def test_default_disk_cache_skip_use_rebuild(tmp_path, synth_root, monkeypatch):
    calls = _count_loads(monkeypatch)
    _init(tmp_path, synth_root, default_disk_cache=0)
    _alpha158()
    assert _entries()["entries"] == 0
    _init(tmp_path, synth_root, default_disk_cache=1)
    _alpha158()
    _alpha158()
    assert len(calls) == 2 and _entries()["entries"] == 1
    _init(tmp_path, synth_root, default_disk_cache=2)
    _alpha158()
    _alpha158()
    assert len(calls) == 4 and _entries()["entries"] == 1   # recomputed and replaced each time
    with pytest.raises(qexp.ConfigError, match=r"default_disk_cache=3.*one of 0, 1, 2"):
        _init(tmp_path, synth_root, default_disk_cache=3)


# ---- the memory cache H --------------------------------------------------------------------------------
def _count_reads(monkeypatch) -> list[str]:
    from qexp_data import binfmt
    reads: list[str] = []
    real = binfmt.read_bin

    def counting(path, *a, **k):
        reads.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(binfmt, "read_bin", counting)
    return reads


def test_mem_cache_size_limit_and_limit_type(tmp_path, synth_root, monkeypatch):
    from qexp_data.memcache import H
    reads = _count_reads(monkeypatch)
    prov = _init(tmp_path, synth_root)
    prov.features("all", ["$close"], START, END)
    n = len(reads)
    assert n > 0 and len(H["f"]) == n
    prov.features("all", ["$close"], START, END)
    assert len(reads) == n                          # every series from memory
    prov = _init(tmp_path, synth_root, mem_cache_size_limit=10)
    prov.features("all", ["$close"], START, END)
    prov.features("all", ["$close"], START, END)
    assert len(H["f"]) == 10 and len(reads) == 3 * n  # LRU of 10 < n series: read again
    prov = _init(tmp_path, synth_root, mem_cache_size_limit=20_000, mem_cache_limit_type="sizeof")
    prov.features("all", ["$close"], START, END)
    assert 0 < H["f"].size <= 20_000 and 0 < len(H["f"]) < n
    with pytest.raises(qexp.ConfigError, match=r"mem_cache_limit_type='bogus'.*'length', 'sizeof'"):
        _init(tmp_path, synth_root, mem_cache_limit_type="bogus")


def test_mem_cache_expire_rereads_the_calendar(tmp_path, synth_root):
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    prov = _init(tmp_path, root)
    before = len(prov.calendar())
    cal = root / "calendars" / "day.txt"
    cal.write_text(cal.read_text() + "2020-07-01\n")
    assert len(prov.calendar()) == before            # an hour by default: still the cached calendar
    prov = _init(tmp_path, root, mem_cache_expire=0)
    cal.write_text(cal.read_text() + "2020-07-02\n")
    assert len(prov.calendar()) == before + 2


def test_clear_mem_cache(tmp_path, synth_root):
    from qexp_data.memcache import H
    _init(tmp_path, synth_root).features("all", ["$close"], START, END)
    n = len(H["f"])
    assert n
    _init(tmp_path, synth_root, clear_mem_cache=False)
    assert len(H["f"]) == n
    _init(tmp_path, synth_root, clear_mem_cache=True)
    assert len(H["f"]) == 0


# ---- redis_* keys map onto the cache store ------------------------------------------------------------
def test_redis_keys_choose_the_redis_store(tmp_path, synth_root, redis_db):
    _init(tmp_path, synth_root, redis_host="127.0.0.1", redis_port=6379, redis_task_db=11)
    from qexp_data import cache
    store = cache.active_store()
    assert type(store).__name__ == "RedisCacheStore" and (store.host, store.port, store.db) == ("127.0.0.1", 6379, 11)
    _alpha158()
    assert cache.wait_for_writes(60)
    assert store.stats()["entries"] == 3              # the frame, the calendar and the 'all' market
    assert store.client.zcard("qexp:v1:lru") == 3


def test_redis_password_is_sent(tmp_path, synth_root, own_redis):
    import subprocess
    uri, stop = own_redis
    port = int(uri.rsplit(":", 1)[1].split("/")[0])
    subprocess.run(["redis-cli", "-p", str(port), "CONFIG", "SET", "requirepass", "s3cret"], check=True,
                   capture_output=True)
    _init(tmp_path, synth_root, redis_host="127.0.0.1", redis_port=port, redis_task_db=0, redis_password="s3cret")
    from qexp_data import cache
    store = cache.active_store()
    assert not store.degraded and store.uri == f"redis://:***@127.0.0.1:{port}/0"
    with pytest.warns(RuntimeWarning, match="redis connection failed"):
        _init(tmp_path, synth_root, redis_host="127.0.0.1", redis_port=port, redis_task_db=0, redis_password="wrong")
    assert cache.active_store().degraded


# ---- notices, bad values, unknown keys -----------------------------------------------------------------
NOTICE_KEYS = sorted(k for k, s in QLIB_SETTINGS.items() if s.notice)


@pytest.mark.parametrize("key", NOTICE_KEYS)
def test_keys_without_meaning_get_a_notice_naming_them(tmp_path, key, caplog):
    value = QLIB_SETTINGS[key].default
    with caplog.at_level(logging.WARNING, logger="qexp"):
        qexp.init(uri=str(tmp_path / "s"), **{key: value})
    notes = [r.getMessage() for r in caplog.records if "no effect in qexp" in r.getMessage()]
    assert len(notes) == 1 and f"'{key}'" in notes[0]
    assert qexp.get_settings()[key] == value       # accepted, and passed on to workers


@pytest.mark.parametrize("key, bad, allowed", [
    ("kernels", 0, "whole number >= 1"),
    ("kernels", "four", "callable"),
    ("expression_cache", "MemoryCache", "'DiskExpressionCache'"),
    ("dataset_cache", "DiskCache", "'SimpleDatasetCache'"),
    ("local_cache_path", 5, "folder path"),
    ("default_disk_cache", 3, "one of 0, 1, 2"),
    ("mem_cache_size_limit", -1, "whole number >= 0"),
    ("mem_cache_limit_type", "bogus", "'length', 'sizeof'"),
    ("mem_cache_expire", -5, "number >= 0"),
    ("clear_mem_cache", "yes", "True or False"),
    ("redis_host", "", "host name"),
    ("redis_port", 70000, "<= 65535"),
    ("redis_task_db", -1, "whole number >= 0"),
    ("redis_password", 123, "string or None"),
    ("logging_level", "LOUD", "DEBUG, INFO"),
    ("logging_config", "verbose", "dictConfig"),
    ("region", "jp", "'cn', 'us', 'tw'"),
    ("default_conf", "cluster", "'client', 'server'"),
    ("provider_uri", 5, "folder path"),
    ("cache_uri", 5, "string"),
    ("capture_logs", "on", "True or False"),
])
def test_invalid_values_raise_naming_key_and_allowed_values(tmp_path, key, bad, allowed):
    with pytest.raises(qexp.ConfigError) as info:
        qexp.init(uri=str(tmp_path / "s"), **{key: bad})
    assert f"{key}={bad!r}" in str(info.value) and allowed in str(info.value)


def test_unknown_key_raises(tmp_path):
    with pytest.raises(qexp.ConfigError, match=r"unknown setting\(s\) 'kernal'.*neither qexp nor Qlib"):
        qexp.init(uri=str(tmp_path / "s"), kernal=4)


def test_region_and_provider_uri(tmp_path, synth_root):
    from qexp.ext import get_region
    for region in ("us", "TW", "cn"):
        _init(tmp_path, synth_root, region=region)
        assert get_region() == region.lower()
    qexp.init(uri=str(tmp_path / "s"), provider_uri={"day": str(synth_root)})
    from qexp.ext import get_provider
    assert str(get_provider().root) == str(synth_root)


def test_effective_runtime_settings(monkeypatch):
    monkeypatch.delenv("QEXP_DATA_THREADS", raising=False)
    eff = effective_runtime_settings({"kernels": 3, "redis_host": "h", "redis_task_db": 2, "mount_path": "/m",
                                      "mem_cache_limit_type": "sizeof", "default_disk_cache": 2})
    assert eff["kernels"] == 3 and eff["cache_uri"] == "redis://h:6379/2" and eff["default_disk_cache"] == 2
    assert eff["mem_cache_limit_type"] == "sizeof" and eff["mem_cache_size_limit"] == 500
    assert "mount_path" in eff["ignored"] and eff["dataset_cache"] == "DiskDatasetCache"
    assert eff["trade_unit"] == "the region's (cn)" and "trade_unit" not in eff["ignored"]
    assert effective_runtime_settings({"deal_price": "open"})["deal_price"] == "open"
    assert effective_runtime_settings({"dataset_cache": None})["cache_uri"] is None
    assert effective_runtime_settings({"kernels": lambda f: 5})["kernels"] == 5
    assert np.isclose(effective_runtime_settings({})["system_metrics_interval"], 10.0)
