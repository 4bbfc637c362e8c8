"""LightGBM's binned Dataset is shared by fits on one dataset inside ``reuse_preparation`` while no binning
parameter changes (the hook a sweep's trials use), and the predictions stay those of a fresh fit."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import qexp
from qexp.ext import init_instance_by_config, reuse_preparation
from tests.executors.helpers import tiny_config

pytest.importorskip("lightgbm")


def _model(**kw):
    from qexp_models.lgb import LGBModel
    params = {"num_threads": 1, "num_boost_round": 15, "early_stopping_rounds": 5, "seed": 1,
              "deterministic": True, "force_col_wise": True, "verbosity": -1}
    params.update(kw)
    return LGBModel(**params)


def _lgb_datasets(cache):
    return [entry[1] for key, entry in cache.items() if key[0] == "LGBModel.Dataset"]


def test_binned_dataset_reused_until_a_binning_parameter_changes(tiny_market, tmp_path):
    qexp.init(uri=str(tmp_path / "store"), provider_uri=str(tiny_market), region="cn")
    dataset = init_instance_by_config(copy.deepcopy(tiny_config(tiny_market)["task"]["dataset"]))
    cache: dict = {}
    with reuse_preparation(cache):
        a = _model(learning_rate=0.1).fit(dataset, verbose_eval=0)
        (first,) = _lgb_datasets(cache)
        b = _model(learning_rate=0.3, num_leaves=7).fit(dataset, verbose_eval=0)
        (second,) = _lgb_datasets(cache)
        assert second is first and second[0][0]._handle is not None  # the same Dataset, constructed once
        _model(learning_rate=0.1, max_bin=63).fit(dataset, verbose_eval=0)
        assert len(_lgb_datasets(cache)) == 2   # another binning: another Dataset
        _model(learning_rate=0.1, min_child_samples=50).fit(dataset, verbose_eval=0)  # an alias of min_data_in_leaf
        assert len(_lgb_datasets(cache)) == 3
    fresh = _model(learning_rate=0.3, num_leaves=7).fit(dataset, verbose_eval=0)
    assert len(_lgb_datasets(cache)) == 3       # outside the block nothing is kept
    np.testing.assert_array_equal(b.predict(dataset).to_numpy(), fresh.predict(dataset).to_numpy())
    assert b.feature_names == a.feature_names == fresh.feature_names
