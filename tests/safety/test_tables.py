"""Issue 13 items 2 and 6: tables print user text verbatim (probe 21: `[train]` and the demo's
`[datetime.date(...)]` segments vanished, `[red]x` was restyled) and `runs list` stays one line per run at
80 and 120 columns, with short ids accepted back (probes 20, 22)."""
from __future__ import annotations

import json
import uuid

import pytest

import qexp
from qexp import R
from qexp.ext import AmbiguousRunIdError

from .conftest import cli

SEGMENT = "[datetime.date(2015, 1, 1), datetime.date(2018, 12, 31)]"
HEADLINE = {"IC": 0.0383124, "ICIR": 0.517734, "Rank IC": 0.0439121,
            "1day.excess_return_with_cost.annualized_return": 0.224126,
            "1day.excess_return_with_cost.information_ratio": 5.54812,
            "1day.excess_return_with_cost.max_drawdown": -0.0161545}


@pytest.fixture
def marked_store(tmp_path):
    store = str(tmp_path / "store")
    qexp.init(uri=store)
    ids = []
    for i in range(2):
        with R.start(experiment_name="[baseline]", recorder_name=f"[run{i}]"):
            R.log_params(**{"dataset.kwargs.segments.train": SEGMENT, "seg": "[train]", "n": i})
            R.set_tags(note="[red]hello")
            R.log_metrics(**{"[bracketed]": 1.5, **HEADLINE})
            ids.append(R.get_recorder().id)
    return store, ids


def test_user_text_prints_verbatim(marked_store):
    store, ids = marked_store
    out = cli("exp", "list", "--uri", store).stdout
    assert "[baseline]" in out
    listing = cli("runs", "list", "--uri", store, "-m", "[bracketed]").stdout
    assert "[baseline]" in listing and "[run0]" in listing and "[bracketed]" in listing
    shown = cli("runs", "show", ids[0], "--uri", store).stdout
    for text in (SEGMENT, "[train]", "[red]hello", "[run0]", "[bracketed]"):
        assert text in shown, text
    compared = cli("runs", "compare", ids[0], ids[1], "--uri", store, "--all-params").stdout
    assert SEGMENT in compared and "[train]" in compared and "[run1]" in compared
    report = cli("runs", "report", ids[0][:8], "--uri", store).stdout
    assert "[run0]" in report and "0.03831" in report


@pytest.mark.parametrize("width", [80, 120])
def test_runs_list_fits_the_width(marked_store, width, tmp_path):
    store, ids = marked_store
    qexp.init(uri=store)
    with R.start(experiment_name="a-rather-long-experiment-name", recorder_name="LGBModel-Alpha158-with-a-tail"):
        R.log_metrics(**HEADLINE)
    r = cli("runs", "list", "--uri", store, env={"COLUMNS": str(width)})
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    rows = [line for line in lines if line[:8] in {i[:8] for i in ids} or "a-rather" in line or "a-rath" in line]
    assert len(rows) == 3  # one line per run: nothing wraps inside a cell
    for run_id in ids:
        assert sum(line.startswith(run_id[:8]) for line in lines) == 1 and run_id not in r.stdout
    table = "\n".join(lines)
    assert "0.03831" in table and "0.04391" in table  # 4 significant digits, never split
    assert "0.0383124" not in table
    assert "[baseline]" in table or "[basel" in table  # the experiment's name, not its id
    assert "FINISHED" in table and "LGBMode" in table  # names shortened with an ellipsis, never wrapped
    if width >= 120:
        assert "-0.01615" in table and "2 more metric" not in r.stdout


def test_short_ids_are_accepted_everywhere(marked_store):
    store, ids = marked_store
    short = ids[0][:8]
    shown = json.loads(cli("runs", "show", short, "--uri", store, "--json").stdout)
    assert shown["info"]["id"] == ids[0]
    cmp = json.loads(cli("runs", "compare", short, ids[1][:8], "--uri", store, "--json").stdout)
    assert cmp["runs"] == ids
    assert cli("runs", "report", short, "--uri", store, "--json").exit_code == 0
    assert cli("runs", "delete", short, "--uri", store, "--yes").exit_code == 0
    assert json.loads(cli("runs", "list", "--uri", store, "--json").stdout)[0]["run_id"] == ids[1]
    r = cli("runs", "show", "zzzz", "--uri", store)
    assert r.exit_code == 1 and "no run with id 'zzzz'" in r.output


def test_an_ambiguous_prefix_lists_the_candidates(tmp_path, monkeypatch):
    fixed = iter([uuid.UUID("abcd0000" + "0" * 23 + "1"), uuid.UUID("abcd0000" + "0" * 23 + "2")])
    real = uuid.uuid4
    monkeypatch.setattr(uuid, "uuid4", lambda: next(fixed, None) or real())
    store = str(tmp_path / "amb")
    qexp.init(uri=store)
    for _ in range(2):
        with R.start(experiment_name="amb"):
            R.log_metrics(x=1.0)
    with pytest.raises(AmbiguousRunIdError, match="2 runs start with it") as info:
        R.exp_manager.get_recorder_by_id("abcd0000")
    assert "abcd0000" + "0" * 23 + "1" in str(info.value) and "abcd0000" + "0" * 23 + "2" in str(info.value)
    assert R.exp_manager.get_recorder_by_id("abcd0000" + "0" * 23 + "2").id.endswith("2")
    r = cli("runs", "show", "abcd", "--uri", store)
    assert r.exit_code == 1 and "ambiguous" in r.output and "give more characters" in r.output


def test_workflow_runs_are_named_after_model_and_data():
    from qexp.workflow import run_name
    task = {"model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt"},
            "dataset": {"class": "DatasetH", "kwargs": {"handler": {"class": "Alpha158"}}}}
    assert run_name(task) == "LGBModel-Alpha158"
    assert run_name({"model": {"class": "a.b.ALSTM"}, "dataset": {"class": "TSDatasetH"}}) == "ALSTM-TSDatasetH"
