"""Argument checks every model of the zoo shares, each failing with one line that names the model."""
from __future__ import annotations

from typing import Any

import numpy as np


def check_positive_int(model: str, **values: Any) -> None:
    """Each of ``values`` must be an integer >= 1 (``2000.0`` from a config counts; ``True`` does not)."""
    for name, value in values.items():
        number = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
        if not (number and np.isfinite(value) and int(value) == value and value >= 1):
            raise ValueError(f"{model}: {name} must be a positive integer, got {value!r}")
