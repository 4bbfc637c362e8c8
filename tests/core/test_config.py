"""init_instance_by_config forms, placeholders, flatten_dict, update_config."""
from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import pytest

from qexp import plugins
from qexp.config import (
    FLATTEN_TUPLE,
    auto_filter_kwargs,
    fill_placeholder,
    find_placeholders,
    flatten_dict,
    get_callable_kwargs,
    init_instance_by_config,
    set_by_path,
    update_config,
)
from qexp.exceptions import ConfigError


class Widget:
    def __init__(self, size=1, model=None):
        self.size = size
        self.model = model


class Strict:
    def __init__(self, size):
        if size < 0:
            raise TypeError("size must be >= 0")  # a TypeError from inside the constructor
        self.size = size


def test_dict_with_module_path():
    w = init_instance_by_config({"class": "OrderedDict", "module_path": "collections", "kwargs": {}})
    assert isinstance(w, OrderedDict)


def test_dotted_class_wins_over_module_path():
    obj = init_instance_by_config({"class": "collections.Counter", "module_path": "os", "kwargs": {}})
    assert type(obj).__name__ == "Counter"


def test_class_object_and_plain_strings():
    assert init_instance_by_config({"class": Widget, "kwargs": {"size": 3}}).size == 3
    assert isinstance(init_instance_by_config("collections.OrderedDict"), OrderedDict)
    assert isinstance(init_instance_by_config("OrderedDict", default_module="collections"), OrderedDict)


def test_accept_types_returns_instance():
    w = Widget()
    assert init_instance_by_config(w, accept_types=Widget) is w


def test_module_path_py_file(tmp_path):
    f = tmp_path / "my_mod.py"
    f.write_text("class Thing:\n    def __init__(self, v=0):\n        self.v = v\n")
    t = init_instance_by_config({"class": "Thing", "module_path": str(f), "kwargs": {"v": 7}})
    assert t.v == 7


def test_pickle_file_forms(tmp_path):
    p = tmp_path / "obj.pkl"
    p.write_bytes(pickle.dumps({"a": [1, 2]}))
    assert init_instance_by_config(Path(p)) == {"a": [1, 2]}
    assert init_instance_by_config("file://" + str(p)) == {"a": [1, 2]}
    with pytest.raises(ConfigError, match="does not exist"):
        init_instance_by_config(Path(tmp_path / "nope.pkl"))


def test_try_kwargs_passed_only_when_accepted():
    cfg = {"class": Widget, "kwargs": {"size": 2}}
    assert init_instance_by_config(cfg, try_kwargs={"model": "M"}).model == "M"
    cfg = {"class": Strict, "kwargs": {"size": 2}}
    assert init_instance_by_config(cfg, try_kwargs={"model": "M"}).size == 2


def test_try_kwargs_does_not_swallow_constructor_type_errors():
    with pytest.raises(TypeError, match="size must be"):
        init_instance_by_config({"class": Strict, "kwargs": {"size": -1}}, try_kwargs={"model": "M"})


def test_unknown_class_error_names_path_and_suggests():
    with pytest.raises(ConfigError) as err:
        init_instance_by_config({"class": "NoSuchModel", "module_path": "qlib.contrib.model.gbdt"},
                                where="task.model")
    assert "task.model" in str(err.value) and "NoSuchModel" in str(err.value)
    with pytest.raises(ConfigError, match="'class' key"):
        init_instance_by_config({"kwargs": {}}, where="task.dataset")


