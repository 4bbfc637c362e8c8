"""Registration under names and Qlib module paths, and imports that stay light without the extras."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import qexp
from qexp import registry
from qexp.model import BaseModel, Model, ModelFT
from qexp.plugins import load_plugins


def test_models_resolve_by_name_and_qlib_module_path() -> None:
    from qexp_models.alstm import ALSTM
    from qexp_models.lgb import LGBModel
    from qexp_models.linear import LinearModel
    load_plugins()
    assert registry.components.resolve("LGBModel") is LGBModel
    assert registry.components.resolve("LGBModel", "qlib.contrib.model.gbdt") is LGBModel
    assert registry.components.resolve("LinearModel", "qlib.contrib.model.linear") is LinearModel
    assert registry.components.resolve("ALSTM") is ALSTM
    assert registry.components.resolve("ALSTM", "qlib.contrib.model.pytorch_alstm") is ALSTM
    assert registry.components.resolve("ALSTM", "qlib.contrib.model.pytorch_alstm_ts") is ALSTM
    assert registry.components.resolve("qlib.contrib.model.pytorch_alstm_ts.ALSTM") is ALSTM
    assert {c.name for c in registry.components.components("model")} >= {"LGBModel", "LinearModel", "ALSTM"}


def test_models_follow_the_model_contract() -> None:
    from qexp_models.alstm import ALSTM
    from qexp_models.lgb import LGBModel
    from qexp_models.linear import LinearModel
    assert issubclass(LGBModel, ModelFT)
    assert issubclass(ALSTM, Model) and issubclass(LinearModel, Model)
    assert issubclass(Model, BaseModel)
    with pytest.raises(TypeError):
        Model()  # abstract: fit and predict must be implemented


def test_base_model_call_is_predict() -> None:
    class Const(Model):
        def fit(self, dataset, reweighter=None):
            return self

        def predict(self, dataset, segment="test"):
            return (dataset, segment)

    assert Const()("ds", segment="valid") == ("ds", "valid")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_registration_imports_neither_torch_nor_lightgbm() -> None:
    proc = _run("import sys\n"
                "import qexp_models.plugin as p\n"
                "names = []\n"
                "p.register_models(register=lambda cls, **kw: names.append(cls.__name__))\n"
                "assert {'ALSTM', 'LGBModel', 'LinearModel', 'XGBModel', 'CatBoostModel', 'DEnsembleModel', 'GRU',\n"
                "        'LSTM', 'DNNModelPytorch', 'TransformerModel'} <= set(names), names\n"
                "heavy = [m for m in ('torch', 'lightgbm', 'xgboost', 'catboost') if m in sys.modules]\n"
                "assert not heavy, heavy\n")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("module, cls, extra", [("lightgbm", "qexp_models.lgb.LGBModel", "lightgbm"),
                                                ("torch", "qexp_models.alstm.ALSTM", "torch")])
def test_missing_extra_is_a_clear_error(module: str, cls: str, extra: str) -> None:
    mod, name = cls.rsplit(".", 1)
    proc = _run("import sys\n"
                f"sys.modules[{module!r}] = None  # as if not installed\n"
                "import qexp\n"
                f"from {mod} import {name}\n"
                f"m = {name}()\n"
                "try:\n"
                "    m.fit(object())\n"
                "except qexp.MissingExtraError as e:\n"
                "    print(e)\n")
    assert proc.returncode == 0, proc.stderr
    assert f'pip install "qexp[{extra}]"' in proc.stdout
    assert issubclass(qexp.MissingExtraError, ImportError)


def test_the_documented_example_plugin_works(ds158_norm) -> None:
    """The model plugin example in qexp.model's docstring (also in the README) runs as written."""
    import textwrap
    import types

    import qexp.model
    from qexp import plugins
    doc = qexp.model.__doc__
    start = doc.rindex("\n", 0, doc.index("# my_models/plugin.py")) + 1  # from the start of that line
    code = doc[start:doc.index("# pyproject.toml")]
    module = types.ModuleType("my_models_plugin")
    exec(compile(textwrap.dedent(code), "my_models/plugin.py", "exec"), module.__dict__)
    name = plugins.register(module, name="my_models_test")
    try:
        cls = registry.components.resolve("OneFeature", "my_models")
        assert cls is module.OneFeature and registry.components.resolve("OneFeature") is cls
        with pytest.raises(ValueError, match="not fitted yet"):
            cls().predict(ds158_norm)
        model = cls().fit(ds158_norm)
        train = ds158_norm.prepare("train", col_set=["feature", "label"], data_key="learn")
        assert model.sign == np.sign(train["feature"].iloc[:, 0].corr(train["label"].iloc[:, 0]))
        pred = model(ds158_norm, segment="test")
        x = ds158_norm.prepare("test", col_set="feature", data_key="infer")
        assert pred.index.equals(x.index) and (pred == model.sign * x.iloc[:, 0]).all()
    finally:
        plugins.unregister(name)
    assert registry.components.resolve("OneFeature") is None


def test_the_package_docstring_lists_every_registered_model() -> None:
    import qexp_models
    from qexp_models.plugin import register_models
    registered: set[str] = set()
    register_models(lambda cls, **kw: registered.add(cls.__name__))
    assert len(registered) >= 28
    assert qexp_models.__doc__ is not None
    assert sorted(n for n in registered if f"``{n}``" not in qexp_models.__doc__) == []
