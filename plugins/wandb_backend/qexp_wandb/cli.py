"""``qexp runs sync-wandb``: upload the offline W&B runs of qexp runs."""
from __future__ import annotations

import click


def add_commands(cli: click.Group) -> None:
    runs = cli.commands.get("runs")
    (runs if isinstance(runs, click.Group) else cli).add_command(sync_wandb)


@click.command("sync-wandb")
@click.option("--uri", envvar="QEXP_URI", default=None,
              help="The qexp store: a wandb://PROJECT?store=... URI or the local store itself "
                   "(default: $QEXP_URI, else ./qexp_runs).")
@click.option("--exp", multiple=True, help="Experiment name or id (repeatable; default: all).")
@click.option("--all", "include_synced", is_flag=True, help="Upload runs already marked as synced again.")
@click.option("--dry-run", is_flag=True, help="Only list the offline W&B run folders found.")
def sync_wandb(uri: str | None, exp: tuple[str, ...], include_synced: bool, dry_run: bool) -> None:
    """Upload the offline W&B runs of qexp runs to the W&B server.

    Runs mirrored to W&B without credentials or network are written offline (wandb/offline-run-*
    folders); each qexp run records its folder in the tags wandb.dir and wandb.run_id. This command finds
    them (including the extra folders a resumed run gets), runs `wandb sync` on each run's folders, and
    tags the qexp run wandb.synced=<time> so the next call skips it (--all uploads it again).

    It needs W&B credentials: `wandb login` or WANDB_API_KEY (and WANDB_BASE_URL for a self-hosted
    server). Without them it lists the folders and says what to set.
    """
    from qexp.ext import QexpError, cli_manager, experiment_ids

    from ._lazy import import_wandb
    from .credentials import CREDENTIALS_HINT, has_credentials
    from .sync import find_offline_runs, mark_synced, sync_command, sync_run

    try:
        if not dry_run:  # finding the folders needs only the store; uploading needs wandb
            import_wandb("uploading runs with `wandb sync`")
    except QexpError as exc:  # wandb not installed: the message says what to install
        raise click.ClickException(str(exc)) from None
    # a read: a store that does not exist is the standard one-line error, never a new empty store
    manager = cli_manager(uri)
    runs = find_offline_runs(manager, experiment_ids(manager, exp), include_synced=include_synced)
    runs_with_dirs = [r for r in runs if r.dirs]
    for r in runs:
        if not r.dirs:
            click.echo(f"warning: run {r.qexp_run_id} ({r.run_name}) names W&B run {r.wandb_run_id}, but its "
                       f"offline folder is gone; nothing to upload for it", err=True)
    if not runs_with_dirs:
        click.echo(f"no offline W&B runs to sync in {manager.uri}")
        return
    n_dirs = sum(len(r.dirs) for r in runs_with_dirs)
    click.echo(f"{len(runs_with_dirs)} qexp run(s) with offline W&B runs ({n_dirs} folder(s)) in {manager.uri}:")
    for r in runs_with_dirs:
        click.echo(f"  {r.qexp_run_id} ({r.run_name}) -> W&B run {r.wandb_run_id} in project {r.project}")
        for d in r.dirs:
            click.echo(f"      {d}")
    if dry_run:
        return
    if not has_credentials():
        raise click.ClickException(
            f"cannot upload: no W&B credentials are configured. To upload, {CREDENTIALS_HINT}, then run "
            f"`qexp runs sync-wandb` again; or upload by hand with: {' '.join(sync_command(['<folder>...']))}")
    failed = 0
    for r in runs_with_dirs:
        ok, output = sync_run(r)
        if ok:
            mark_synced(manager, r)
            click.echo(f"synced {r.qexp_run_id} -> W&B run {r.wandb_run_id}")
        else:
            failed += 1
            click.echo(f"error: wandb sync failed for {r.qexp_run_id}:\n{output}", err=True)
    if failed:
        raise click.ClickException(f"{failed} of {len(runs_with_dirs)} run(s) failed to sync; the offline folders "
                                   f"are kept, run the command again once the problem is fixed")
