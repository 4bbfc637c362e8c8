"""qexp_models: the built-in model zoo plugin (LGBModel, ALSTM, LinearModel).

The model classes live in their own modules (``qexp_models.lgb``, ``.alstm``, ``.linear``); LightGBM and
torch are imported only when a model fits or predicts.
"""
