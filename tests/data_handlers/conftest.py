"""Fixtures: a small panel served by an in-memory provider set as the active qexp data provider."""
from __future__ import annotations

import pytest

from qexp import data_api

from .fake_provider import PanelProvider, make_panel


@pytest.fixture
def panel():
    return make_panel()


@pytest.fixture
def provider(panel):
    """The active provider for the test; markets: 'all' and 'mkt' (AAA, BBB always; CCC only from day 20)."""
    dates = panel.index.get_level_values("datetime").unique().sort_values()
    markets = {"mkt": {"AAA": [(dates[0], dates[-1])], "BBB": [(dates[0], dates[-1])],
                       "CCC": [(dates[20], dates[-1])]}}
    prov = PanelProvider(panel, markets)
    old = (data_api._global["provider"], data_api._global["region"])
    data_api.set_provider(prov, "cn")
    yield prov
    data_api.set_provider(old[0], old[1])
