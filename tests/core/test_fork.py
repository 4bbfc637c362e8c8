"""A forked child neither deadlocks on locks held by the parent's threads nor ends the parent's runs."""
from __future__ import annotations

import os

import pytest

import qexp
from qexp import R


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_end_parent_run(tmp_path):
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="fork"):
        rec = R.get_recorder()
        pid = os.fork()
        if pid == 0:  # child: log into its own run, then exit through the normal interpreter shutdown path
            try:
                with R.start(experiment_name="fork-child"):
                    R.log_metrics(child=1.0)
                R._end_all_open("FINISHED")  # what atexit would do in the child
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert R.get_recorder(recorder_id=rec.id).status == "RUNNING"  # still ours
        R.log_metrics(parent=1.0)
    assert R.get_recorder(recorder_id=rec.id).status == "FINISHED"
    child = R.search_records([R.get_exp(experiment_name="fork-child").id])
    assert child["status"].tolist() == ["FINISHED"] and child["metrics.child"].tolist() == [1.0]
