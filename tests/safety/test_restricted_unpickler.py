"""The restricted unpickler loads Qlib's data artifacts but no pickle can call a library function that reads or
writes files (``pandas.read_pickle``, ``DataFrame.to_pickle``, ``numpy.memmap``) or runs code."""
from __future__ import annotations

import collections
import datetime
import decimal
import io
import os
import pathlib
import pickle

import numpy as np
import pandas as pd
import pytest

from qexp.pickling import RestrictedUnpickler


def load(data: bytes):
    return RestrictedUnpickler(io.BytesIO(data)).load()


DATA = {
    "pred": pd.DataFrame({"score": [0.1, 0.2]}, index=pd.MultiIndex.from_tuples(
        [(pd.Timestamp("2020-01-01"), "A"), (pd.Timestamp("2020-01-02"), "B")], names=["datetime", "instrument"])),
    "series": pd.Series([1.0, 2.0], index=pd.date_range("2020", periods=2)),
    "tz_index": pd.DatetimeIndex(["2020-01-01"], tz="Asia/Shanghai"),
    "timestamp": pd.Timestamp("2020-01-01", tz="UTC"), "timedelta": pd.Timedelta("1D"), "period": pd.Period("2020-01"),
    "categorical": pd.Categorical(["a", "b"]), "array": np.arange(5, dtype="float32"), "scalar": np.float64(1.5),
    "records": np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]), "datetime64": np.datetime64("2020-01-01"),
    "nullable": pd.DataFrame({"x": pd.array([1, None], dtype="Int64"), "s": pd.array(["a", None], dtype="string")}),
    "interval": pd.IntervalIndex.from_breaks([0, 1, 2]), "offset": pd.offsets.BDay(2),
    "stdlib": [datetime.datetime(2020, 1, 1), collections.OrderedDict(a=1), decimal.Decimal("1.1"), pathlib.Path("/x")],
}


@pytest.mark.parametrize("name", sorted(DATA))
def test_data_artifacts_load(name):
    obj = DATA[name]
    back = load(pickle.dumps(obj, protocol=4))
    if isinstance(obj, pd.DataFrame):
        pd.testing.assert_frame_equal(back, obj)
    elif isinstance(obj, pd.Series):
        pd.testing.assert_series_equal(back, obj)
    elif isinstance(obj, np.ndarray):
        np.testing.assert_array_equal(back, obj)
    else:
        assert repr(back) == repr(obj)


class _Call:
    """Pickles as ``func(*args)``: what a hostile artifact would carry."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_library_functions_that_touch_files_are_refused(tmp_path):
    victim = tmp_path / "victim.pkl"
    pd.DataFrame({"a": [1]}).to_pickle(victim)
    hostile = {
        "read_pickle": _Call(pd.read_pickle, str(victim)),
        "to_pickle": _Call(getattr, pd.DataFrame, "to_pickle"),
        "np.load": _Call(np.load, str(victim)),
        "memmap": _Call(np.memmap, str(tmp_path / "new.bin"), "uint8", "w+", 0, (4,)),
        "HDFStore": _Call(pd.HDFStore, str(tmp_path / "new.h5")),
        "system": _Call(os.system, "true"),
    }
    for obj in hostile.values():
        with pytest.raises(pickle.UnpicklingError, match="refused"):
            load(pickle.dumps(obj, protocol=4))
    assert not (tmp_path / "new.bin").exists() and not (tmp_path / "new.h5").exists()


def _short(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def test_dotted_names_and_modules_cannot_reach_code(tmp_path):
    marker = tmp_path / "ran"
    # protocol 4 resolves dotted names: a trusted module's reconstructor prefix must not lead to exec
    dotted = (b"\x80\x04" + _short("pandas.core.indexes.base") + _short("_new_Index.__builtins__.get") + b"\x93"
              + b"(" + _short("exec") + b"tR" + b"(" + _short(f"open({str(marker)!r}, 'w')") + b"tR.")
    # a module object found in a trusted package, then getattr on it (ctypes.CDLL loads any library)
    module = (b"\x80\x02cbuiltins\ngetattr\n(cnumpy.ctypeslib\nctypes\n" + _short("CDLL") + b"tR("
              + _short("libc.so.6") + b"tR.")
    for payload in (dotted, module):
        with pytest.raises(pickle.UnpicklingError, match="refused"):
            load(payload)
    assert not marker.exists()
