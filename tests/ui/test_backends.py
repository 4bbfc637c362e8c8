"""`qexp ui` over every backend kind the conformance suite runs on: the file store, MLflow on SQLite,
PostgreSQL, MariaDB and a real `mlflow server` process, and the W&B backend offline over its local store.
Two runs are logged through the public API (params, a metric history, a single-value metric, a text
artifact), then each page and chart request the UI makes is asked for in process (Starlette's TestClient)
and must show the logged values. The stores come from the conformance tests' own helpers
(tests/mlflow/stores.py: set up once per session, skipped when the service is unreachable;
tests/wandb/conftest.py: every W&B folder under tmp_path)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qexp
from qexp import R
from qexp.testing.session import reset_session

pytest.importorskip("fastapi", reason="the ui extra is not installed (pip install \"qexp[ui]\")")

from fastapi.testclient import TestClient  # noqa: E402

from qexp_ui.app import create_app  # noqa: E402

from ..mlflow.stores import mlflow_server_store, mysql_store, postgresql_store, sqlite_store  # noqa: E402
from ..wandb.conftest import wandb_env  # noqa: E402,F401  (autouse: W&B folders and credentials in tmp_path)

HTML = {"Accept": "text/html"}
LOCAL = "http://127.0.0.1:5000"
MLFLOW_STORES = {"sqlite": sqlite_store, "postgresql": postgresql_store, "mariadb": mysql_store,
                 "mlflow-server": mlflow_server_store}
LOSS = {"alpha": [1.0, 0.5, 0.25, 0.125, 0.0625], "beta": [2.0, 1.5, 1.25, 1.125, 1.0625]}
IC = {"alpha": 0.0317, "beta": 0.0123}
LR = {"alpha": "0.1", "beta": "0.2"}


@pytest.fixture(params=["file", *MLFLOW_STORES, "wandb"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store of one backend kind, as the conformance tests make it."""
    kind = request.param
    if kind == "file":
        yield str(tmp_path / "runs")
    elif kind == "wandb":
        pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install \"qexp[wandb]\")")
        from qexp_wandb.mirror import finish_all_mirrors
        request.addfinalizer(finish_all_mirrors)
        yield f"wandb://qexp-test?mode=offline&store={tmp_path / 'local'}"
    else:
        yield MLFLOW_STORES[kind](tmp_path, request)
    reset_session()


@pytest.fixture
def logged(store_uri: str, tmp_path: Path) -> dict[str, Any]:
    """Two finished runs in experiment ``bk``: params, a 5-point ``loss`` history, ``IC`` and a text artifact."""
    qexp.init(uri=store_uri)
    ids = {}
    for name in ("alpha", "beta"):
        with R.start(experiment_name="bk", recorder_name=name):
            rec = R.get_recorder()
            R.log_params(lr=LR[name], leaves=31, model="LGBModel")
            for step, v in enumerate(LOSS[name]):
                R.log_metrics(step=step, loss=v)
            R.log_metrics(IC=IC[name])
            note = tmp_path / f"{name}.txt"
            note.write_text(f"notes of run {name}\n")
            rec.log_artifact(str(note), "notes")
            ids[name] = rec.id
    return {"uri": store_uri, "ids": ids, "exp": rec.experiment_id}


def row_order(html: str, ids: dict[str, str]) -> list[str]:
    """The names of the runs in the order the runs table lists them."""
    found = {name: html.find(f'data-run-id="{rid}"') for name, rid in ids.items()}
    assert all(pos >= 0 for pos in found.values()), found
    return sorted(found, key=found.__getitem__)


def test_every_page_over_the_backend(logged: dict[str, Any]) -> None:
    c = TestClient(create_app(logged["uri"]), base_url=LOCAL)
    ids, exp = logged["ids"], logged["exp"]
    alpha, beta = ids["alpha"], ids["beta"]

    home = c.get("/", headers=HTML)
    assert home.status_code == 200
    row = re.search(rf'<tr data-exp-id="{re.escape(exp)}">(.*?)</tr>', home.text, re.S)
    assert row and ">bk<" in row.group(1) and re.search(r'data-count="total">2<', row.group(1))
    assert re.search(r'data-count="FINISHED"><span class="badge finished">2<', row.group(1))

    runs = c.get("/runs", params={"exp": exp}, headers=HTML).text
    assert row_order(runs, ids) == ["beta", "alpha"]  # newest first
    flt = c.get("/runs", params={"exp": exp, "filter": "metrics.IC > 0.02 AND params.lr = '0.1'"}, headers=HTML)
    assert flt.status_code == 200 and alpha in flt.text and beta not in flt.text and "0.0317" in flt.text
    for order, expected in (("metrics.IC DESC", ["alpha", "beta"]), ("metrics.IC ASC", ["beta", "alpha"])):
        r = c.get("/runs", params={"exp": exp, "order": order}, headers=HTML)
        assert r.status_code == 200 and row_order(r.text, ids) == expected, order
        assert "0.0317" in r.text and "0.0123" in r.text

    page = c.get(f"/runs/{alpha}", headers=HTML)
    assert page.status_code == 200
    for text in ("alpha", "FINISHED", ">lr<", ">0.1<", ">LGBModel<", 'data-metric-row="loss"', "0.0317",
                 'data-metric-row="IC"', ">notes/<", "path=notes/alpha.txt"):
        assert text in page.text, text
    art = c.get(f"/runs/{alpha}/artifact", params={"path": "notes/alpha.txt"}, headers=HTML)
    assert art.status_code == 200 and "notes of run alpha" in art.text

    chart = c.get(f"/api/runs/{alpha}/metric", params={"key": "loss"}).json()
    assert chart["n"] == 5 and chart["steps"] == [0, 1, 2, 3, 4] and chart["values"] == LOSS["alpha"]

    both = c.get("/compare", params={"runs": [alpha, beta]}, headers=HTML)
    assert both.status_code == 200
    differ = re.search(r'<tr class="differs">\s*<td[^>]*>lr</td>(.*?)</tr>', both.text, re.S)
    assert differ and ">0.1<" in differ.group(1) and ">0.2<" in differ.group(1)
    assert "0.0317" in both.text and "0.0123" in both.text
    overlay = c.get("/api/compare/metric", params={"runs": [alpha, beta], "key": "loss"}).json()
    assert {s["name"]: s["values"] for s in overlay["series"]} == LOSS
