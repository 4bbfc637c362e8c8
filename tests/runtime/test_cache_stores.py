"""Cache stores: the disk store's LRU cap and corruption checks, the Redis store's entries, leases, single-flight
builds across processes, a killed builder, Redis going away, and ``qexp cache stats|clear``."""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import qexp
from qexp.ext import open_cache_store

START, END = "2019-06-01", "2020-03-31"


def frame(seed: int, rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.date_range("2020-01-01", periods=rows // 4)
    idx = pd.MultiIndex.from_product([days, ["AAA", "BBB", "CCC", "DDD"]], names=["datetime", "instrument"])
    cols = pd.MultiIndex.from_tuples([("feature", "A"), ("feature", "B"), ("label", "L")])
    return pd.DataFrame(rng.standard_normal((len(idx), 3)).astype("float32"), index=idx, columns=cols)


def digest(df: pd.DataFrame) -> str:
    return hashlib.sha256(np.ascontiguousarray(df.to_numpy()).tobytes()).hexdigest()


# ---- the disk store -------------------------------------------------------------------------------------
def test_disk_store_lru_cap_keeps_recently_used_entries(tmp_path):
    store = open_cache_store(f"disk://{tmp_path / 'c'}?max_gb=0")
    size = None
    for i in range(3):
        assert store.put_frame(f"k{i}", frame(i))
        size = size or store.stats()["total_bytes"]
        time.sleep(0.02)
    store.get_frame("k0")                       # k0 used again: k1 is now the least recently used
    capped = open_cache_store(f"disk://{tmp_path / 'c'}?max_gb={3.5 * size / 1024 ** 3}")
    time.sleep(0.02)
    assert capped.put_frame("k3", frame(3))
    keys = sorted(p.name for p in (tmp_path / "c").iterdir() if not p.name.startswith("."))
    assert keys == ["k0", "k2", "k3"]
    assert capped.stats()["total_bytes"] <= capped.max_bytes
    pd.testing.assert_frame_equal(capped.get_frame("k0"), frame(0))


def test_default_cap_is_documented_and_set_by_env(tmp_path, monkeypatch):
    from qexp.ext import default_max_bytes
    monkeypatch.delenv("QEXP_CACHE_MAX_GB", raising=False)
    assert default_max_bytes() == 5 * 1024 ** 3
    monkeypatch.setenv("QEXP_CACHE_MAX_GB", "0.5")
    assert open_cache_store(str(tmp_path / "x")).max_bytes == 512 * 1024 ** 2
    monkeypatch.setenv("QEXP_CACHE_MAX_GB", "0")
    assert open_cache_store(str(tmp_path / "y")).max_bytes is None


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip", "index", "no_meta", "half_written"])
def test_corrupt_or_half_written_entries_are_rebuilt_never_returned(tmp_path, damage):
    store = open_cache_store(str(tmp_path / "c"))
    good = frame(7)
    store.put_frame("k", good)
    folder = tmp_path / "c" / "k"
    values = folder / "values.npy"
    if damage == "garbage":
        values.write_bytes(b"garbage")
    elif damage == "truncate":
        values.write_bytes(values.read_bytes()[:-100])
    elif damage == "flip":                       # one bit in the middle of the data
        raw = bytearray(values.read_bytes())
        raw[len(raw) // 2] ^= 0x10
        values.write_bytes(bytes(raw))
    elif damage == "index":
        (folder / "index.npz").write_bytes((folder / "index.npz").read_bytes()[:50])
    elif damage == "no_meta":
        (folder / "meta.json").unlink()
    else:                                        # a writer died after its temp folder, before the rename
        import shutil
        shutil.rmtree(folder)
        tmp = tmp_path / "c" / ".tmp-k-dead"
        tmp.mkdir()
        (tmp / "values.npy").write_bytes(b"\x93NUMPY")
    assert store.get_frame("k") is None
    built = []
    got = store.get_or_create_frame("k", lambda: built.append(1) or good)
    assert built == [1]
    pd.testing.assert_frame_equal(got, good)
    pd.testing.assert_frame_equal(store.get_frame("k"), good)


def test_small_entries_are_raw_arrays_never_pickles(tmp_path):
    store = open_cache_store(str(tmp_path / "c"))
    arrays = {"v": np.arange(10, dtype="float32"), "days": np.array(["2020-01-02"], dtype="datetime64[D]")}
    assert store.put_arrays("s1", arrays, {"first": 3})
    got, meta = store.get_arrays("s1")
    assert meta == {"first": 3} and np.array_equal(got["v"], arrays["v"]) and got["days"].dtype == arrays["days"].dtype
    assert not store.put_arrays("s2", {"o": np.array([object()])})          # refused: would need a pickle
    path = next((tmp_path / "c" / ".small").rglob("s1.qxc"))
    blob = path.read_bytes()
    assert blob[:4] == b"QXC1" and b"pickle" not in blob and arrays["v"].tobytes() in blob
    path.write_bytes(blob[:-3] + b"xyz")
    assert store.get_arrays("s1") is None and not path.exists()


# ---- the Redis store ------------------------------------------------------------------------------------
def test_redis_small_entries_in_redis_frames_on_disk(tmp_path, redis_db):
    store = open_cache_store(f"{redis_db}?dir={tmp_path / 'shared'}")
    v = np.linspace(0, 1, 50, dtype="float32")
    assert store.put_arrays("series", {"v": v}, {"first": 12})
    r = store.client
    assert r.get("qexp:v1:blob:series") == v.tobytes()                  # raw bytes
    header = json.loads(r.hget("qexp:v1:meta:series", "header"))         # JSON metadata
    assert header["meta"] == {"first": 12} and header["arrays"][0]["dtype"] == "<f4"
    got, meta = store.get_arrays("series")
    assert np.array_equal(got["v"], v) and meta["first"] == 12
    df = frame(1)
    assert store.put_frame("big", df)
    assert r.hget("qexp:v1:meta:big", "location") == b"disk" and not r.exists("qexp:v1:blob:big")
    assert (tmp_path / "shared" / "big" / "values.npy").is_file()
    pd.testing.assert_frame_equal(store.get_frame("big"), df)
    # a corrupt blob is detected, removed, never returned
    r.set("qexp:v1:blob:series", v.tobytes()[:-4] + b"\0\0\0\0")
    assert store.get_arrays("series") is None and not r.exists("qexp:v1:meta:series")
    # big small-entries go to disk (Redis strings are capped)
    small_cap = open_cache_store(f"{redis_db}?dir={tmp_path / 'shared'}&max_value_mb=0.0001")
    assert small_cap.put_arrays("wide", {"v": np.zeros(1000, dtype="float64")})
    assert r.hget("qexp:v1:meta:wide", "location") == b"disk" and small_cap.get_arrays("wide") is not None


def test_redis_size_cap_evicts_least_recently_used(tmp_path, redis_db):
    probe = open_cache_store(f"{redis_db}?dir={tmp_path / 'd'}&max_gb=0")
    probe.put_frame("probe", frame(0))
    size = int(probe.client.get("qexp:v1:bytes"))
    probe.clear()
    cap = 2.5 * size / 1024 ** 3
    store = open_cache_store(f"{redis_db}?dir={tmp_path / 'd'}&max_gb={cap}")
    for i in range(2):
        store.put_frame(f"f{i}", frame(i))
        time.sleep(0.01)
    store.get_frame("f0")
    store.put_frame("f2", frame(2))
    assert sorted(k.decode() for k in store.client.zrange("qexp:v1:lru", 0, -1)) == ["f0", "f2"]
    assert not (tmp_path / "d" / "f1").exists() and store.get_frame("f1") is None
    assert int(store.client.get("qexp:v1:bytes")) <= store.max_bytes


def test_lease_is_renewed_while_held_and_expires_when_the_holder_dies(tmp_path):
    """fakeredis[lua]: redis-py's lock (Lua scripts) with qexp's renewal thread."""
    fakeredis = pytest.importorskip("fakeredis")
    from qexp_redis.store import RedisCacheStore
    server = fakeredis.FakeServer()
    a = RedisCacheStore(f"redis://fake/0?lock_ttl=0.6&dir={tmp_path}", client=fakeredis.FakeRedis(server=server))
    b = RedisCacheStore(f"redis://fake/0?lock_ttl=0.6&dir={tmp_path}", client=fakeredis.FakeRedis(server=server))
    held = a.lock("build:x")
    assert held.acquire(timeout=1)
    time.sleep(1.5)                                  # > 2 TTLs: alive only because it is renewed
    assert not b.lock("build:x").acquire(timeout=0.3)
    a._renewer.stop()                                # the holder "dies": nobody renews any more
    t0 = time.monotonic()
    other = b.lock("build:x")
    assert other.acquire(timeout=5)
    assert time.monotonic() - t0 < 1.5
    other.release()
    held.release()                                   # an expired lease releases without error


# ---- processes ------------------------------------------------------------------------------------------
def _build_alpha158(settings: dict, barrier, delay: float) -> tuple[int, str]:
    """Child process: qexp.init(**settings) and Alpha158 with a cold cache; returns (computations, digest)."""
    import time as _t

    import qexp as q
    from qexp_data.alpha import Alpha158
    from qexp_data.loader import QlibDataLoader
    q.init(**settings)
    computed = []
    real = QlibDataLoader._compute

    def counting(self, *a, **k):
        computed.append(1)
        _t.sleep(delay)                              # widen the race window
        return real(self, *a, **k)

    QlibDataLoader._compute = counting
    barrier.wait(timeout=120)
    h = Alpha158(instruments="all", start_time=START, end_time=END, fit_start_time=START, fit_end_time="2019-12-31")
    df = h.fetch(col_set="__raw", data_key="raw")
    return len(computed), digest(df)


def _four_processes(settings: dict) -> list[tuple[int, str]]:
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(4)
        with ctx.Pool(4) as pool:
            return pool.starmap(_build_alpha158, [(settings, barrier, 1.0)] * 4)


@pytest.mark.slow
def test_four_processes_compute_alpha158_once_with_redis(tmp_path, synth_root, redis_db):
    settings = {"uri": str(tmp_path / "store"), "provider_uri": str(synth_root),
                "cache_uri": f"{redis_db}?dir={tmp_path / 'shared'}"}
    results = _four_processes(settings)
    assert sum(c for c, _ in results) == 1, results
    assert len({d for _, d in results}) == 1
    import redis
    assert redis.Redis(db=11).zcard("qexp:v1:lru") == 3    # the frame, the calendar and the 'all' market


@pytest.mark.slow
def test_four_processes_compute_alpha158_once_with_the_disk_cache(tmp_path, synth_root):
    settings = {"uri": str(tmp_path / "store"), "provider_uri": str(synth_root),
                "cache_uri": str(tmp_path / "disk")}
    results = _four_processes(settings)
    assert sum(c for c, _ in results) == 1, results
    assert len({d for _, d in results}) == 1


def _hold_the_lock(uri: str, started) -> None:
    """Child process: take the build lock of key 'k' and never finish (the parent SIGKILLs it)."""
    import time as _t

    from qexp.ext import open_cache_store as open_store
    store = open_store(uri)

    def compute():
        started.set()
        _t.sleep(600)

    store.get_or_create_frame("k", compute)


def test_sigkilled_builders_lock_expires_and_another_process_builds(tmp_path, redis_db):
    uri = f"{redis_db}?dir={tmp_path / 'shared'}&lock_ttl=2"
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    holder = ctx.Process(target=_hold_the_lock, args=(uri, started))
    holder.start()
    try:
        assert started.wait(60)
        store = open_cache_store(uri)
        assert store.client.exists("qexp:v1:lock:build:k")
        time.sleep(2.5)                               # > TTL: the live holder keeps renewing its lease
        assert store.client.exists("qexp:v1:lock:build:k")
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        t0 = time.monotonic()
        built = []
        got = store.get_or_create_frame("k", lambda: built.append(1) or frame(5))
        waited = time.monotonic() - t0
    finally:
        if holder.is_alive():
            holder.kill()
    assert built == [1] and waited < 4.0, waited      # freed within the TTL, no manual `redis-cli del`
    pd.testing.assert_frame_equal(got, frame(5))


def test_redis_stopped_mid_run_warns_once_and_gives_the_same_result(tmp_path, synth_root, own_redis):
    from qexp_data import cache
    from qexp_data.alpha import Alpha158
    uri, stop = own_redis
    qexp.init(uri=str(tmp_path / "store"), provider_uri=str(synth_root), cache_uri=f"{uri}?dir={tmp_path / 'shared'}")

    def raw(**kw):
        h = Alpha158(instruments="all", start_time=START, end_time=END, fit_start_time=START,
                     fit_end_time="2019-12-31", **kw)
        return h.fetch(col_set="__raw", data_key="raw")

    first = raw()
    assert cache.wait_for_writes(60)
    assert cache.active_store().stats()["entries"] == 3   # the frame, the calendar and the 'all' market
    stop()
    with pytest.warns(RuntimeWarning, match="redis connection failed") as record:
        again = raw()                                 # the entry on disk, read with local locks
        other = raw(label=(["Ref($close, -3)/$close - 1"], ["LABEL3"]))   # a new entry: built locally
        assert cache.wait_for_writes(60)
    assert sum("redis connection failed" in str(w.message) for w in record) == 1
    pd.testing.assert_frame_equal(again, first)
    assert len(other) == len(first)


def test_unreachable_redis_at_init_warns_and_the_run_goes_on(tmp_path, synth_root):
    from qexp_data import cache
    from qexp_data.alpha import Alpha158

    from .conftest import free_port
    port = free_port()                                # nothing listens there
    with pytest.warns(RuntimeWarning, match=rf"redis connection failed \(host=127.0.0.1 port={port}") as record:
        qexp.init(uri=str(tmp_path / "store"), provider_uri=str(synth_root),
                  cache_uri=f"redis://127.0.0.1:{port}/0?dir={tmp_path / 'local'}")
        Alpha158(instruments="all", start_time=START, end_time=END, fit_start_time=START, fit_end_time="2019-12-31")
        Alpha158(instruments="all", start_time=START, end_time=END, fit_start_time=START, fit_end_time="2019-12-31")
        assert cache.wait_for_writes(60)
    assert sum("redis connection failed" in str(w.message) for w in record) == 1
    assert [p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith(".")]


def test_cache_cli_stats_and_clear(tmp_path, synth_root, redis_db12, monkeypatch):
    from qexp.cli.main import get_cli
    from qexp_data import cache
    monkeypatch.setenv("QEXP_CACHE_URI", f"{redis_db12}?dir={tmp_path / 'shared'}")
    qexp.init(uri=str(tmp_path / "store"), provider_uri=str(synth_root))
    from qexp_data.alpha import Alpha158
    Alpha158(instruments="all", start_time=START, end_time=END, fit_start_time=START, fit_end_time="2019-12-31")
    assert cache.wait_for_writes(60)
    open_cache_store(str(tmp_path / "cache" / "datasets")).put_frame("local", frame(0))
    runner = CliRunner()
    res = runner.invoke(get_cli(), ["cache", "stats", "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output[res.output.index("["):])
    kinds = {s["kind"]: s for s in stats}
    # redis: the frame, the calendar and the 'all' market; disk entries count frames only
    assert kinds["disk"]["entries"] == 1 and kinds["redis"]["entries"] == 3 and kinds["redis"]["reachable"]
    assert kinds["disk"]["max_bytes"] == 5 * 1024 ** 3
    res = runner.invoke(get_cli(), ["cache", "stats"])
    assert res.exit_code == 0 and "redis://127.0.0.1:6379/12" in res.output and "5.0 GB" in res.output
    res = runner.invoke(get_cli(), ["cache", "clear"])          # QEXP_CACHE_URI's store only
    assert res.exit_code == 0, res.output
    assert "removed 3 entries from" in res.output
    stats = {s["kind"]: s for s in json.loads(runner.invoke(get_cli(), ["cache", "stats", "--json"]).output)}
    assert stats["redis"]["entries"] == 0 and stats["disk"]["entries"] == 1
    res = runner.invoke(get_cli(), ["cache", "clear", "--uri", str(tmp_path / "cache" / "datasets")])
    assert res.exit_code == 0 and "removed 1 entry from" in res.output
    stats = json.loads(runner.invoke(get_cli(), ["cache", "stats", "--json"]).output)
    assert all(s.get("entries", 0) == 0 for s in stats)
    res = runner.invoke(get_cli(), ["cache", "stats", "--uri", "nosuch://x"])
    assert res.exit_code != 0 and "nosuch" in res.output
