"""Parse ``wandb://PROJECT?entity=E&mode=offline&store=URI&artifacts=true&...`` into a :class:`WandbTarget`."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlparse

from qexp.ext import ConfigError

MODES = ("online", "offline", "disabled")
# W&B's own aliases, accepted in WANDB_MODE as well as in the URI
MODE_ALIASES = {"dryrun": "offline", "run": "online"}
_PARAMS = ("entity", "mode", "store", "artifacts", "dir", "init_timeout", "system")
_BAD_PROJECT_CHARS = set("/\\#?%:")


@dataclass(frozen=True)
class WandbTarget:
    """Where runs go in W&B, and (for the backend) which local store keeps the record."""

    project: str
    entity: str | None = None
    mode: str | None = None          # None: decided at first run (credentials -> online, else offline)
    store: str | None = None         # local qexp store URI (backend only); None: ./qexp_runs
    artifacts: bool = False          # also upload artifacts as one W&B Artifact per run
    dir: str | None = None           # W&B's run folder root; None: $WANDB_DIR or W&B's default
    init_timeout: float | None = None
    system: bool = False             # W&B system metrics, machine/git metadata, requirements.txt (costly)

    def wandb_key(self) -> tuple:
        """What identifies the W&B side: two targets with equal keys write to the same place."""
        return (self.project, self.entity, self.mode, self.dir, self.artifacts, self.init_timeout, self.system)

    def same_wandb(self, other: WandbTarget) -> bool:
        return (self.project, self.entity) == (other.project, other.entity)


def normalize_mode(mode: str, where: str) -> str:
    m = MODE_ALIASES.get(mode.strip().lower(), mode.strip().lower())
    if m not in MODES:
        raise ConfigError(f"{where}: W&B mode {mode!r} is not one of {', '.join(MODES)}")
    return m


def _bool(value: str, key: str, uri: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{uri}: {key}={value!r} must be true or false")


def parse_wandb_uri(uri: str) -> WandbTarget:
    """Parse a ``wandb://`` URI; errors name the offending part and show the expected form."""
    parsed = urlparse(os.fspath(uri))
    form = "wandb://PROJECT?entity=ENTITY&mode=offline|online&store=URI&artifacts=true"
    if parsed.scheme.lower() != "wandb":
        raise ConfigError(f"{uri!r} is not a wandb:// URI; expected {form}")
    project = parsed.netloc
    if not project:
        raise ConfigError(f"{uri!r} names no W&B project; expected {form}")
    if parsed.path not in ("", "/"):
        raise ConfigError(f"{uri!r}: the W&B project is the part after wandb:// and cannot contain '/'; "
                          f"give the entity as a parameter: {form}")
    if _BAD_PROJECT_CHARS & set(project):
        raise ConfigError(f"{uri!r}: W&B project names cannot contain any of {''.join(sorted(_BAD_PROJECT_CHARS))}")
    query = parse_qs(parsed.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_PARAMS))
    if unknown:
        raise ConfigError(f"{uri!r}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(_PARAMS)}")
    one = {k: v[-1] for k, v in query.items()}
    target = WandbTarget(project=project)
    if one.get("entity"):
        target = replace(target, entity=one["entity"])
    if one.get("mode"):
        target = replace(target, mode=normalize_mode(one["mode"], repr(uri)))
    if one.get("store"):
        from qexp.ext import resolve_uri
        if one["store"].lower().startswith("wandb:"):
            raise ConfigError(f"{uri!r}: store= must be a local qexp store (a path or file: URI), not another "
                              f"wandb:// URI")
        target = replace(target, store=resolve_uri(one["store"]))
    if "artifacts" in one:
        target = replace(target, artifacts=_bool(one["artifacts"], "artifacts", uri))
    if "system" in one:
        target = replace(target, system=_bool(one["system"], "system", uri))
    if one.get("dir"):
        target = replace(target, dir=os.path.abspath(os.path.expanduser(one["dir"])))
    if one.get("init_timeout"):
        try:
            timeout = float(one["init_timeout"])
        except ValueError:
            timeout = -1.0
        if timeout <= 0:
            raise ConfigError(f"{uri!r}: init_timeout={one['init_timeout']!r} must be a positive number of seconds")
        target = replace(target, init_timeout=timeout)
    return target
