"""URI parsing, online/offline choice and the qexp -> W&B value mapping (no W&B run needed)."""
from __future__ import annotations

import os

import pytest

from qexp.exceptions import ConfigError
from qexp_wandb.credentials import has_credentials, resolve_mode
from qexp_wandb.mapping import STEP_KEY, config_value, history_row, tags_to_config, wandb_run_tags
from qexp_wandb.uri import parse_wandb_uri


def test_parse_full_uri(tmp_path):
    t = parse_wandb_uri(f"wandb://proj-1?entity=team&mode=dryrun&store={tmp_path}/s&artifacts=true"
                        f"&init_timeout=2.5&dir=~/wb&system=1")
    assert (t.project, t.entity, t.mode, t.artifacts, t.init_timeout, t.system) == \
        ("proj-1", "team", "offline", True, 2.5, True)
    assert t.store == str(tmp_path / "s") and t.dir == os.path.expanduser("~/wb")


def test_parse_defaults_and_relative_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = parse_wandb_uri("wandb://p")
    assert (t.entity, t.mode, t.store, t.artifacts, t.dir) == (None, None, None, False, None)
    assert parse_wandb_uri("wandb://p?store=rel").store == str(tmp_path / "rel")  # absolute at once


@pytest.mark.parametrize("uri,match", [
    ("wandb://", "names no W&B project"),
    ("wandb://team/proj", "cannot contain '/'"),
    ("wandb://p?mode=fast", "not one of online, offline, disabled"),
    ("wandb://p?colour=red", "unknown parameter.*colour"),
    ("wandb://p?artifacts=maybe", "true or false"),
    ("wandb://p?init_timeout=-1", "positive number"),
    ("wandb://p?store=wandb://q", "local qexp store"),
    ("file:///x", "not a wandb:// URI"),
])
def test_bad_uris_name_the_problem(uri, match):
    with pytest.raises(ConfigError, match=match):
        parse_wandb_uri(uri)


def test_mode_follows_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    assert not has_credentials() and resolve_mode(None) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert has_credentials() and resolve_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")  # W&B's own switch wins over credentials
    assert resolve_mode(None) == "offline"
    assert resolve_mode("online") == "online"     # and the URI's mode= over both


def test_netrc_entry_for_the_wandb_host_counts(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "p" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert has_credentials()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")  # self-hosted: another host
    assert not has_credentials()


def test_config_values_come_back_typed():
    assert config_value("0.1") == 0.1 and config_value("10") == 10 and config_value("-3") == -3
    assert config_value("1e-3") == 0.001 and config_value("True") is True and config_value("False") is False
    for s in ("007", "nan", "inf", "0.1.2", "lgb", "", "None"):
        assert config_value(s) == s


def test_tag_mapping():
    tags = {"stage": "prod", "mlflow.runName": "r", "hostname": "h", "wandb.run_id": "x", "long": "v" * 80}
    assert tags_to_config(tags) == {"tags.stage": "prod", "tags.mlflow.runName": "r", "tags.hostname": "h",
                                    "tags.long": "v" * 80}  # the link tags stay out
    assert wandb_run_tags(tags) == {"stage": "stage=prod"}  # user tags that fit W&B's 64 characters
    assert history_row({"ic": 0.1}, 3) == {"ic": 0.1, STEP_KEY: 3}
