from __future__ import annotations

import pandas as pd
import pytest

from qexp.ext import get_provider, has_provider, set_provider

from .stores import pg_uri, sqlite_uri, store_uri  # noqa: F401  (fixtures)

# 43 business days: Jan 1 (index 0) .. Feb 28, 2020 (index 42); the hand-checked tables index into it
CAL = pd.bdate_range("2020-01-01", "2020-02-28")


class CalendarOnly:
    """A data provider that knows only its trading calendar (enough for generators and TimeAdjuster)."""

    uri = "calendar-only"

    def __init__(self, days: pd.DatetimeIndex):
        self.days = pd.DatetimeIndex(days)

    def calendar(self, start_time=None, end_time=None, freq="day", future=False):
        days = self.days
        if start_time is not None:
            days = days[days >= pd.Timestamp(start_time)]
        if end_time is not None:
            days = days[days <= pd.Timestamp(end_time)]
        return days

    def list_instruments(self, *a, **k):  # pragma: no cover - not used
        raise NotImplementedError

    def features(self, *a, **k):  # pragma: no cover - not used
        raise NotImplementedError


@pytest.fixture
def calendar_provider():
    previous = get_provider() if has_provider() else None
    set_provider(CalendarOnly(CAL))
    yield CAL
    set_provider(previous)


def day(i: int) -> pd.Timestamp:
    return CAL[i]


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory):
    """A small synthetic market (12 stocks, 2018-2019) for the training tests."""
    from .tasks import write_market
    return write_market(tmp_path_factory.mktemp("market") / "synth")
