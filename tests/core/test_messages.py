"""Messages that point at the fix: a too-short run id, a QEXP_LOAD_PLUGINS typo, and qexp errors printed
without their class name (unexpected exceptions keep it)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.cli.main import get_cli


def test_a_short_run_id_asks_for_four_characters(tmp_path):
    store = str(tmp_path / "s")
    qexp.init(uri=store)
    with R.start(experiment_name="e"):
        rid = R.get_recorder().id
    with pytest.raises(qexp.RecorderNotFoundError, match="give at least 4 characters of the run id"):
        R.get_recorder(recorder_id=rid[:2])
    r = CliRunner().invoke(get_cli(), ["runs", "show", rid[:3], "--uri", store])
    assert r.exit_code == 1 and "give at least 4 characters of the run id" in r.output
    assert R.get_recorder(recorder_id=rid[:4]).id == rid


def test_qexp_errors_print_without_their_class_name(tmp_path):
    r = CliRunner().invoke(get_cli(), ["runs", "list", "--uri", "foo://x"])
    assert r.exit_code == 1
    line = r.output.strip().splitlines()[0]
    assert line.startswith("Error: ") and "UnknownSchemeError" not in line and "'foo'" in line, r.output


def test_unexpected_errors_keep_their_class_name():
    from qexp.cli.errors import one_line
    assert one_line(KeyError("x")).message.startswith("KeyError: ")
    assert one_line(qexp.ConfigError("bad")).message == "bad"


def test_load_plugins_names_that_match_nothing_are_warned_about():
    env = {**os.environ, "QEXP_LOAD_PLUGINS": "file,dta,nonexist"}
    p = subprocess.run([sys.executable, "-m", "qexp", "plugins", "--json"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "QEXP_LOAD_PLUGINS names 'dta' (did you mean 'data'?), 'nonexist'" in p.stderr, p.stderr
    ok = subprocess.run([sys.executable, "-m", "qexp", "plugins", "--json"], capture_output=True, text=True,
                        timeout=120, env={**os.environ, "QEXP_LOAD_PLUGINS": "file,data"})
    assert "QEXP_LOAD_PLUGINS" not in ok.stderr
