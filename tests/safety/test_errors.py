"""Issue 13 item 5: expected failures are one `Error:` line plus a hint, the traceback only on request
(probes 35, 36, 53: 39 lines for `--uri foo://x`, 92 lines of SQLAlchemy, 36 lines for a constructor
TypeError); a FAILED run keeps its config and says why."""
from __future__ import annotations

import textwrap

import qexp
from qexp import R
from qexp.ext import UnknownSchemeError

from .conftest import cli, workflow_config, write_config


def test_bad_uris_are_one_line_for_every_command():
    for args in (["runs", "list"], ["exp", "list"], ["runs", "show", "abcd1234"], ["index", "rebuild"],
                 ["runs", "report", "abcd1234"]):
        r = cli(*args, "--uri", "foo://x")
        assert r.exit_code == 1, args
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "Known schemes" in lines[0], r.output
    r = cli("exp", "list", env={"QEXP_URI": "foo://x"})
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1


def test_traceback_on_request():
    r = cli("runs", "list", "--uri", "foo://x", "--traceback")
    assert isinstance(r.exception, UnknownSchemeError)  # raised as is: the runner holds the traceback
    r = cli("--traceback", "exp", "list", "--uri", "foo://x")
    assert isinstance(r.exception, UnknownSchemeError)
    r = cli("exp", "list", "--uri", "foo://x", env={"QEXP_DEBUG": "1"})
    assert isinstance(r.exception, UnknownSchemeError)
    r = cli("exp", "list", "--uri", "foo://x")
    assert r.exit_code == 1 and not isinstance(r.exception, UnknownSchemeError)


def test_a_constructor_error_in_a_run_is_one_line_and_the_failed_run_keeps_config_and_reason(tiny_market, tmp_path):
    (tmp_path / "badmodel.py").write_text(textwrap.dedent('''
        from qexp.model import Model

        class BadInit(Model):
            def __init__(self, depth=1):
                raise TypeError("BadInit needs depth > 1, got 1")

            def fit(self, dataset, reweighter=None):
                return self

            def predict(self, dataset, segment="test"):
                raise NotImplementedError
    '''))
    model = {"class": "BadInit", "module_path": str(tmp_path / "badmodel.py"), "kwargs": {"depth": 1}}
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market, model=model))
    store = tmp_path / "runs"
    r = cli("run", str(cfg), "--uri", str(store))
    assert r.exit_code == 1
    err = [line for line in r.stderr.splitlines() if not line.startswith("[")]  # Qlib-format log lines aside
    assert err[0] == "Error: TypeError: BadInit needs depth > 1, got 1", r.stderr
    assert len(err) == 3 and "--traceback" in err[1] and "is marked FAILED" in err[2] and "Traceback" not in r.output
    qexp.init(uri=str(store))
    rec = R.get_recorder(recorder_id=R.search_records().run_id.iloc[0])
    assert rec.status == "FAILED" and rec.id[:8] in err[2] and rec.name == "BadInit-Alpha158"
    assert rec.list_tags()["qexp.failure_reason"] == "TypeError: BadInit needs depth > 1, got 1"
    assert rec.load_object("config")["task"]["model"]["class"] == "BadInit"
