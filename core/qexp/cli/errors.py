"""One-line errors for every ``qexp`` command, the ``--traceback`` flag and exit status 130 on Ctrl-C.

The ``qexp`` group (and ``qrun``'s command) use :class:`QexpGroup` / :class:`QexpCommand`: an exception that
escapes a command, whoever wrote it (a plugin's too), becomes ``Error: ...`` on one line; a qexp error's
message already names the fix, any other gets a hint to rerun with ``--traceback``. ``--traceback``
anywhere on the command line, or ``QEXP_DEBUG=1``, shows the full traceback instead.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Sequence

import click

from ..exceptions import QexpError

TRACEBACK_FLAG = "--traceback"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C

_traceback = False


def debug() -> bool:
    """Whether the full traceback was asked for (``--traceback`` or ``QEXP_DEBUG=1``)."""
    return _traceback or os.environ.get("QEXP_DEBUG", "").strip().lower() in ("1", "true", "yes")


class Interrupted(click.ClickException):
    """Ctrl-C: ``Error: <message>`` and exit status 130."""

    exit_code = EXIT_INTERRUPTED


def one_line(exc: BaseException, note: str = "") -> click.ClickException:
    """The ``Error:`` line for an exception escaping a command; ``note`` (what became of the run) goes on a
    line of its own after it."""
    tail = f"\n  {note}" if note else ""
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(f"interrupted (Ctrl-C){tail}")
    if isinstance(exc, QexpError):  # its message names the problem and the fix; the class name adds nothing
        return click.ClickException(f"{exc}{tail}")
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return click.ClickException(f"{type(exc).__name__}: {first}\n  (unexpected; rerun with {TRACEBACK_FLAG} or "
                                f"QEXP_DEBUG=1 to see where it happened){tail}")


def _strip_flag(args: Sequence[str] | None) -> tuple[list[str], bool]:
    args = list(sys.argv[1:] if args is None else args)
    end = args.index("--") if "--" in args else len(args)
    found = TRACEBACK_FLAG in args[:end]
    return [a for i, a in enumerate(args) if not (i < end and a == TRACEBACK_FLAG)], found


def _plain_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                   line: str | None = None) -> None:
    # a CLI user needs the message, not the file path and the echoed source line of the code that warned
    print(f"warning: {message}", file=sys.stderr if file is None else file)


class _OneLineErrors:
    """Mixed into click's Group/Command: errors become one line; ``--traceback`` is accepted anywhere."""

    def main(self, args: Sequence[str] | None = None, *a: Any, **kw: Any) -> Any:
        global _traceback
        stripped, found = _strip_flag(args)
        previous, _traceback = _traceback, _traceback or found
        shown = warnings.showwarning
        if not debug():
            warnings.showwarning = _plain_warning
        try:
            return super().main(stripped, *a, **kw)  # type: ignore[misc]
        finally:
            _traceback = previous
            warnings.showwarning = shown

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if debug():
                raise
            raise one_line(exc) from exc


class QexpGroup(_OneLineErrors, click.Group):
    """The ``qexp`` group."""


class QexpCommand(_OneLineErrors, click.Command):
    """A command run on its own (``qrun``)."""
