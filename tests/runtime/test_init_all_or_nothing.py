"""A refused ``qexp.init`` changes nothing (the store, the settings, the provider, logging, mirrors), and
logging re-inits never double lines or raise raw errors."""
from __future__ import annotations

import io
import logging

import pytest

import qexp
from qexp import R
from qexp.ext import get_provider, get_settings


def _state():
    import qexp.session as s
    from qexp_data import cache
    root = logging.getLogger("qexp")
    return (R.get_uri(), get_settings(), get_provider(), dict(cache._runtime), list(root.handlers), root.level,
            list(s._mirror_plugins))


@pytest.mark.parametrize("bad", [
    {"bogus_key": 1},                                              # unknown: known only after the plugins ran
    {"cache_uri": "nosuch://x"},                                   # the data plugin refuses it
    {"logging_config": {"version": 1, "handlers": {"h": {"class": "nope.Handler"}}}},
    {"logging_config": {"version": 1, "loggers": {"qexp": {"handlers": ["missing"]}}}},
    {"logging_level": "LOUD"},
])
def test_a_refused_init_leaves_everything_as_before(tmp_path, synth_root, bad):
    qexp.init(uri=str(tmp_path / "a"))
    before = _state()
    with pytest.raises(qexp.QexpError):
        qexp.init(uri=str(tmp_path / "b"), **{"provider_uri": str(synth_root), "logging_level": "ERROR", **bad})
    after = _state()
    assert after[0] == before[0] == str(tmp_path / "a")          # R still writes to A
    assert after[1] == before[1]                                  # get_settings() unchanged
    assert after[2] is before[2]                                  # the provider is the one A set
    assert after[3] == before[3] and after[4] == before[4] and after[5] == before[5] and after[6] == before[6]


def test_a_refused_first_init_sets_no_provider(tmp_path, synth_root):
    from qexp.ext import has_provider, set_provider
    set_provider(None)
    R._manager, R._managers = None, {}
    with pytest.raises(qexp.ConfigError, match="bogus_key"):
        qexp.init(uri=str(tmp_path / "b"), provider_uri=str(synth_root), bogus_key=1)
    assert not has_provider() and not R.is_registered()


def test_bad_logging_config_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(qexp.ConfigError, match=r"logging_config: handler 'h': cannot import 'nope.Handler'"):
        qexp.init(uri=str(tmp_path / "s"), logging_config={"version": 1, "handlers": {"h": {"class": "nope.Handler"}}})
    with pytest.raises(qexp.ConfigError, match="logging_config: .*unknown level 'LOUD'"):
        qexp.init(uri=str(tmp_path / "s"), logging_config={"version": 1, "loggers": {"qexp": {"level": "LOUD"}}})


def test_reinit_after_a_logging_config_does_not_double_lines(tmp_path, capsys):
    stream = io.StringIO()
    config = {"version": 1, "handlers": {"mem": {"class": "logging.StreamHandler", "stream": stream}},
              "loggers": {"qexp": {"level": "INFO", "handlers": ["mem"]}}}
    qexp.init(uri=str(tmp_path / "s"), logging_config=config)
    qexp.init(uri=str(tmp_path / "s"))                      # back to qexp's default handler
    capsys.readouterr()
    logging.getLogger("qexp.test").warning("once please")
    err = capsys.readouterr().err
    assert err.count("once please") == 1, err
    assert "once please" not in stream.getvalue()            # the config's handler is gone
    qexp.init(uri=str(tmp_path / "s"))
    qexp.init(uri=str(tmp_path / "s"), logging_config=config)
    qexp.init(uri=str(tmp_path / "s"), logging_config=config)
    capsys.readouterr()
    logging.getLogger("qexp.test").warning("twice configured")
    assert stream.getvalue().count("twice configured") == 1 and "twice configured" not in capsys.readouterr().err
