"""The UI over HTTP, in process (Starlette's TestClient): tokens, read-only mode and CSRF, artifact path
checks, the restricted unpickler, readable errors, downsampling and the `qexp ui` command's refusals."""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.ext import ConfigError, Metric

pytest.importorskip("fastapi", reason="the ui extra is not installed (pip install \"qexp[ui]\")")

from fastapi.testclient import TestClient  # noqa: E402

from qexp_ui.app import create_app  # noqa: E402
from qexp_ui.artifacts import preview_bytes  # noqa: E402
from qexp_ui.series import downsample_indices  # noqa: E402

HTML = {"Accept": "text/html"}
LOCAL = "http://127.0.0.1:5000"


class Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


class FileWriter:
    """Unpickling this would make pandas write a file (a library function, not a class)."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self) -> Any:
        return (pd.DataFrame({"a": [1]}).to_pickle.__func__, (pd.DataFrame({"a": [1]}), self.target))


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Any]:
    uri = str(tmp_path / "runs")
    qexp.init(uri=uri)
    with R.start(experiment_name="exp", recorder_name="run-a"):
        rec = R.get_recorder()
        R.log_params(lr=0.1, leaves=31)
        for step in range(5):
            R.log_metrics(step=step, loss=1.0 / (step + 1))
        R.log_metrics(IC=0.03)
        R.save_objects(**{"pred.pkl": pd.DataFrame({"score": np.arange(50.0)}), "config": {"task": {"model": "x"}}})
        rec.log_text("hello: world\n", "notes/info.yaml")
        rec.log_bytes(pickle.dumps(Evil(str(tmp_path / "pwned"))), "evil.pkl")
        rec.log_bytes(pickle.dumps(FileWriter(str(tmp_path / "written.pkl"))), "writer.pkl")
    with R.start(experiment_name="exp", recorder_name="run-b"):
        other = R.get_recorder()
        R.log_params(lr=0.2, leaves=31)
        R.log_metrics(IC=0.01)
    art = Path(rec.get_local_dir()) / "artifacts"
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, art / "link.txt")
    return {"uri": uri, "run": rec.id, "other": other.id, "exp": rec.experiment_id, "tmp": tmp_path, "rec": rec}


def client(store: dict, **kw: Any) -> TestClient:
    return TestClient(create_app(store["uri"], **kw), base_url=kw.pop("base", LOCAL))


# ---- access --------------------------------------------------------------------------------------------

def test_non_loopback_needs_a_token(store: dict) -> None:
    with pytest.raises(ConfigError, match="--token"):
        create_app(store["uri"], host="0.0.0.0")
    c = TestClient(create_app(store["uri"], host="0.0.0.0", token="s3cret"), base_url="http://10.1.2.3:5000")
    for path in ("/", "/runs", f"/runs/{store['run']}", f"/api/runs/{store['run']}/live", "/static/app.js"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert "s3cret" not in r.text
    page = c.get("/", headers=HTML)
    assert page.status_code == 401 and '<form method="post" action="/login">' in page.text
    assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/", headers={"X-Qexp-Token": "s3cret"}).status_code == 200
    assert c.post("/login", data={"token": "nope", "next": "/runs"}).status_code == 401
    r = c.post("/login", data={"token": "s3cret", "next": "/runs"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert c.get("/runs", headers=HTML).status_code == 200  # the cookie now
    r = c.post("/login", data={"token": "s3cret", "next": "https://evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/"  # no open redirect


def test_loopback_ui_refuses_foreign_host_headers(store: dict) -> None:
    c = client(store)
    assert c.get("/").status_code == 200
    assert c.get("/", headers={"Host": "localhost:5000"}).status_code == 200
    assert c.get("/", headers={"Host": "attacker.example"}).status_code == 403  # DNS rebinding


def test_cli_refuses_a_public_address_without_token(store: dict) -> None:
    from qexp_ui.cli import ui_cmd
    res = CliRunner().invoke(ui_cmd, ["--uri", store["uri"], "--host", "0.0.0.0"])
    assert res.exit_code == 1 and "--token" in res.output


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_missing_store_is_an_error_and_stays_missing(kind: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped --uri is a one-line error naming the path and the fix, never a new empty store."""
    from qexp.ext import StoreNotFoundError
    from qexp_ui.cli import ui_cmd
    if kind == "sqlite":
        pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # anything a backend would make beside the store (./mlruns) lands here
    target = tmp_path / ("typo" if kind == "file" else "typo.db")
    uri = str(target) if kind == "file" else f"sqlite:///{target}"
    import uvicorn
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: pytest.fail("qexp ui started on a missing store"))
    with pytest.raises(StoreNotFoundError):
        create_app(uri)
    res = CliRunner().invoke(ui_cmd, ["--uri", uri, "--port", "0"])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert lines[0].startswith("Error: ") and str(target) in lines[0] and "came from --uri" in lines[0]
    assert "Give the right one with --uri" in lines[0]
    res = CliRunner().invoke(ui_cmd, ["--port", "0"], env={"QEXP_URI": uri})
    assert res.exit_code == 1 and "came from $QEXP_URI" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and not any(work.iterdir())


