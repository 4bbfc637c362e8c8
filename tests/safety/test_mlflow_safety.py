"""The MLflow backend's side of issue 13: reads do not create a database (item 3), a malformed URI is one
line (item 5), short ids (item 6) and infinities in search (item 9). One store, made once: MLflow's schema
set-up is most of the time."""
from __future__ import annotations

import json
import math

import pytest

import qexp
from qexp import R
from qexp.ext import ConfigError, StoreNotFoundError, create_manager

from ..services import import_client, service_missing
from .conftest import cli


@pytest.mark.slow
def test_mlflow_store_reads_short_ids_and_infinities(tmp_path):
    missing = tmp_path / "nodir" / "x.db"
    with pytest.raises(StoreNotFoundError, match="no MLflow database at"):
        create_manager(f"sqlite:///{missing}", create=False)
    assert not missing.parent.exists()
    r = cli("runs", "list", "--uri", f"sqlite:///{missing}")
    assert r.exit_code == 1 and str(missing) in r.output and "--uri" in r.output and not missing.parent.exists()
    with pytest.raises(ConfigError, match="sqlite:///relative/path.db"):
        create_manager("sqlite:/bad")
    r = cli("runs", "list", "--uri", "sqlite:/bad")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output

    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    qexp.init(uri=uri)
    with R.start(experiment_name="m"):
        R.log_metrics(up=float("inf"), down=float("-inf"), nan=float("nan"), ok=1.0)
        rid = R.get_recorder().id
    assert R.exp_manager.get_recorder_by_id(rid[:8]).id == rid
    df = R.search_records(filter_string="metrics.up > 1")
    assert list(df.run_id) == [rid] and df["metrics.up"].iloc[0] == math.inf
    assert df["metrics.down"].iloc[0] == -math.inf and math.isnan(df["metrics.nan"].iloc[0])
    out = json.loads(cli("runs", "list", "--uri", uri, "--json").stdout)
    assert out[0]["metrics.up"] == "inf" and out[0]["metrics.nan"] == "nan"
    assert cli("runs", "show", rid[:8], "--uri", uri).exit_code == 0


def test_postgres_reads_do_not_create_the_tables():
    psycopg2 = import_client("psycopg2")
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3)
    except psycopg2.OperationalError as exc:
        service_missing(f"no PostgreSQL on 127.0.0.1:5432 ({exc})")
    admin.autocommit = True
    name = "qexp_safety_empty"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    try:
        with pytest.raises(StoreNotFoundError, match="does not exist"):
            create_manager("postgresql://postgres@127.0.0.1:5432/qexp_no_such_database", create=False)
        with pytest.raises(StoreNotFoundError, match="no 'experiments' table"):
            create_manager(f"postgresql://postgres@127.0.0.1:5432/{name}", create=False)
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=name)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            assert cur.fetchone()[0] == 0  # nothing was created by the read
        conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def test_an_unreachable_mlflow_server_fails_fast_with_one_line(tmp_path):
    import socket
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                    # closed once the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    with pytest.raises(qexp.QexpError, match=f"cannot reach the MLflow server at {url}: is it running"):
        create_manager(url, create=False)
    r = cli("runs", "list", "--uri", url)
    assert time.monotonic() - t0 < 15
    assert r.exit_code == 1 and "cannot reach the MLflow server" in r.output and "unexpected" not in r.output
