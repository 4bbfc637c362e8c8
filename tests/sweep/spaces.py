"""Sweep spaces the sweep tests share (on a process pool and on a Dask cluster alike), and writing one."""
from __future__ import annotations

from pathlib import Path

import yaml

IC_UP = {"name": "IC", "goal": "maximize"}

TPE = {"method": "tpe", "metric": IC_UP, "seed": 1,
       "parameters": {"task.model.kwargs.num_leaves": {"values": [3, 7, 15, 31]},
                      "task.model.kwargs.learning_rate": {"distribution": "log_uniform_values",
                                                          "min": 0.02, "max": 0.3},
                      "task.model.kwargs.min_data_in_leaf": {"min": 10, "max": 60}},
       "early_terminate": {"type": "median", "metric": "l2.valid", "startup_trials": 4, "min_iter": 2}}
"""TPE over three LightGBM parameters, median pruning on l2.valid."""

RANDOM = {"method": "random", "metric": IC_UP, "seed": 5,
          "parameters": {"task.model.kwargs.num_leaves": {"min": 3, "max": 31},
                         "task.model.kwargs.learning_rate": {"min": 0.05, "max": 0.3}}}
"""Random search over two LightGBM parameters (the resume tests)."""

GRID_2X3 = {"method": "grid", "metric": IC_UP,
            "parameters": {"task.model.kwargs.num_leaves": {"values": [3, 7]},
                           "task.model.kwargs.learning_rate": {"values": [0.05, 0.1, 0.2]}}}
"""A 2 x 3 grid: six trials."""


def write_space(tmp_path: Path, **space: object) -> str:
    """``space`` as ``tmp_path/space.yaml``; its path."""
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return str(path)
