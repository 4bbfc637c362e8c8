"""qexp_models: the built-in model zoo plugin, Qlib's benchmark models under Qlib's class names and module paths.

:mod:`qexp_models.plugin` registers:

- gradient-boosted and classical: ``LGBModel`` (``.lgb``), ``XGBModel`` (``.xgb``), ``CatBoostModel``
  (``.catboost_model``), ``DEnsembleModel`` (``.double_ensemble``, DoubleEnsemble over LightGBM) and
  ``LinearModel`` (``.linear``);
- PyTorch, on the shared training loop (``.torch_loop``): ``ALSTM`` (``.alstm``); ``GRU``, ``LSTM``,
  ``TransformerModel``, ``LocalformerModel``, ``TCN``, ``DNNModelPytorch`` (MLP), ``GeneralPTNN``, ``KRNN``,
  ``Sandwich``, ``SFM`` (``.torch_models``); ``GATs``, ``HIST``, ``IGMTF`` (``.graph_models``); ``ADARNN``,
  ``ADD``, ``TCTS`` (``.aux_models``); ``TabnetModel`` (``.tabnet``); ``TRAModel`` (``.tra``, on an
  ``MTSDatasetH``). Where Qlib's ``_ts`` variant has other defaults, its module path gets a subclass
  (``TransformerModelTS``, ``LocalformerModelTS``, ``TCNTS``, ``GATsTS``; see ``.torch_registry``).

The model classes live in their own modules; LightGBM, XGBoost, CatBoost and torch are imported only when a
model fits or predicts.
"""