# ---- writes --------------------------------------------------------------------------------------------

def test_read_only_by_default(store: dict) -> None:
    c = client(store)
    page = c.get(f"/runs/{store['run']}", headers=HTML).text
    assert "delete-form" not in page and 'name="csrf"' not in page
    r = c.post(f"/runs/{store['run']}/delete", data={"csrf": "x"}, headers=HTML)
    assert r.status_code == 403 and "--allow-write" in r.text
    assert c.get(f"/runs/{store['run']}", headers=HTML).status_code == 200


def test_writes_need_the_csrf_token(store: dict) -> None:
    app = create_app(store["uri"], allow_write=True)
    c = TestClient(app, base_url=LOCAL)
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get(f"/runs/{store['run']}", headers=HTML).text).group(1)
    assert csrf == app.state.config.csrf
    assert c.post(f"/runs/{store['run']}/tags", data={"key": "note", "value": "x"}).status_code == 403
    assert c.post(f"/runs/{store['run']}/tags", data={"key": "note", "value": "x", "csrf": "forged"}).status_code == 403
    r = c.post(f"/runs/{store['run']}/tags", data={"key": "note", "value": "x", "csrf": csrf},
               headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = c.post(f"/runs/{store['run']}/tags", data={"key": "note", "value": "looks good", "csrf": csrf},
               headers={"Origin": LOCAL}, follow_redirects=False)
    assert r.status_code == 303
    assert store["rec"].list_tags()["note"] == "looks good"
    c.post(f"/runs/{store['run']}/tags", data={"key": "note", "action": "delete", "csrf": csrf})
    assert "note" not in store["rec"].list_tags()
    r = c.post(f"/runs/{store['other']}/delete", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert c.get(f"/runs/{store['other']}", headers=HTML).status_code == 404


# ---- artifacts -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["../meta.json", "../../1/meta.json", "/etc/passwd", "notes/../../meta.json",
                                  "..\\meta.json", "C:/Windows/win.ini", "link.txt", "", "pred.pkl\x00.png",
                                  "notes/\x01info.yaml", "a\nb"])
def test_artifact_paths_are_checked(store: dict, path: str) -> None:
    c = client(store)
    for route in ("artifact", "artifact/raw"):
        r = c.get(f"/runs/{store['run']}/{route}", params={"path": path}, headers=HTML)
        assert r.status_code == 400, (route, path, r.status_code)
        assert "top secret" not in r.text and '"run_id"' not in r.text


def test_artifact_previews(store: dict) -> None:
    c = client(store)
    run = store["run"]
    table = c.get(f"/runs/{run}/artifact", params={"path": "pred.pkl"}, headers=HTML).text
    assert "DataFrame 50 rows x 1 columns" in table and table.count("<tr") == 21  # header + first 20 rows
    assert "hello: world" in c.get(f"/runs/{run}/artifact", params={"path": "notes/info.yaml"}, headers=HTML).text
    config = c.get(f"/runs/{run}/artifact", params={"path": "config"}, headers=HTML).text
    assert "task:" in config and "model: x" in config
    raw = c.get(f"/runs/{run}/artifact/raw", params={"path": "pred.pkl"})
    assert raw.headers["content-type"] == "application/octet-stream" and "attachment" in raw.headers["content-disposition"]
    assert c.get(f"/runs/{run}/artifact", params={"path": "missing.txt"}, headers=HTML).status_code == 404