def test_registry_resolves_qlib_module_paths():
    class Plugin:
        @plugins.hookspecs.hookimpl
        def register_models(self, register):
            register(Widget, name="LGBModel", module_paths=["qlib.contrib.model.gbdt"])

    name = plugins.register(Plugin(), name="cfg-test-plugin")
    try:
        for cfg in ({"class": "LGBModel"}, {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt"},
                    "qlib.contrib.model.gbdt.LGBModel", {"class": "qlib.contrib.model.gbdt.LGBModel"}):
            assert isinstance(init_instance_by_config(cfg), Widget), cfg
        klass, kwargs = get_callable_kwargs({"class": "LGBModel", "kwargs": {"size": 1}})
        assert klass is Widget and kwargs == {"size": 1}
    finally:
        plugins.unregister(name)


def test_fill_placeholder():
    cfg = {"model": "<MODEL>", "records": [{"kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
           "dataset": {"kwargs": {"segments": {"train": ["2010-01-01", "2014-12-31"]}}},
           "start": "<dataset.kwargs.segments.train.0>", "keep": "<no.such.path>", "text": "a <MODEL> b",
           "tuple": ("<MODEL>",)}
    out = fill_placeholder(cfg, {"<MODEL>": 1, "<DATASET>": 2})
    assert out is cfg
    assert cfg["model"] == 1 and cfg["records"][0]["kwargs"] == {"model": 1, "dataset": 2}
    assert cfg["start"] == "2010-01-01" and cfg["keep"] == "<no.such.path>" and cfg["text"] == "a <MODEL> b"
    assert cfg["tuple"] == ("<MODEL>",)  # tuples are not traversed (Qlib)
    with pytest.raises(ConfigError):
        fill_placeholder({}, {"MODEL": 1})
    assert find_placeholders({"a": ["<X>", {"b": "<Y>"}]}) == [("a.0", "<X>"), ("a.1.b", "<Y>")]


def test_flatten_dict():
    d = {"model": {"class": "LGB", "kwargs": {"lr": 0.1, "layers": [1, 2]}}, "x": 1, "empty": {}}
    assert flatten_dict(d) == {"model.class": "LGB", "model.kwargs.lr": 0.1, "model.kwargs.layers": [1, 2],
                               "x": 1, "empty": {}}
    assert flatten_dict({"a": {"b": 1}}, sep=FLATTEN_TUPLE) == {("a", "b"): 1}


def test_update_config_with_drop():
    base = {"task": {"model": {"kwargs": {"lr": 0.1, "depth": 8}}, "record": [1, 2]}, "keep": 1}
    ext = {"task": {"model": {"kwargs": {"lr": 0.2, "depth": "__DROP__"}}, "record": [3]}, "keep": "__DROP__"}
    out = update_config(base, ext)
    assert out == {"task": {"model": {"kwargs": {"lr": 0.2}}, "record": [3]}}
    assert base["task"]["model"]["kwargs"] == {"lr": 0.1, "depth": 8}  # input untouched


def test_set_by_path_and_auto_filter():
    cfg = {"task": {"record": [{"kwargs": {}}]}}
    set_by_path(cfg, "task.record.0.kwargs.topk", 30)
    set_by_path(cfg, "new.key", True)
    assert cfg["task"]["record"][0]["kwargs"]["topk"] == 30 and cfg["new"] == {"key": True}

    def fit(dataset):
        return dataset

    with pytest.warns(UserWarning, match="reweighter"):
        assert auto_filter_kwargs(fit)(1, reweighter=None) == 1


def test_pickle_file_trusts_installed_plugin_classes_only(tmp_path):
    """Qlib's task layer puts a pickled handler in a config as ``file://...pkl``: the classes of installed
    plugins load, anything else (here os.system) is refused."""
    import os

    from qexp_data.processor import ZScoreNorm
    p = tmp_path / "proc.pkl"
    p.write_bytes(pickle.dumps(ZScoreNorm(fit_start_time="2020-01-01", fit_end_time="2020-06-30")))
    loaded = init_instance_by_config("file://" + str(p))
    assert type(loaded).__name__ == "ZScoreNorm" and str(loaded.fit_end_time).startswith("2020-06-30")
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(os.system))
    with pytest.raises(pickle.UnpicklingError, match="refused global 'posix.system'"):
        init_instance_by_config("file://" + str(evil))
