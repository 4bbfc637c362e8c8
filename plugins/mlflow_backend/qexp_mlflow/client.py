"""The one place that talks to ``MlflowClient``: lazy import, URI normalisation, store start-up, retries
on transient database errors, and ``log_batch`` chunked to MLflow's per-call limits.

Never the fluent API (``mlflow.start_run``...): it keeps one global active run per process, so several
stores or threads would trample each other (a Qlib wart).
"""
from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, Iterator, Sequence, TypeVar
from urllib.parse import urlparse

from qexp.ext import QexpError, require_extra

T = TypeVar("T")

# MLflow's log_batch limits (REST docs): 1000 metrics, 100 params, 100 tags, 1000 items in all and about
# 1 MB per request. Read from mlflow.utils.validation when present so a newer MLflow's limits win.
DEFAULT_LIMITS = {"metrics": 1000, "params": 100, "tags": 100, "total": 1000}
MAX_REQUEST_BYTES = 900_000  # under the 1 MB request cap, with room for the JSON framing

# Substrings of errors that mean "try again": the write did not commit.
TRANSIENT_ERRORS = ("database is locked", "database table is locked", "deadlock detected",
                    "could not serialize access", "SQLITE_BUSY")
RETRY_ATTEMPTS = 8


def import_mlflow() -> Any:
    """``mlflow``, or :class:`MissingExtraError` with the install command."""
    mlflow = require_extra("mlflow", "mlflow", "the MLflow backend")
    require_extra("mlflow.tracking", "mlflow", "the MLflow backend")  # fails early on a broken install
    return mlflow


def batch_limits() -> dict[str, int]:
    try:
        from mlflow.utils import validation as v
        return {"metrics": int(getattr(v, "MAX_METRICS_PER_BATCH", 1000)),
                "params": int(getattr(v, "MAX_PARAMS_TAGS_PER_BATCH", 100)),
                "tags": int(getattr(v, "MAX_PARAMS_TAGS_PER_BATCH", 100)),
                "total": int(getattr(v, "MAX_ENTITIES_PER_BATCH", 1000))}
    except ImportError:  # pragma: no cover - mlflow is imported before this is called
        return dict(DEFAULT_LIMITS)


# ---- URIs ---------------------------------------------------------------------------------------
def sqlite_path(uri: str) -> str | None:
    """The database file of a ``sqlite:`` URI, or None for in-memory databases and other schemes."""
    if not uri.lower().startswith("sqlite:"):
        return None
    rest = uri.split(":", 1)[1]
    if not rest.startswith("///"):
        return None  # "sqlite://" is an in-memory database
    path = rest[3:].split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return path


def normalize_uri(uri: str) -> str:
    """Make the path of ``sqlite:///rel.db`` and ``mlflow+file:rel`` absolute, so a later change of the
    working directory does not move the store (Qlib's CWD-relative path bug)."""
    path = sqlite_path(uri)
    if path is not None and not os.path.isabs(path):
        query = uri.split("?", 1)[1] if "?" in uri else ""
        uri = "sqlite:///" + os.path.abspath(os.path.expanduser(path)) + (f"?{query}" if query else "")
    if uri.lower().startswith("mlflow+file:"):
        from qexp.ext import file_uri_to_path, path_to_file_uri
        uri = "mlflow+" + path_to_file_uri(os.path.abspath(os.path.expanduser(file_uri_to_path(uri[7:]))))
    return uri