def test_pickles_never_run_code(store: dict) -> None:
    c = client(store)
    for name in ("evil.pkl", "writer.pkl"):
        r = c.get(f"/runs/{store['run']}/artifact", params={"path": name}, headers=HTML)
        assert r.status_code == 200 and "not shown" in r.text, name
    assert not (store["tmp"] / "pwned").exists()
    assert not (store["tmp"] / "written.pkl").exists()
    # library functions a permissive allow-list would let through are refused by name
    assert preview_bytes("x.pkl", pickle.dumps(FileWriter(str(store["tmp"] / "w2.pkl")))).kind == "refused"
    assert not (store["tmp"] / "w2.pkl").exists()
    assert preview_bytes("s.pkl", pickle.dumps(pd.Series([1.0, 2.0], index=pd.date_range("2020", periods=2)))).kind \
        == "table"


def test_png_is_served_as_an_image(store: dict, tmp_path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    png = tmp_path / "ic.png"
    fig.savefig(png)
    store["rec"].log_artifact(str(png), "sig_analysis")
    c = client(store)
    r = c.get(f"/runs/{store['run']}/artifact/raw", params={"path": "sig_analysis/ic.png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    page = c.get(f"/runs/{store['run']}", headers=HTML).text
    assert '<img src="/runs/' + store["run"] + '/artifact/raw?path=sig_analysis/ic.png"' in page


# ---- errors ------------------------------------------------------------------------------------------

def test_bad_filters_are_readable_errors(store: dict) -> None:
    c = client(store)
    for filt, where in (("metrics.IC >> 1", "position 12"), ("params.lr = 0.1", "quote the value"),
                        ("metrics.IC > 0 OR params.lr = '1'", "OR is not supported")):
        r = c.get("/runs", params={"filter": filt, "exp": store["exp"]}, headers=HTML)
        assert r.status_code == 400 and where in r.text and 'id="filter-error"' in r.text, (filt, r.text[-500:])
    r = c.get("/runs", params={"order": "metrics.IC SIDEWAYS"}, headers=HTML)
    assert r.status_code == 400 and "ASC or DESC" in r.text
    r = c.get("/runs", params={"filter": "metrics.IC > 0.02", "exp": store["exp"]}, headers=HTML)
    assert r.status_code == 200 and store["run"] in r.text and store["other"] not in r.text


def test_unknown_ids_are_404_pages(store: dict) -> None:
    c = client(store)
    for path in ("/runs/0123456789abcdef0123456789abcdef", "/runs/..%2f..%2fetc", "/runs?exp=999",
                 "/sweeps/0123456789abcdef", "/rolling/nope", "/runs/nope/artifact?path=x"):
        r = c.get(path, headers=HTML)
        assert r.status_code == 404 and "text/html" in r.headers["content-type"], path
        assert "Not found" in r.text or "not found" in r.text
    r = c.get("/api/runs/0123456789abcdef/metric?key=loss")
    assert r.status_code == 404 and r.json()["error"] == "Run not found"
    assert c.get(f"/compare?runs={store['run']}", headers=HTML).status_code == 400


# ---- pages and data ----------------------------------------------------------------------------------

def test_pages_render_their_data_without_javascript(store: dict) -> None:
    c = client(store)
    home = c.get("/", headers=HTML).text
    assert f'href="/runs?exp={store["exp"]}"' in home and ">exp<" in home
    runs = c.get(f"/runs?exp={store['exp']}", headers=HTML).text
    assert f'href="/runs/{store["run"]}"' in runs and "0.03" in runs and "0.01" in runs
    run = c.get(f"/runs/{store['run']}", headers=HTML).text
    for text in ("lr", "0.1", "leaves", "loss", "pred.pkl", "notes", 'src="/static/plotly.min.js"'):
        assert text in run, text
    both = c.get(f"/compare?runs={store['run']}&runs={store['other']}", headers=HTML).text
    assert "0.2" in both and "lr" in both
    # nothing from a CDN: every script, style and picture is served by the UI itself
    for page in (home, runs, run, both):
        assert not re.search(r'(src|href)="(https?:)?//', page)
    js = c.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000 and b"plotly" in js.content[:2000].lower()
    headers = c.get("/", headers=HTML).headers
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


def test_experiments_page_shows_the_last_activity(store: dict) -> None:
    """The last activity of an experiment is the latest start or end of its runs; one with no runs shows —."""
    from qexp.ext import create_manager
    from qexp_ui.formatting import ms_time
    m = create_manager(store["uri"])
    empty = m.create_exp("empty").id
    rows = m.search_rows([store["exp"]])
    latest = max(t for r in rows for t in (r["start_time"], r["end_time"]) if t)
    home = client(store).get("/", headers=HTML).text
    cells = dict(re.findall(r'<tr data-exp-id="([^"]+)">.*?<td title="([^"]*)">[^<]*</td>\s*</tr>', home, re.S))
    assert cells[str(store["exp"])] == ms_time(latest)
    last = re.search(rf'<tr data-exp-id="{store["exp"]}">.*?<td title="[^"]*">([^<]*)</td>', home, re.S)
    assert last and re.fullmatch(r"\d+(\.\d)? s ago", last.group(1)), last and last.group(1)
    none = re.search(rf'<tr data-exp-id="{empty}">.*?<td title="[^"]*">([^<]*)</td>', home, re.S)
    assert none and none.group(1) == "—"


def test_a_parent_run_lists_its_children(store: dict) -> None:
    """Runs started inside a run are its children: the parent's page lists them with status and a link to
    compare them; each child's page names its parent."""
    with R.start(experiment_name="exp", recorder_name="parent"):
        parent = R.get_recorder().id
        kids = []
        for i in range(2):
            with R.start(recorder_name=f"child-{i}"):
                R.log_metrics(IC=0.01 * i)
                kids.append(R.get_recorder().id)
    c = client(store)
    page = c.get(f"/runs/{parent}", headers=HTML).text
    table = page.split('<table class="grid" id="children">')[1].split("</table>")[0]
    listed = re.findall(r'<tr><td><a href="/runs/([0-9a-f]+)">(child-\d)</a></td>', table)
    assert sorted(listed) == sorted(zip(kids, ["child-0", "child-1"]))
    assert table.count('class="badge finished"') == 2
    assert f'href="/compare?runs={kids[1]}&amp;runs={kids[0]}"' in page or \
        f'href="/compare?runs={kids[0]}&amp;runs={kids[1]}"' in page
    child = c.get(f"/runs/{kids[0]}", headers=HTML).text
    assert f'parent: <a href="/runs/{parent}">parent</a>' in child
    assert 'id="children"' not in child and 'id="children"' not in c.get(f"/runs/{store['run']}", headers=HTML).text


def test_run_page_shows_host_and_git_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started in a git work tree records its host, commit, branch and uncommitted changes; the run page
    shows them. (qexp asks git once per process and folder, so the dirty tree is a second folder.)"""
    import socket
    import subprocess

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]

    def work_tree(name: str, dirty: bool) -> tuple[Path, str]:
        repo = tmp_path / name
        repo.mkdir()
        subprocess.run([*git, "init", "-q", "-b", "research"], cwd=repo, check=True)
        (repo / "model.py").write_text("x = 1\n")
        subprocess.run([*git, "add", "model.py"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=repo, check=True)
        if dirty:
            (repo / "model.py").write_text("x = 22\n")
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                             text=True).stdout.strip()
        return repo, sha

    monkeypatch.setenv("QEXP_AUTOLOG_GIT", "1")
    uri = str(tmp_path / "runs")
    qexp.init(uri=uri)
    runs = {}
    for name, dirty in (("clean", False), ("dirty", True)):
        repo, sha = work_tree(name, dirty)
        monkeypatch.chdir(repo)
        with R.start(experiment_name="git", recorder_name=name):
            runs[name] = (R.get_recorder().id, sha, dirty)
    c = TestClient(create_app(uri), base_url=LOCAL)
    for run, sha, dirty in runs.values():
        page = c.get(f"/runs/{run}", headers=HTML).text
        assert f'<td id="host-cell">{socket.gethostname()}</td>' in page
        git_cell = page.split('id="git-cell">')[1].split("</td>")[0]
        assert git_cell.startswith(sha) and "(research" in git_cell
        assert ("uncommitted changes" in git_cell) is dirty


def test_compare_takes_at_most_50_runs(store: dict) -> None:
    """50 runs compare; 51 is a readable 400 page (and JSON for scripts), not a truncated comparison."""
    ids = [store["run"], store["other"]]
    for i in range(49):
        with R.start(experiment_name="many", recorder_name=f"m{i}"):
            R.log_metrics(IC=i / 1000)
            ids.append(R.get_recorder().id)
    c = client(store)
    ok = c.get("/compare", params={"runs": ids[:50]}, headers=HTML)
    assert ok.status_code == 200 and "<h1>Compare 50 runs</h1>" in ok.text
    r = c.get("/compare", params={"runs": ids}, headers=HTML)
    assert r.status_code == 400 and "text/html" in r.headers["content-type"] and "Traceback" not in r.text
    assert "Pick 2 to 50 runs" in r.text and "compare takes 2 to 50 runs; 51 given" in r.text
    r = c.get("/compare", params={"runs": ",".join(ids + ["feedfacefeedfacefeedfacefeedface"])}, headers=HTML)
    assert r.status_code == 400 and "compare takes 2 to 50 runs; 52 given" in r.text
    api = c.get("/compare", params={"runs": ids}, headers={"Accept": "application/json"})
    assert api.status_code == 400 and api.json()["error"] == "Pick 2 to 50 runs"


def test_metric_api_and_live_endpoint(store: dict) -> None:
    c = client(store)
    p = c.get(f"/api/runs/{store['run']}/metric", params={"key": "loss"}).json()
    assert p["n"] == 5 and p["steps"] == [0, 1, 2, 3, 4] and p["min"] == pytest.approx(0.2) and p["max"] == 1.0
    live = c.get(f"/api/runs/{store['run']}/live").json()
    assert live["status"] == "FINISHED" and live["metrics"]["IC"] == pytest.approx(0.03)
    assert set(live["metric_keys"]) == {"loss", "IC"} and live["counts"]["loss"] == 5


@pytest.mark.slow
def test_a_million_points_are_drawn_downsampled_with_their_extremes(store: dict) -> None:
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(size=1_000_000))
    values[123_457] = values.max() + 50
    values[876_543] = values.min() - 50
    rec = store["rec"]
    rec.log_metric_batch(Metric("big", float(v), 1_700_000_000_000 + i, i) for i, v in enumerate(values.tolist()))
    rec.flush()
    p = client(store).get(f"/api/runs/{store['run']}/metric", params={"key": "big", "points": 2000}).json()
    assert p["n"] == 1_000_000 and p["shown"] <= 2000
    assert p["max"] == values.max() and p["min"] == values.min()
    assert values.max() in p["values"] and values.min() in p["values"]
    assert 123_457 in p["steps"] and 876_543 in p["steps"] and p["steps"][0] == 0 and p["steps"][-1] == 999_999


def test_downsampling_keeps_every_bucket_extreme() -> None:
    v = np.sin(np.arange(100_000) / 50.0)
    v[500:700] = np.nan
    idx = downsample_indices(v, 1000)
    assert len(idx) <= 1000 and idx[0] == 0 and idx[-1] == len(v) - 1
    edges = np.linspace(0, len(v), 11).astype(int)  # any coarser bucketing keeps its max too
    for a, b in zip(edges[:-1], edges[1:]):
        seg = v[a:b]
        if np.isfinite(seg).any():
            assert np.nanmax(seg) == np.nanmax(v[idx[(idx >= a) & (idx < b)]])
    assert list(downsample_indices(np.arange(5.0), 10)) == [0, 1, 2, 3, 4]


def test_export_config_writes_a_runnable_yaml(store: dict, tmp_path: Path) -> None:
    from qexp_ui.cli import export_config
    out = tmp_path / "rerun.yaml"
    res = CliRunner().invoke(export_config, [store["run"], "-o", str(out), "--uri", store["uri"]])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(out.read_text()) == {"task": {"model": "x"}}
    res = CliRunner().invoke(export_config, [store["other"], "--uri", store["uri"]])
    assert res.exit_code == 1 and "saved no config" in res.output
