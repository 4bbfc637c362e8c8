"""R pickles by name, so functions and objects that hold it can travel to executor workers."""
from __future__ import annotations

import pickle

from qexp import R


def test_r_pickles_as_the_same_object() -> None:
    assert pickle.loads(pickle.dumps(R)) is R
    assert pickle.loads(pickle.dumps({"recorder": R}))["recorder"] is R
