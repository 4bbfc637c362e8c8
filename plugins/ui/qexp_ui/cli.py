"""``qexp ui``: serve the web interface; ``qexp runs export-config``: a run's saved config as YAML."""
from __future__ import annotations

import os
from typing import Any

import click

from qexp.ext import cli_group, fail, uri_option


def add_commands(cli: click.Group) -> None:
    cli.add_command(ui_cmd)
    cli_group(cli, "runs").add_command(export_config)


@click.command("ui")
@uri_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address needs --token.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on (0: any free port).")
@click.option("--token", envvar="QEXP_UI_TOKEN", default=None,
              help="Access token (default: $QEXP_UI_TOKEN): browsers log in with it, scripts send "
                   "'Authorization: Bearer TOKEN'.")
@click.option("--allow-write", is_flag=True, help="Allow deleting runs and editing tags from the UI.")
def ui_cmd(uri: str | None, host: str, port: int, token: str | None, allow_write: bool) -> None:
    """Browse, monitor and compare the runs of a store in a web browser."""
    from qexp.ext import QexpError, StoreNotFoundError, require_extra, store_not_found
    try:
        require_extra("fastapi", "ui", "qexp ui")
        uvicorn = require_extra("uvicorn", "ui", "qexp ui")
        from .app import create_app
        app = create_app(uri, host=host, port=port, token=token, allow_write=allow_write)
    except StoreNotFoundError as exc:  # qexp ui only reads: a mistyped --uri must not become a new empty store
        store_not_found(exc)
    except QexpError as exc:
        fail(str(exc))
    config = uvicorn.Config(app, host=host, port=port, log_level=os.environ.get("QEXP_UI_LOG_LEVEL", "warning"),
                            access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    _announce(server, app.state.config)
    server.run()


def _announce(server: Any, config: Any) -> None:
    """Print the address once uvicorn is listening (``--port 0`` picks a free one)."""
    startup = server.startup

    async def started(sockets: Any = None) -> None:
        await startup(sockets=sockets)
        port = config.port
        for srv in getattr(server, "servers", []):
            for sock in getattr(srv, "sockets", []):
                port = sock.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        mode = "read-write" if config.allow_write else "read-only"
        click.echo(f"qexp ui: http://{host}:{port}/  ({config.uri}, {mode}; Ctrl-C stops it)", err=True)

    server.startup = started


@click.command("export-config")
@uri_option
@click.argument("run_id")
@click.option("-o", "--output", default="-", help="File to write (default: standard output).")
def export_config(uri: str | None, run_id: str, output: str) -> None:
    """Write a run's saved workflow config as YAML (ready for `qexp run`)."""
    from qexp.ext import QexpError, cli_manager

    from .artifacts import to_yaml, unpickle
    try:
        rec = cli_manager(uri).get_recorder_by_id(run_id)
        text = to_yaml(unpickle(rec.read_artifact("config")))
    except FileNotFoundError:
        fail(f"run {run_id} saved no config (runs made by `qexp run` have one)")
    except QexpError as exc:
        fail(str(exc))
    except Exception as exc:  # a config the restricted unpickler refuses
        fail(f"the config of run {run_id} could not be read safely: {exc}")
    if output == "-":
        click.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"wrote {output}", err=True)
