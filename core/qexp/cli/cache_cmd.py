"""``qexp cache stats|clear``: the dataset/expression cache stores (the disk store and, when configured, Redis)."""
from __future__ import annotations

import time
from typing import Any

import click

from .common import fail
from .output import print_json, print_table


def _stores(uri: str | None, with_default: bool = True) -> list[Any]:
    """``--uri`` / ``QEXP_CACHE_URI`` (else the default disk store); with ``with_default`` the default disk
    store too when it is another one."""
    from ..cache import cache_base_dir, default_cache_uri, open_cache_store
    from ..exceptions import QexpError
    from ..uri import mask_uri
    chosen = uri or default_cache_uri()
    uris = [str(cache_base_dir() / "datasets")] if with_default else []
    if chosen not in uris:
        uris.append(chosen)
    stores = []
    for u in uris:
        try:
            stores.append(open_cache_store(u))
        except (QexpError, ValueError, OSError) as exc:
            fail(f"cache store {mask_uri(u)}: {exc}")
    return stores


def _size(n: Any) -> str:
    if n is None:
        return "no cap"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _ago(ts: Any) -> str:
    if not ts:
        return ""
    s = max(0.0, time.time() - float(ts))
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


@click.group("cache")
def cache_group() -> None:
    """The cache stores of datasets and expressions (``QEXP_CACHE_DIR``, ``QEXP_CACHE_URI``, size cap
    ``QEXP_CACHE_MAX_GB``, default 5 GB)."""


@cache_group.command("stats")
@click.option("--uri", default=None, help="A cache store URI (default: QEXP_CACHE_URI); the disk store in "
              "QEXP_CACHE_DIR is always shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cache_stats(uri: str | None, as_json: bool) -> None:
    """Entries, size and size cap of each cache store."""
    stats = []
    for store in _stores(uri):
        stats.append(store.stats())
        store.close()
    if as_json:
        print_json(stats)
        return
    rows = []
    for s in stats:
        if s.get("kind") == "redis":
            detail = ("unreachable" if not s.get("reachable") else
                      f"frames on disk: {s.get('disk_entries', 0)} ({_size(s.get('disk_bytes', 0))}) in {s['dir']}; "
                      f"builds running: {s.get('locks_held', 0)}")
            rows.append([s["uri"], "redis", s.get("entries", ""), _size(s.get("bytes", 0)),
                         _size(s.get("max_bytes")), detail])
        else:
            detail = (f"{s.get('small_entries', 0)} small ({_size(s.get('small_bytes', 0))}); "
                      f"last used {_ago(s.get('newest_use'))}" if s.get("newest_use") else "empty")
            rows.append([s["uri"], s.get("kind", ""), s.get("entries", 0), _size(s.get("total_bytes", 0)),
                         _size(s.get("max_bytes")), detail])
    print_table(["store", "kind", "entries", "size", "cap", "detail"], rows)


@cache_group.command("clear")
@click.option("--uri", default=None, help="The cache store to clear (default: QEXP_CACHE_URI, else the disk store "
              "in QEXP_CACHE_DIR); only that one is cleared.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (asked only on a terminal).")
def cache_clear(uri: str | None, yes: bool) -> None:
    """Delete every entry of one cache store (they are rebuilt when next needed; builds in progress keep their
    locks). Only what qexp wrote is deleted: a folder that is not a qexp cache is refused."""
    import sys
    for store in _stores(uri, with_default=False):
        if not yes and sys.stdin.isatty() and sys.stdout.isatty():
            stats = store.stats()
            n = stats.get("entries", 0) + stats.get("small_entries", 0)
            if not click.confirm(f"delete the {n} entries of the cache store {store.uri}?", default=False):
                store.close()
                fail("nothing deleted")
        n = store.clear()
        store.close()
        click.echo(f"removed {n} entr{'y' if n == 1 else 'ies'} from {store.uri}")


def add_commands(cli: click.Group) -> None:
    cli.add_command(cache_group)
