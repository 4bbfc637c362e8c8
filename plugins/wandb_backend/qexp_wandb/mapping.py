"""How qexp's params, tags and metrics map onto W&B's config, run tags and history. Pure functions.

- params -> ``run.config[key]`` with the flat qexp key kept (``model.kwargs.lr``); numbers and booleans,
  which qexp stores as strings, become numbers/booleans again so W&B can plot and filter them.
- tags -> ``run.config["tags.<key>"]`` (the column name qexp's search uses), and the short user tags also
  as W&B run tags ``key=value`` (W&B tags are plain strings of at most 64 characters).
- metrics -> one ``run.log`` row per qexp step, with the step in the ``qexp/step`` column, which is the
  x-axis of every metric (``define_metric``): W&B's own step must only grow, qexp's may repeat or go back.
"""
from __future__ import annotations

import re
from typing import Any

STEP_KEY = "qexp/step"
TAG_CONFIG_PREFIX = "tags."
LINK_TAG_PREFIX = "wandb."        # tags the mirror itself writes on the qexp run
WANDB_TAG_MAX = 64
# tags that describe the machine or the tool: kept in config, not worth a W&B run tag each
_SYSTEM_TAG_PREFIXES = ("mlflow.", "wandb.", "qexp.", "git.")
_SYSTEM_TAGS = {"hostname", "python_version", "qexp_version", "cmd-sys.argv"}

_INT = re.compile(r"^-?(0|[1-9]\d*)$")
_FLOAT = re.compile(r"^-?((0|[1-9]\d*)\.\d*|\.\d+|(0|[1-9]\d*)(\.\d*)?[eE][-+]?\d+)$")


def config_value(value: str) -> Any:
    """A param string as W&B should see it: ``"0.1"`` -> 0.1, ``"10"`` -> 10, ``"True"`` -> True."""
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if value in ("True", "False"):
        return value == "True"
    return value


def params_to_config(params: dict[str, str]) -> dict[str, Any]:
    return {k: config_value(v) for k, v in params.items()}


def tags_to_config(tags: dict[str, str]) -> dict[str, str]:
    return {TAG_CONFIG_PREFIX + k: v for k, v in tags.items() if not k.startswith(LINK_TAG_PREFIX)}


def is_user_tag(key: str) -> bool:
    return key not in _SYSTEM_TAGS and not key.startswith(_SYSTEM_TAG_PREFIXES)


def wandb_run_tags(tags: dict[str, str]) -> dict[str, str]:
    """The qexp tags that also become W&B run tags: key -> ``"key=value"`` (only those that fit)."""
    out = {}
    for k, v in tags.items():
        text = f"{k}={v}"
        if is_user_tag(k) and len(text) <= WANDB_TAG_MAX:
            out[k] = text
    return out


def history_row(metrics: dict[str, float], step: int) -> dict[str, Any]:
    return {**metrics, STEP_KEY: step}
