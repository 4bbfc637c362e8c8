"""``qexp index rebuild``: rebuild a file store's search index from its run folders."""
from __future__ import annotations

import click

from .common import fail, manager, uri_option


@click.group("index")
def index_group() -> None:
    """The search index of a file store."""


@index_group.command("rebuild")
@uri_option
def index_rebuild(uri: str | None) -> None:
    """Rebuild the search index from the run folders (it is a cache; the folders are the truth)."""
    m = manager(uri)
    rebuild = getattr(m, "rebuild_index", None)
    if rebuild is None:
        fail(f"the {type(m).__name__} backend keeps no local index to rebuild")
    click.echo(f"indexed {rebuild()} runs in {m.uri}")


def add_commands(cli: click.Group) -> None:
    cli.add_command(index_group)
