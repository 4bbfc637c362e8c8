"""``qexp data ...`` commands: synth, import-csv, check."""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import click


@click.group("data", help="Create and inspect Qlib-format data folders.")
def data_group() -> None:
    pass


FORCE_HELP = ("Replace --out when it already holds a data folder (without asking). A folder holding anything "
              "else is never replaced.")


def _confirm_output(out: str, force: bool) -> None:
    """Refuse an --out folder that is not ours; ask (on a terminal) or require --force before replacing a data
    folder. Runs before any work, so a refusal costs nothing."""
    from .atomic import check_output_folder, describe_data_folder, folder_kind
    from .errors import DataError
    try:
        check_output_folder(out, replace_data=True)  # a folder that is not ours: refused even with --force
        if folder_kind(out) == "data" and not force:
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                check_output_folder(out, replace_data=False)  # raises, naming --force
            click.confirm(f"{out} already holds a data folder ({describe_data_folder(out)}); replace it?",
                          default=False, abort=True)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None


@data_group.command("synth")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder to write: new, empty, or a data folder to replace (with --force).")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--instruments", default=300, show_default=True, type=click.IntRange(1), help="Number of stocks.")
@click.option("--start", default="2015-01-01", show_default=True, help="First calendar day.")
@click.option("--end", default="2020-12-31", show_default=True, help="Last calendar day.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same bytes).")
def synth_cmd(out: str, force: bool, instruments: int, start: str, end: str, seed: int) -> None:
    """Write a deterministic synthetic market (stocks, csi300 membership, SH000300 index)."""
    from .errors import DataError
    from .synth import SynthParams, write_synth
    _confirm_output(out, force)
    t0 = time.perf_counter()
    try:
        path = write_synth(out, SynthParams(instruments=instruments, start=start, end=end, seed=seed))
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"Wrote a synthetic market of {instruments} instruments ({start}..{end}, seed {seed}) to {path} "
               f"in {time.perf_counter() - t0:.1f}s. Use it with qexp.init(provider_uri={str(path)!r}).")


@data_group.command("import-csv")
@click.argument("src", type=click.Path(exists=True))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder to write: new, empty, or a data folder to replace (with --force).")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--date-col", default="date", show_default=True, help="Name of the date column.")
@click.option("--symbol-col", default=None, help="Column holding the symbol (default: the file name).")
@click.option("--market", "markets", multiple=True, metavar="NAME=FILE",
              help="Also write instruments/NAME.txt with the codes listed in FILE (repeatable).")
def import_csv_cmd(src: str, out: str, force: bool, date_col: str, symbol_col: str | None,
                   markets: tuple[str, ...]) -> None:
    """Convert per-symbol CSV/parquet files in SRC into a Qlib-format folder.

    Adds factor = 1.0 (prices taken as adjusted), vwap = (high + low + close) / 3 and
    change = close / previous close - 1 when the files lack them.
    """
    from .errors import DataError
    from .importer import import_csv
    _confirm_output(out, force)
    t0 = time.perf_counter()
    try:
        report = import_csv(src, out, date_col=date_col, symbol_col=symbol_col, markets=markets)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    for row in report.bad_rows[:50]:
        click.echo(f"skipped {row}", err=True)
    if len(report.bad_rows) > 50:
        click.echo(f"... and {len(report.bad_rows) - 50} more skipped rows", err=True)
    click.echo(f"Imported {report.symbols} symbols x {report.days} days, fields {', '.join(report.fields)}, "
               f"markets {', '.join(f'{k} ({v})' for k, v in report.markets.items())} into {report.dst} in "
               f"{time.perf_counter() - t0:.1f}s; {len(report.bad_rows)} row(s) skipped, "
               f"{report.duplicates} duplicate date(s) dropped.")


@data_group.command("check")
@click.argument("folder", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--max-nan-run", type=click.IntRange(0), default=None,
              help="Also flag instruments with a NaN run longer than this many days.")
def check_cmd(folder: str, as_json: bool, max_nan_run: int | None) -> None:
    """Report missing days, NaN runs, >50% jumps and missing fields; exit 1 when problems are found."""
    from .check import check_folder
    from .errors import DataError
    try:
        report = check_folder(folder, max_nan_run=max_nan_run)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_report(report)
    sys.exit(0 if report.ok else 1)


def _print_report(report: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text
    console = Console()
    # paths, codes and messages are data: escaped, so a '[...]' in them prints as written
    console.print(f"[bold]{escape(str(report.root))}[/]: {report.days} days, {len(report.instruments)} instruments, "
                  f"fields {escape(', '.join(report.fields))}, markets "
                  f"{escape(', '.join(f'{k} ({v})' for k, v in report.markets.items()))}")
    for p in report.problems:
        console.print(f"[red]problem:[/] {escape(str(p))}")
    flagged = [i for i in report.instruments if not i.ok]
    table = Table(title="Instruments with problems" if flagged else "No instrument problems")
    for col in ("code", "days", "missing", "longest NaN run", "jumps > 50%", "missing fields", "other"):
        table.add_column(col)
    for i in flagged:
        table.add_row(*[Text(x) for x in (
            i.code, str(i.days), str(i.missing_days), str(i.longest_nan_run),
            "; ".join(i.jumps[:3]) + (" ..." if len(i.jumps) > 3 else ""),
            ", ".join(i.missing_fields), "; ".join(i.problems))])
    if flagged:
        console.print(table)
    total_missing = sum(i.missing_days for i in report.instruments)
    console.print(f"{total_missing} missing (NaN) instrument-days in all; "
                  f"{'OK' if report.ok else f'{len(flagged)} instrument(s) with problems'}.")
