"""Hook specifications: every extension point qexp offers.

Hooks that add things receive a ``register`` callback (in the manner of simonw/llm), so one hook
implementation can register several items with metadata. Lifecycle hooks receive the recorder.
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("qexp")
hookimpl = pluggy.HookimplMarker("qexp")


@hookspec
def register_backends(register: Callable[..., None]) -> None:
    """Register experiment-manager factories for URI schemes.

    Call ``register(schemes, factory, *, description="")`` where ``schemes`` is a str or a list of
    schemes (``"file"``, ``"sqlite"``; ``""`` means a bare path) and ``factory(uri, **kwargs)``
    returns a :class:`qexp.manager.ExpManager`.
    """


@hookspec
def register_artifact_stores(register: Callable[..., None]) -> None:
    """Register artifact stores: ``register(schemes, factory)``; ``factory(uri)`` returns a
    :class:`qexp.artifacts.ArtifactStore` rooted at ``uri``."""


@hookspec
def register_mirrors(register: Callable[..., None]) -> None:
    """Register run mirrors for ``qexp.init(mirrors=[...])``: ``register(schemes, factory)``;
    ``factory(uri)`` returns an object implementing the recorder event hooks below."""


@hookspec
def register_models(register: Callable[..., None]) -> None:
    """Register model classes: ``register(cls, name=None, module_paths=())``.

    ``module_paths`` lists module paths under which configs may name the class, e.g.
    ``"qlib.contrib.model.gbdt"`` so a Qlib YAML with ``module_path: qlib.contrib.model.gbdt`` resolves.
    """


@hookspec
def register_record_templates(register: Callable[..., None]) -> None:
    """Register record templates (and their helpers such as strategies): same ``register`` as models."""


@hookspec
def register_data_components(register: Callable[..., None]) -> None:
    """Register datasets, handlers, processors, loaders: same ``register`` as models."""


@hookspec
def register_data_providers(register: Callable[..., None]) -> None:
    """Register data providers chosen by the scheme of ``provider_uri``: ``register(schemes, factory)``;
    ``factory(uri, **settings)`` returns an object implementing :class:`qexp.data_api.DataProvider`."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``qexp`` click group ``cli``."""


@hookspec
def qexp_init(settings: dict) -> list | None:
    """Called by ``qexp.init(**settings)`` with the settings the core does not own
    (``provider_uri``, ``region``, ...). Return the list of keys this plugin consumed."""


# Recorder events: a plugin can add auto-logging or mirror a run elsewhere. They are called after the
# backend has accepted the write, with the values as logged.

@hookspec
def recorder_started(recorder: Any) -> None:
    """A recorder started (or resumed) a run."""


@hookspec
def recorder_params_logged(recorder: Any, params: dict) -> None:
    """Parameters were logged."""


@hookspec
def recorder_metrics_logged(recorder: Any, metrics: dict, step: int | None) -> None:
    """Metrics were logged at ``step``."""


@hookspec
def recorder_tags_set(recorder: Any, tags: dict) -> None:
    """Tags were set."""


@hookspec
def recorder_tags_deleted(recorder: Any, keys: list) -> None:
    """Tags were deleted."""


@hookspec
def recorder_artifact_logged(recorder: Any, local_path: str, artifact_path: str | None) -> None:
    """A file or folder was logged as an artifact."""


@hookspec
def recorder_ended(recorder: Any, status: str) -> None:
    """A recorder ended its run with ``status`` (FINISHED, FAILED, ...)."""
