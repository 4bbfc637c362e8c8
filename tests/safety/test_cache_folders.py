"""The disk cache deletes only what qexp wrote: a cache folder pointed at a user's folder is refused, eviction
and ``clear`` remove entries only, ``qexp cache clear`` clears the store it names, and small-entry batches do
not rescan the store each time."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import qexp
from qexp.cli.main import get_cli


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([pd.date_range("2020-01-01", periods=20), ["A", "B"]],
                                     names=["datetime", "instrument"])
    return pd.DataFrame(rng.standard_normal((len(idx), 2)).astype("float32"), index=idx, columns=["x", "y"])


def _victim(tmp_path):
    victim = tmp_path / "victim"
    (victim / "project" / "src").mkdir(parents=True)
    (victim / "thesis").mkdir()
    (victim / "thesis" / "thesis.tex").write_text("x")
    (victim / "project" / "src" / "main.py").write_text("print(1)")
    return victim


def _intact(victim) -> bool:
    return (victim / "thesis" / "thesis.tex").read_text() == "x" and (victim / "project" / "src" / "main.py").is_file()


def test_cache_clear_refuses_a_user_folder(tmp_path):
    victim = _victim(tmp_path)
    res = CliRunner().invoke(get_cli(), ["cache", "clear", "--uri", str(victim)])
    assert res.exit_code != 0
    assert "not a qexp cache" in res.output and "thesis" in res.output, res.output
    assert _intact(victim)


def test_cache_store_at_a_user_folder_is_refused_at_init(tmp_path):
    victim = _victim(tmp_path)
    with pytest.raises(qexp.QexpError, match="not a qexp cache"):
        qexp.init(uri=str(tmp_path / "store"), local_cache_path=str(victim))
    assert _intact(victim)


def test_eviction_and_clear_touch_only_entries(tmp_path):
    from qexp_data.cache import MARKER, DiskCacheStore
    root = tmp_path / "cache"
    store = DiskCacheStore(root, max_bytes=None)
    assert store.put_frame("a" * 40, _frame(1)) and store.put_arrays("b" * 40, {"v": np.arange(5.0)})
    assert (root / MARKER).is_file()
    # the user puts things into the (marked) cache folder afterwards: they are never evicted or cleared
    (root / "notes").mkdir()
    (root / "notes" / "n.txt").write_text("keep")
    (root / "c").mkdir()                              # a short key-like name, empty
    fake = root / ("d" * 40)                           # named like a key, but no qexp meta.json
    fake.mkdir()
    (fake / "meta.json").write_text('{"hello": 1}')
    (root / ".small" / "bb" / "foreign.txt").write_text("keep")
    capped = DiskCacheStore(root, max_bytes=1)       # everything qexp wrote is over the cap
    assert capped.evict() == 2
    assert (root / "notes" / "n.txt").read_text() == "keep" and (fake / "meta.json").is_file()
    assert (root / ".small" / "bb" / "foreign.txt").is_file()
    store.put_frame("e" * 40, _frame(2))
    assert store.clear() == 1
    assert (root / "notes" / "n.txt").read_text() == "keep" and (fake / "meta.json").is_file()


def test_a_cache_made_before_the_marker_is_adopted(tmp_path):
    from qexp_data.cache import MARKER, DiskCacheStore
    root = tmp_path / "old"
    DiskCacheStore(root).put_frame("f" * 40, _frame(3))
    (root / MARKER).unlink()
    store = DiskCacheStore(root)                     # only cache content: accepted and marked
    assert (root / MARKER).is_file()
    pd.testing.assert_frame_equal(store.get_frame("f" * 40), _frame(3))


def test_a_cache_of_an_earlier_release_is_adopted(tmp_path):
    """Entries written before the key was stored in meta.json (format 2) are still qexp's: the folder is used,
    not refused, and they can be evicted."""
    import json

    from qexp_data.cache import MARKER, DiskCacheStore
    root = tmp_path / "release"
    DiskCacheStore(root).put_frame("e" * 40, _frame(3))
    (root / MARKER).unlink()
    meta_path = root / ("e" * 40) / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["key"]
    meta_path.write_text(json.dumps(meta))
    (root / ".locks").mkdir()
    store = DiskCacheStore(root)
    assert (root / MARKER).is_file()
    assert store.clear() == 1 and not (root / ("e" * 40)).exists()


def test_cache_clear_clears_only_the_store_named(tmp_path, monkeypatch):
    from qexp_data.cache import DiskCacheStore, cache_root
    monkeypatch.delenv("QEXP_CACHE_URI", raising=False)
    default = DiskCacheStore(cache_root())
    default.put_frame("a" * 40, _frame(1))
    other = DiskCacheStore(tmp_path / "other")
    other.put_frame("b" * 40, _frame(2))
    res = CliRunner().invoke(get_cli(), ["cache", "clear", "--uri", str(tmp_path / "other")])
    assert res.exit_code == 0, res.output
    assert "removed 1 entry from" in res.output and str(tmp_path / "other") in res.output
    assert default.get_frame("a" * 40) is not None and other.get_frame("b" * 40) is None
    res = CliRunner().invoke(get_cli(), ["cache", "clear", "--yes"])
    assert res.exit_code == 0 and default.get_frame("a" * 40) is None


def test_small_entry_batches_do_not_rescan_the_store(tmp_path, monkeypatch):
    from qexp_data.cache import DiskCacheStore
    store = DiskCacheStore(tmp_path / "c", max_bytes=10 ** 9)
    scans = []
    real = store._entries
    monkeypatch.setattr(store, "_entries", lambda: scans.append(1) or real())
    for b in range(40):                               # a cold expression-cache build writes dozens of batches
        items = [(f"{b:02d}{i:038d}", {"v": np.arange(10.0)}, {}) for i in range(20)]
        assert store.put_many_arrays(items) == 20
    assert len(scans) <= 1, f"{len(scans)} full scans of the store for 40 batches"
    # the cap is still enforced once much was written since the last check
    small = DiskCacheStore(tmp_path / "c", max_bytes=20_000)
    small.put_many_arrays([(f"ff{i:038d}", {"v": np.zeros(1000)}, {}) for i in range(5)])
    assert small.stats()["total_bytes"] <= 20_000


def test_redis_store_refuses_a_user_folder_as_its_disk_dir(tmp_path):
    fakeredis = pytest.importorskip("fakeredis")
    from qexp_redis.store import RedisCacheStore
    victim = _victim(tmp_path)
    with pytest.raises(qexp.QexpError, match="not a qexp cache"):
        RedisCacheStore(f"redis://fake/0?dir={victim}", client=fakeredis.FakeRedis())
    assert _intact(victim)


def test_one_mask_uri_for_every_printed_uri():
    from qexp.ext import mask_uri
    assert mask_uri("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_uri("postgresql://me:p/w@h:5432/db") == "postgresql://me:***@h:5432/db"
    assert mask_uri("mysql://me@h/db") == "mysql://me@h/db" and mask_uri("/a/b@c") == "/a/b@c"
    assert mask_uri("redis://h/0?password=x&prefix=q") == "redis://h/0?password=***&prefix=q"
