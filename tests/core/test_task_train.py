"""task_train logs what Qlib's trainer logs and runs the records with <MODEL>/<DATASET> filled."""
from __future__ import annotations

import pytest

import qexp
from qexp import R, hookimpl, plugins
from qexp.exceptions import ConfigError
from qexp.trainer import begin_task_train, end_task_train, task_train


class MeanModel:
    def __init__(self, bias=0.0):
        self.bias = bias
        self._fitted = False  # private attributes survive pickling (Qlib #211)

    def fit(self, dataset):
        self.mean = sum(dataset.values) / len(dataset.values) + self.bias
        self._fitted = True

    def predict(self, dataset, segment="test"):
        return [self.mean] * len(dataset.values)


class ListDataset:
    def __init__(self, values):
        self.values = values
        self.dumped = None

    def config(self, dump_all=False, recursive=False):
        self.dumped = dump_all


class EchoRecord:
    def __init__(self, recorder, model=None, dataset=None, tag="x"):
        self.recorder, self.model, self.dataset, self.tag = recorder, model, dataset, tag

    def generate(self):
        self.recorder.save_objects(**{"pred.pkl": self.model.predict(self.dataset)})
        self.recorder.log_metrics(**{f"mean_{self.tag}": self.model.mean})


class Components:
    @hookimpl
    def register_models(self, register):
        register(MeanModel, module_paths=["my.models"])

    @hookimpl
    def register_data_components(self, register):
        register(ListDataset)

    @hookimpl
    def register_record_templates(self, register):
        register(EchoRecord)


@pytest.fixture
def components(tmp_path):
    name = plugins.register(Components(), name="task-train-components")
    qexp.init(uri=str(tmp_path / "s"))
    yield
    plugins.unregister(name)


TASK = {"model": {"class": "MeanModel", "module_path": "my.models", "kwargs": {"bias": 1.0}},
        "dataset": {"class": "ListDataset", "kwargs": {"values": [1.0, 2.0, 3.0]}},
        "record": [{"class": "EchoRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>", "tag": "a"}},
                   "EchoRecord"]}


def test_task_train_logs_like_qlib(components):
    rec = task_train(TASK, experiment_name="tt")
    rec = R.get_recorder(recorder_id=rec.id, experiment_name="tt")
    assert rec.status == "FINISHED"
    params = rec.list_params()
    assert params["model.class"] == "MeanModel" and params["model.kwargs.bias"] == "1.0"
    assert params["dataset.kwargs.values"] == "[1.0, 2.0, 3.0]"
    assert rec.list_tags()["hostname"]
    assert rec.load_object("task") == TASK
    model = rec.load_object("params.pkl")
    assert model.mean == 3.0 and model._fitted is True
    assert rec.load_object("dataset").dumped is False
    assert rec.load_object("pred.pkl") == [3.0, 3.0, 3.0]
    assert rec.list_metrics() == {"mean_a": 3.0, "mean_x": 3.0}


def test_task_train_failure_leaves_failed_run(components):
    bad = {**TASK, "record": [{"class": "NoSuchRecord"}]}
    with pytest.raises(ConfigError, match="task.record.0"):
        task_train(bad, experiment_name="tt")
    df = R.search_records([R.get_exp(experiment_name="tt").id])
    assert df["status"].tolist() == ["FAILED"]
    rec = R.get_recorder(recorder_id=df["run_id"].iloc[0])
    assert rec.load_object("params.pkl").mean == 3.0  # what was done before the failure is kept


def test_task_needs_model_and_dataset(components):
    with pytest.raises(ConfigError, match="task.model"):
        task_train({"dataset": TASK["dataset"]}, experiment_name="tt")


def test_two_phase_training(components):
    rec = begin_task_train(TASK, experiment_name="two")
    assert "params.pkl" not in rec.list_artifacts()
    done = end_task_train(rec, experiment_name="two")
    assert done.id == rec.id
    assert R.get_recorder(recorder_id=rec.id).load_object("params.pkl").mean == 3.0
