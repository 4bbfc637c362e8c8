"""The instrument processor named by workflow_config_lightgbm_Alpha158_multi_freq.yaml
(``module_path: features_sample.py``, read from the working directory as in Qlib).

``Resample1minProcessor(hour, minute)`` keeps one minute bar of each day of an instrument's 1-minute features
and dates it by its day, so that the features line up with the daily label. qexp serves daily data only,
so a run of that config stops earlier, at the 1-minute features; this file is here so that the config's
classes resolve (``qexp run --dry-run``) and so that a 1-minute data provider could use it as it is.
"""
from __future__ import annotations

import datetime
from typing import Any

import pandas as pd


class Resample1minProcessor:
    def __init__(self, hour: int, minute: int):
        self.hour, self.minute = int(hour), int(minute)

    def __call__(self, df: pd.DataFrame, *args: Any, **kwargs: Any) -> pd.DataFrame:
        index = pd.DatetimeIndex(df.index)
        out = df.loc[index.time == datetime.time(self.hour, self.minute)]
        out.index = pd.DatetimeIndex(out.index).normalize()
        return out
