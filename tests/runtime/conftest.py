"""Fixtures for the runtime tests: the monitor and Redis plugins loaded (here and in child processes), a small
synthetic market, the machine's Redis (databases 11, 12 and 13 only, flushed), and the process-wide runtime state
(logging, data settings, memory cache) put back after each test."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ..services import import_client, service_missing

RUNTIME_PLUGINS = ("monitor", "redis_cache")
REDIS_DBS = (11, 12, 13)


@pytest.fixture(autouse=True)
def _runtime_plugins(monkeypatch):
    """Register qexp_monitor and qexp_redis (the suite's QEXP_LOAD_PLUGINS leaves them out) and let spawned
    children load them through their entry points."""
    import qexp_monitor.plugin
    import qexp_redis.plugin
    from qexp.ext import get_plugin, load_plugins, register_plugin
    load_plugins()
    for name, module in (("monitor", qexp_monitor.plugin), ("redis_cache", qexp_redis.plugin)):
        if get_plugin(name) is None:
            register_plugin(module, name=name)
    loaded = [n for n in os.environ.get("QEXP_LOAD_PLUGINS", "").split(",") if n]
    if loaded:
        monkeypatch.setenv("QEXP_LOAD_PLUGINS", ",".join(dict.fromkeys([*loaded, *RUNTIME_PLUGINS, "executors"])))
    yield


@pytest.fixture(autouse=True)
def _reset_runtime_state():
    """Each test starts and ends with default logging, data runtime settings and memory cache."""
    root = logging.getLogger("qexp")
    saved = (root.level, list(root.handlers), root.propagate)
    yield
    from qexp_data import cache, memcache, provider
    from qexp_monitor.monitor import MONITOR
    cache.reset_runtime()
    provider.set_kernels(None)
    memcache.configure({})
    MONITOR.config = None
    import qexp.log as qlog
    qlog._state["capture"] = False
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    root.propagate = saved[2]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic market: 40 instruments over 18 months (Alpha158 computes in about a second)."""
    from qexp_data.synth import SynthParams, write_synth
    root = tmp_path_factory.mktemp("synth") / "data"
    write_synth(root, SynthParams(instruments=40, start="2019-01-01", end="2020-06-30", seed=3))
    return root


def _redis_db(db: int):
    """The machine's Redis database ``db``, flushed before and after; skipped (failed under
    ``QEXP_REQUIRE_SERVICES=1``) when the client library is missing or no server answers."""
    redis = import_client("redis", reason="the Redis tests need redis-py (pip install \"qexp[redis]\")")
    client = redis.Redis(host="127.0.0.1", port=6379, db=db, socket_connect_timeout=1)
    try:
        client.ping()
    except Exception as exc:
        service_missing(f"no Redis server at 127.0.0.1:6379 ({exc}); .ci/run starts one")
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{db}"
    client.flushdb()
    client.close()


@pytest.fixture
def redis_db():
    """The machine's Redis, database 11, flushed before and after."""
    yield from _redis_db(11)


@pytest.fixture
def redis_db12():
    yield from _redis_db(12)


@pytest.fixture
def redis_db13():
    """Database 13 (the calendar and instrument-list entries' tests)."""
    yield from _redis_db(13)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path):
    """A private redis-server on a free port (the test may stop it; the shared server is never touched).
    Yields ``(uri, stop)``."""
    import shutil
    exe = shutil.which("redis-server")
    if exe is None:
        service_missing("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    for _ in range(100):
        try:
            client.ping()
            break
        except Exception:
            time.sleep(0.05)
    else:
        proc.kill()
        service_missing("the private redis-server did not start")

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)

    yield f"redis://127.0.0.1:{port}/0", stop
    stop()
