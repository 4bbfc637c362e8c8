"""Fixtures of the UI tests: a filled store per backend, `qexp ui` serving it on 127.0.0.1, and a headless
Debian chromium driven through chromedriver (Selenium)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from .stores import PLUGINS, REPO, make_market, start_writer, writer_env

pytest.importorskip("fastapi", reason="the ui extra is not installed (pip install \"qexp[ui]\")")
pytest.importorskip("uvicorn", reason="the ui extra is not installed (pip install \"qexp[ui]\")")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
STORE_KINDS = ["file", "sqlite"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="session")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_market(tmp_path_factory.mktemp("ui-market") / "market")


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots: $QEXP_UI_SCREENSHOTS, else a temporary folder."""
    env = os.environ.get("QEXP_UI_SCREENSHOTS")
    folder = Path(env) if env else tmp_path_factory.mktemp("ui-screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_ui(uri: str, *extra: str, log: Path) -> tuple[subprocess.Popen, str]:
    """`qexp ui` on a free loopback port, as a user starts it."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "qexp", "ui", "--uri", uri, "--port", str(port), *extra],
                            env=writer_env(QEXP_LOAD_PLUGINS=PLUGINS), stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), cwd=str(REPO))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc)
    except RuntimeError:
        proc.kill()
        raise RuntimeError(f"qexp ui did not start: {log.read_text()[-3000:]}") from None
    return proc, base


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module", params=STORE_KINDS)
def ui_site(request: pytest.FixtureRequest, market: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, Any]]:
    """A filled store of one backend, with a live and a killed run, served by `qexp ui`."""
    kind = request.param
    folder = tmp_path_factory.mktemp(f"ui-{kind}")
    if kind == "sqlite":
        pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
        uri = f"sqlite:///{folder / 'mlflow.db'}"
    else:
        uri = str(folder / "runs")
    build = subprocess.run([sys.executable, str(Path(__file__).with_name("stores.py")), uri, str(market)],
                           env=writer_env(), capture_output=True, text=True, timeout=600, cwd=str(folder))
    assert build.returncode == 0, build.stderr[-4000:]
    info = json.loads(next(line for line in build.stdout.splitlines()
                           if line.startswith("QEXP-UI-STORE "))[len("QEXP-UI-STORE "):])
    live_dir = folder / "live"
    killed, info["killed"] = start_writer(uri, live_dir, "kill")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    writer, info["live"] = start_writer(uri, live_dir, "live")
    server, base = start_ui(uri, log=folder / "ui.log")
    info.update(kind=kind, uri=uri, base=base, live_dir=live_dir)
    try:
        yield info
    finally:
        (live_dir / "stop").touch()
        try:
            writer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            writer.kill()
        stop(server)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian chromium through chromedriver, offline, with a fresh profile."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver; "
                    ".ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try to download a driver
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1360,1000", "--enable-unsafe-swiftshader",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # script errors, for the tests to read
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