def tracking_uri(uri: str) -> str:
    """The URI MLflow understands: ``mlflow+file:...`` -> ``file:...``, and a driver for a bare
    ``postgresql://`` (SQLAlchemy 2.1 picks psycopg 3 for it; the mlflow extra installs psycopg2) or
    ``mysql://`` (SQLAlchemy picks mysqlclient, which needs a C build; the mlflow extra installs PyMySQL)."""
    import importlib.util
    lower = uri.lower()
    if lower.startswith("mlflow+file:"):
        return uri[len("mlflow+"):]
    if lower.startswith("postgresql://"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + uri[len("postgresql://"):]
    if lower.startswith("mysql://"):
        if importlib.util.find_spec("MySQLdb") is None and importlib.util.find_spec("pymysql") is not None:
            return "mysql+pymysql://" + uri[len("mysql://"):]
    return uri


def default_artifact_root(uri: str) -> str | None:
    """Where new experiments keep artifacts. For a server, None (the server's choice); for a database,
    ``$QEXP_MLFLOW_ARTIFACT_ROOT``, else ``mlartifacts/`` next to a SQLite file, else None (MLflow's
    default: ``./mlruns`` of the process that first opened the store, made absolute)."""
    if urlparse(uri).scheme.lower() in ("http", "https", "databricks") or uri.startswith("databricks"):
        return None  # a server decides where its artifacts go; a local folder means nothing to it
    env = os.environ.get("QEXP_MLFLOW_ARTIFACT_ROOT")
    if env:
        return env if urlparse(env).scheme not in ("", "file") else _file_uri(env)
    path = sqlite_path(uri)
    if path is not None:
        return _file_uri(os.path.join(os.path.dirname(path), "mlartifacts"))
    return None


def _file_uri(path: str) -> str:
    from qexp.ext import file_uri_to_path, path_to_file_uri
    return path_to_file_uri(os.path.abspath(os.path.expanduser(file_uri_to_path(path))))


# ---- errors -------------------------------------------------------------------------------------
def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


def is_transient(exc: BaseException) -> bool:
    text = str(exc)
    return any(s in text for s in TRANSIENT_ERRORS)


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


def retry(fn: Callable[..., T], *args: Any, attempts: int = RETRY_ATTEMPTS, **kwargs: Any) -> T:
    """Call ``fn``; on a transient database error (SQLite busy, PostgreSQL deadlock) wait a jittered,
    growing delay and try again. Those errors roll the transaction back, so a retry cannot duplicate."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")  # pragma: no cover


# ---- the client ---------------------------------------------------------------------------------
def make_client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``, with the store created (and for a new SQLite file, its tables
    migrated) under a file lock: MLflow's schema migration races when several processes open a new
    database at once (mlflow #4353)."""
    mlflow = import_mlflow()
    # MLflow draws a tqdm bar for every artifact download; qexp reads many small artifacts (load_object)
    # and stays quiet unless the user asked for the bars
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    turi = tracking_uri(uri)
    if turi.lower().startswith("file:"):
        _check_file_store_allowed(mlflow)
    path = sqlite_path(turi)
    if path is not None and (not os.path.exists(path) or os.path.getsize(path) == 0):
        from filelock import FileLock
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with FileLock(path + ".qexp-init.lock", timeout=300):
            return retry(mlflow.MlflowClient, tracking_uri=turi)
    return retry(mlflow.MlflowClient, tracking_uri=turi)


def _check_file_store_allowed(mlflow: Any) -> None:
    version = tuple(int(p) for p in mlflow.__version__.split(".")[:2] if p.isdigit())
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("1", "true", "yes")
    if version >= (3, 13) and not allowed:
        raise QexpError(
            "'mlflow+file:' selects MLflow's file store, which MLflow 3.13+ refuses unless "
            "MLFLOW_ALLOW_FILE_STORE=true is set. Set that variable, or better use 'sqlite:///path/mlflow.db' "
            "(or qexp's own file backend, a plain path) and copy old runs with `qexp runs migrate`.")


DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def check_uri(uri: str) -> None:
    """A malformed database URI is one line naming the expected form, not SQLAlchemy's traceback."""
    from qexp.ext import ConfigError, uri_scheme
    scheme = uri_scheme(uri)
    if scheme not in DB_SCHEMES:
        return
    if scheme == "sqlite" and not (uri.lower().startswith("sqlite:///") or uri.lower().split("?")[0] == "sqlite://"):
        raise ConfigError(f"{uri!r} is not a SQLite URI MLflow can open: write sqlite:///relative/path.db or "
                          f"sqlite:////absolute/path.db (three slashes, then the path)")
    try:
        from sqlalchemy.engine import make_url
        make_url(tracking_uri(uri))
    except ImportError:  # pragma: no cover - SQLAlchemy comes with mlflow
        return
    except Exception as exc:
        raise ConfigError(f"cannot parse the database URI {uri!r} ({exc}); it looks like "
                          f"{scheme}://user:password@host:port/database") from None


PROBE_TIMEOUT_S = 5.0
"""How long the one probe of an MLflow server waits (MlflowClient retries a dead server for minutes)."""


def is_server(uri: str) -> bool:
    return urlparse(uri).scheme.lower() in ("http", "https")


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One request to the server's ``/health``, no retries: :class:`QexpError` when nothing answers. Any HTTP
    answer (an error status or a login page included) means a server is there."""
    from urllib.error import HTTPError, URLError
    from urllib.request import Request, urlopen

    from qexp.ext import mask_uri
    try:
        with urlopen(Request(uri.rstrip("/") + "/health", method="GET"), timeout=timeout):
            pass
    except HTTPError:
        return
    except (URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise QexpError(f"cannot reach the MLflow server at {mask_uri(uri)}: is it running? ({reason}; waited "
                        f"at most {timeout:g} s)") from None


def require_store(uri: str) -> None:
    """Raise :class:`StoreNotFoundError` unless the MLflow store of ``uri`` exists; creates nothing (reads
    call this: MlflowClient would create a new SQLite file or the tables of an empty database)."""
    from qexp.ext import StoreNotFoundError, uri_scheme
    turi = tracking_uri(uri)
    path = sqlite_path(turi)
    if path is not None:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise StoreNotFoundError(f"no MLflow database at {path} (the file does not exist)")
        return
    if turi.lower().startswith("file:"):
        from qexp.ext import file_uri_to_path
        folder = file_uri_to_path(turi)
        if not os.path.isdir(folder):
            raise StoreNotFoundError(f"no MLflow file store at {folder} (the folder does not exist)")
        return
    if uri_scheme(turi) not in DB_SCHEMES or turi.lower().startswith("sqlite:"):
        return  # a server (http, databricks) or an in-memory database: nothing is created by reading
    import sqlalchemy
    url = sqlalchemy.engine.make_url(turi)
    shown = url.render_as_string(hide_password=True)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            has = sqlalchemy.inspect(conn).has_table("experiments")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "does not exist" in first or "Unknown database" in first:
            raise StoreNotFoundError(f"no MLflow store at {shown}: {first}") from None
        raise QexpError(f"cannot connect to the MLflow database {shown}: {first}") from None
    finally:
        engine.dispose()
    if not has:
        raise StoreNotFoundError(f"the database {shown} holds no MLflow store (no 'experiments' table)")


def chunk_batch(metrics: Sequence[Any] = (), params: Sequence[Any] = (), tags: Sequence[Any] = (),
                limits: dict[str, int] | None = None) -> Iterator[tuple[list, list, list]]:
    """Split entities into ``log_batch`` calls within MLflow's count limits and about 1 MB each."""
    lim = limits or batch_limits()
    queues = {"params": list(params), "tags": list(tags), "metrics": list(metrics)}
    pos = {k: 0 for k in queues}
    while any(pos[k] < len(queues[k]) for k in queues):
        out: dict[str, list] = {"params": [], "tags": [], "metrics": []}
        total = size = 0
        for kind in ("params", "tags", "metrics"):
            q = queues[kind]
            while pos[kind] < len(q) and len(out[kind]) < lim[kind] and total < lim["total"]:
                item = q[pos[kind]]
                item_size = _entity_size(item)
                if total and size + item_size > MAX_REQUEST_BYTES:
                    break
                out[kind].append(item)
                pos[kind] += 1
                total += 1
                size += item_size
            if total >= lim["total"] or size >= MAX_REQUEST_BYTES:
                break
        yield out["metrics"], out["params"], out["tags"]


def _entity_size(item: Any) -> int:
    value = getattr(item, "value", "")
    return len(item.key) + (len(value) if isinstance(value, str) else 24) + 48


def log_batch(client: Any, run_id: str, metrics: Sequence[Any] = (), params: Sequence[Any] = (),
              tags: Sequence[Any] = ()) -> int:
    """``client.log_batch`` in chunks, each retried on transient errors; returns the number of calls."""
    calls = 0
    for m, p, t in chunk_batch(metrics, params, tags):
        retry(client.log_batch, run_id, metrics=m, params=p, tags=t, synchronous=True)
        calls += 1
    return calls
