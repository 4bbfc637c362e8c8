"""Hook specifications: every extension point qexp offers.

Hooks that add things receive a ``register`` callback (in the manner of simonw/llm), so one hook
implementation can register several items with metadata. Lifecycle hooks receive the recorder.

Extension points chosen by URI scheme (backends, mirrors, data providers, artifact stores, executors,
task stores, cache stores) all take a :class:`SchemeRegister`; classes named in configs (models,
record templates, data components) take a :class:`ComponentRegister`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from .recorder import Recorder

hookspec = pluggy.HookspecMarker("qexp")
hookimpl = pluggy.HookimplMarker("qexp")


class SchemeRegister(Protocol):
    """``register(schemes, factory, *, description="")``: ``schemes`` is one scheme or a list (``""`` means a
    bare path); ``factory(uri, **kwargs)`` builds the object for a URI of that scheme."""

    def __call__(self, schemes: str | list[str], factory: Callable[..., Any], *, description: str = "") -> None: ...


class ComponentRegister(Protocol):
    """``register(cls, name=None, module_paths=())``: configs may name ``cls`` by ``name`` (default: the class
    name) or as ``<module path>.<name>`` for each of ``module_paths`` (Qlib's paths, e.g. ``qlib.contrib.model.gbdt``)."""

    def __call__(self, cls: Any, name: str | None = None, module_paths: Iterable[str] = ()) -> None: ...


# ---- things chosen by URI scheme ------------------------------------------------------------------

@hookspec
def register_backends(register: SchemeRegister) -> None:
    """Register experiment-manager factories for tracking-store URI schemes (``file``, ``sqlite``, ...).

    ``factory(uri, default_exp_name="Experiment", **kwargs)`` returns a :class:`qexp.ext.ExpManager`.
    """


@hookspec
def register_artifact_stores(register: SchemeRegister) -> None:
    """Register artifact stores: ``factory(uri)`` returns a :class:`qexp.ext.ArtifactStore` rooted at ``uri``.

    The file backend asks for one by the scheme of each run's artifact URI, so
    ``qexp.init(artifact_root="s3://bucket/runs")`` keeps the artifacts of file-tracked runs in the store a
    plugin registered for ``s3``.
    """


@hookspec
def register_mirrors(register: SchemeRegister) -> None:
    """Register run mirrors for ``qexp.init(mirrors=[...])``: ``factory(uri)`` returns an object implementing
    the recorder event hooks below."""


@hookspec
def register_data_providers(register: SchemeRegister) -> None:
    """Register data providers chosen by the scheme of ``provider_uri``: ``factory(uri, **settings)`` returns a
    :class:`qexp.ext.DataProvider`."""


@hookspec
def register_executors(register: SchemeRegister) -> None:
    """Register executors (``local``, ``process://N``, ``dask://HOST:PORT``): ``factory(uri, **kwargs)``
    returns a :class:`qexp.ext.Executor`."""


@hookspec
def register_task_stores(register: SchemeRegister) -> None:
    """Register task-queue stores (``sqlite:///PATH``, ``postgresql://...``): ``factory(uri, **kwargs)``
    returns a :class:`qexp.ext.TaskStore`."""


@hookspec
def register_cache_stores(register: SchemeRegister) -> None:
    """Register cache stores (``disk``, ``redis://host:port/db``): ``factory(uri, **kwargs)`` returns a
    :class:`qexp.ext.CacheStore`."""


# ---- classes named in configs ---------------------------------------------------------------------

@hookspec
def register_models(register: ComponentRegister) -> None:
    """Register model classes, e.g. ``register(LGBModel, module_paths=("qlib.contrib.model.gbdt",))`` so a
    Qlib YAML with ``module_path: qlib.contrib.model.gbdt`` resolves."""


@hookspec
def register_record_templates(register: ComponentRegister) -> None:
    """Register record templates (and their helpers such as strategies)."""


@hookspec
def register_data_components(register: ComponentRegister) -> None:
    """Register datasets, handlers, processors and loaders."""


# ---- the command line and settings ----------------------------------------------------------------

@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``qexp`` click group ``cli`` (use :func:`qexp.ext.cli_group` to reach a sub-group
    such as ``runs``)."""


@hookspec
def qexp_init(settings: dict[str, Any]) -> list[str] | None:
    """Called by ``qexp.init(**settings)`` (and by the first use of ``R`` without ``init``, with ``{}``) with
    the settings the core does not own (``provider_uri``, ``region``, ...). Return the keys this plugin used."""


# ---- recorder events ------------------------------------------------------------------------------
# A plugin can add auto-logging or mirror a run elsewhere. Events are called after the backend has
# accepted the write, with the values as logged; each implementation runs in its own ``try``, so one
# failing plugin is warned about by name and the others still receive the event.

@hookspec
def recorder_started(recorder: Recorder) -> None:
    """A recorder started (or resumed) a run."""


@hookspec
def recorder_params_logged(recorder: Recorder, params: dict[str, str]) -> None:
    """Parameters were logged."""


@hookspec
def recorder_metrics_logged(recorder: Recorder, metrics: dict[str, float], step: int | None) -> None:
    """Metrics were logged at ``step``."""


@hookspec
def recorder_tags_set(recorder: Recorder, tags: dict[str, str]) -> None:
    """Tags were set."""


@hookspec
def recorder_tags_deleted(recorder: Recorder, keys: list[str]) -> None:
    """Tags were deleted."""


@hookspec
def recorder_artifact_logged(recorder: Recorder, local_path: str, artifact_path: str | None) -> None:
    """A file or folder was logged as an artifact."""


@hookspec
def recorder_ended(recorder: Recorder, status: str) -> None:
    """A recorder ended its run with ``status`` (FINISHED, FAILED, ...)."""
