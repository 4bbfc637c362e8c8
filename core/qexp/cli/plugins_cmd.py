"""``qexp plugins``: the installed plugins, their hooks and the URI schemes they serve."""
from __future__ import annotations

import click

from .output import print_json, print_table


@click.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_cmd(show_all: bool, as_json: bool) -> None:
    """List installed plugins: name, version, hooks and the URI schemes they serve."""
    from qexp.plugins import get_plugins, load_errors
    plugins = get_plugins(all=show_all)
    if not show_all:  # qexp's own event listeners (logging, a workflow's watcher) are not third-party plugins
        plugins = [p for p in plugins if not p["builtin"]]  # a third party's qexp_foo package stays listed
    if as_json:
        print_json(plugins)
        return
    errors = load_errors()
    if not plugins:
        click.echo("no third-party plugins are installed" + (" that loaded" if errors else "") +
                   "; `qexp plugins --all` lists the built-in ones (a plugin is a package with an entry point "
                   "in the 'qexp' group)")
    else:
        rows = [[p["name"], p["version"], ", ".join(p["hooks"]),
                 "; ".join(f"{k}: {', '.join(v)}" for k, v in p["schemes"].items())] for p in plugins]
        print_table(["name", "version", "hooks", "schemes"], rows)
    for name, err in errors.items():
        click.echo(f"warning: plugin {name!r} failed to load and was skipped: {err}", err=True)


def add_commands(cli: click.Group) -> None:
    cli.add_command(plugins_cmd)
