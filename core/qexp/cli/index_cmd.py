"""``qexp index rebuild``: rebuild a file store's search index from its run folders."""
from __future__ import annotations

import warnings

import click

from .common import announce_store, fail, manager, uri_option


@click.group("index")
def index_group() -> None:
    """The search index of a file store."""


@index_group.command("rebuild")
@uri_option
@click.option("--repair", is_flag=True,
              help="Rewrite unreadable meta.json files: an experiment's from what its runs hold, a run's from its "
                   "own files (the broken file is kept as meta.json.corrupt-<time>).")
def index_rebuild(uri: str | None, repair: bool) -> None:
    """Rebuild the search index from the run folders (it is a cache; the folders are the truth).

    Exits 1 when something could not be indexed (an unreadable meta.json), naming each path.
    """
    m = manager(uri)
    announce_store(m)
    rebuild = getattr(m, "rebuild_index", None)
    if rebuild is None:
        fail(f"the {type(m).__name__} backend keeps no local index to rebuild")
    with warnings.catch_warnings():  # each problem is printed once, below
        warnings.simplefilter("ignore", RuntimeWarning)
        n = rebuild(repair=True) if repair else rebuild()
    for line in getattr(m, "index_repairs", None) or []:
        click.echo(f"repaired {line}", err=True)
    click.echo(f"indexed {n} runs in {m.uri}")
    problems = getattr(m, "index_problems", None) or []
    if problems:
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        fail(f"{len(problems)} folder(s) could not be indexed (listed above){_hint(problems, repair)}")


def _hint(problems: list[str], repaired: bool) -> str:
    """What to do next, for the kinds of problem listed."""
    if repaired:
        return "; --repair could not rewrite them: fix or remove those folders (each problem says why)"
    kinds = []
    if any("experiment folder" in p for p in problems):
        kinds.append("experiment metas from their runs")
    if any(p.startswith("run ") for p in problems):
        kinds.append("run metas from the runs' own files")
    if not kinds:
        return ""
    return f"; `qexp index rebuild --repair` rewrites unreadable {' and '.join(kinds)}"


def add_commands(cli: click.Group) -> None:
    cli.add_command(index_group)
