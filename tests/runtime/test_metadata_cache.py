"""Calendars and instrument lists live in the shared cache store (issue 17 item 4): the first process reads
the files and stores raw arrays in Redis; another process reads them from Redis without opening a calendar or
instruments file; a changed file gets a new key and is read again, never served stale."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

import qexp

DAYS = ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07", "2020-01-08"]
MARKET = "AAA\t2020-01-02\t2020-01-08\nBBB\t2020-01-03\t2020-01-07\nCCC\t2020-01-06\t2020-01-08\n"

# a second process: every file read of the provider is counted (binfmt's two readers are the only ones)
CHILD = r"""
import json, sys
import qexp
from qexp_data import binfmt
reads = []
for name in ("read_calendar", "read_instruments"):
    real = getattr(binfmt, name)
    def counting(path, _real=real, _name=name):
        reads.append([_name, str(path)])
        return _real(path)
    setattr(binfmt, name, counting)
qexp.init(uri=sys.argv[1], provider_uri=sys.argv[2], cache_uri=sys.argv[3])
from qexp.ext import get_provider
p = get_provider()
cal = [str(d.date()) for d in p.calendar()]
spans = {c: [[str(s.date()), str(e.date())] for s, e in v] for c, v in p.list_instruments("csi300").items()}
print(json.dumps({"reads": reads, "calendar": cal, "spans": spans}))
"""


def _market(root: Path) -> Path:
    (root / "calendars").mkdir(parents=True)
    (root / "instruments").mkdir()
    (root / "calendars" / "day.txt").write_text("\n".join(DAYS) + "\n")
    (root / "instruments" / "csi300.txt").write_text(MARKET)
    return root


def _child(tmp_path: Path, root: Path, cache_uri: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "store"), str(root), cache_uri],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_calendars_and_instrument_lists_are_shared_through_redis(tmp_path, redis_db13):
    import redis

    from qexp_data.metacache import entry_key
    root = _market(tmp_path / "data")
    cache_uri = f"{redis_db13}?dir={tmp_path / 'shared'}"
    qexp.init(uri=str(tmp_path / "store"), provider_uri=str(root), cache_uri=cache_uri)
    from qexp.ext import get_provider
    p = get_provider()
    assert [str(d.date()) for d in p.calendar()] == DAYS
    assert sorted(p.list_instruments("csi300")) == ["AAA", "BBB", "CCC"]

    client = redis.Redis(host="127.0.0.1", port=6379, db=13)
    cal_file, market_file = root / "calendars" / "day.txt", root / "instruments" / "csi300.txt"
    for kind, path in (("calendar", cal_file), ("instruments", market_file)):
        key = entry_key(kind, path)
        assert client.exists(f"qexp:v1:blob:{key}"), kind          # raw arrays in Redis, not on disk
        assert client.hget(f"qexp:v1:meta:{key}", "location") == b"redis"
        header = json.loads(client.hget(f"qexp:v1:meta:{key}", "header"))
        assert header["meta"] == {"kind": kind, "path": str(path)}
    assert not (tmp_path / "shared" / ".small").exists()

    # another process reads both from Redis: no calendar or instruments file is opened
    got = _child(tmp_path, root, cache_uri)
    assert got["reads"] == []
    assert got["calendar"] == DAYS
    assert got["spans"] == {"AAA": [["2020-01-02", "2020-01-08"]], "BBB": [["2020-01-03", "2020-01-07"]],
                            "CCC": [["2020-01-06", "2020-01-08"]]}

    # a changed folder is not served stale: the changed file has a new key and is read again
    market_file.write_text(MARKET.replace("BBB\t2020-01-03\t2020-01-07\n", ""))
    os.utime(market_file, ns=(os.stat(market_file).st_atime_ns, os.stat(market_file).st_mtime_ns + 10**9))
    got = _child(tmp_path, root, cache_uri)
    assert got["reads"] == [["read_instruments", str(market_file)]]
    assert sorted(got["spans"]) == ["AAA", "CCC"] and got["calendar"] == DAYS
    assert _child(tmp_path, root, cache_uri)["reads"] == []      # and the new version is shared in turn


def test_the_disk_store_keeps_them_too_and_default_disk_cache_0_reads_the_files(tmp_path, monkeypatch):
    from qexp_data import binfmt
    root = _market(tmp_path / "data")
    reads: list[str] = []
    for name in ("read_calendar", "read_instruments"):
        real = getattr(binfmt, name)
        monkeypatch.setattr(binfmt, name, lambda path, _real=real: reads.append(str(path)) or _real(path))

    def read_all(**settings) -> tuple[pd.DatetimeIndex, dict]:
        qexp.init(uri=str(tmp_path / "store"), provider_uri=str(root), cache_uri=str(tmp_path / "disk"), **settings)
        from qexp.ext import get_provider
        p = get_provider()
        return p.calendar(), p.list_instruments("csi300")

    cal, spans = read_all()
    assert len(reads) == 2 and len(list((tmp_path / "disk" / ".small").rglob("*.qxc"))) == 2
    reads.clear()
    cal2, spans2 = read_all()                  # a new provider (as in a new process): from the store
    assert reads == [] and cal2.equals(cal) and spans2 == spans
    read_all(default_disk_cache=0)             # the caches skipped: the files are read
    assert len(reads) == 2
