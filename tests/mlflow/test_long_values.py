"""Params longer than MLflow's limit are logged truncated (with a warning) and kept whole as an artifact;
the run never crashes (Qlib issues #1298/#1317)."""
from __future__ import annotations

import pytest

pytest.importorskip("mlflow")

from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH  # noqa: E402

from qexp import QexpError, R  # noqa: E402


def test_long_param_truncated_and_kept_whole(client):
    config = "dataset.kwargs.handler=" + ",".join(f"feature_{i}" for i in range(2000))  # ~20k characters
    assert len(config) > MAX_PARAM_VAL_LENGTH
    with R.start(experiment_name="long", recorder_name="qrun"):
        with pytest.warns(UserWarning, match="params/task.txt"):
            R.log_params(task=config, lr=0.1)
        R.log_params(task=config)  # the same long value again is fine
        with pytest.raises(QexpError, match="immutable"):
            R.log_params(task=config[:-1] + "X")  # same stored prefix, different value: refused
        rec = R.get_recorder()
    stored = client.get_run(rec.id).data.params["task"]
    assert len(stored) <= MAX_PARAM_VAL_LENGTH
    assert stored.startswith(config[:1000]) and "params/task.txt" in stored
    assert rec.read_artifact("params/task.txt").decode() == config
    assert rec.list_params() == {"task": config, "lr": "0.1"}
    assert client.get_run(rec.id).info.status == "FINISHED"
    # the stored prefix is what MLflow searches
    df = R.search_records([rec.experiment_id], filter_string="params.task LIKE 'dataset.kwargs.handler=%'")
    assert df["run_id"].tolist() == [rec.id]


def test_long_tag_kept_whole(client):
    argv = "python train.py " + " ".join(f"--opt{i}=value{i}" for i in range(1500))
    assert len(argv) > MAX_TAG_VAL_LENGTH
    with R.start(experiment_name="longtag"):
        with pytest.warns(UserWarning, match="tags/cmd.txt"):
            R.set_tags(cmd=argv)
        rec = R.get_recorder()
    assert len(client.get_run(rec.id).data.tags["cmd"]) <= MAX_TAG_VAL_LENGTH
    assert rec.list_tags()["cmd"] == argv


def test_many_params_and_metrics_in_one_call_are_chunked(client):
    params = {f"p{i}": i for i in range(250)}          # > 100 params per log_batch
    with R.start(experiment_name="chunks"):
        R.log_params(**params)
        rec = R.get_recorder()
        rec.log_metric_batch([(f"m{i % 7}", float(i), 1_700_000_000_000 + i, i) for i in range(2500)])
    run = client.get_run(rec.id)
    assert run.data.params == {k: str(v) for k, v in params.items()}
    assert sum(len(client.get_metric_history(rec.id, f"m{k}")) for k in range(7)) == 2500


def test_chunk_batch_respects_limits():
    from mlflow.entities import Metric, Param, RunTag

    from qexp_mlflow.client import MAX_REQUEST_BYTES, batch_limits, chunk_batch
    lim = batch_limits()
    metrics = [Metric(f"m{i}", float(i), 0, i) for i in range(2500)]
    params = [Param(f"p{i}", "v" * 5000) for i in range(250)]   # 1.25 MB of params: split by size too
    tags = [RunTag(f"t{i}", "x") for i in range(150)]
    out_m, out_p, out_t = [], [], []
    for m, p, t in chunk_batch(metrics, params, tags):
        assert len(m) <= lim["metrics"] and len(p) <= lim["params"] and len(t) <= lim["tags"]
        assert len(m) + len(p) + len(t) <= lim["total"]
        assert sum(len(x.value) for x in p) + sum(len(x.value) for x in t) <= MAX_REQUEST_BYTES
        assert m or p or t
        out_m += m
        out_p += p
        out_t += t
    assert out_m == metrics and out_p == params and out_t == tags
