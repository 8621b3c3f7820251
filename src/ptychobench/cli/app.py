"""The typer app and the one error handler every command goes through.

Every error the tool can foresee is a :class:`~ptychobench.errors.PtychoBenchError`;
:func:`command` turns it (and an unreadable or unwritable file) into one line and exit 2.
"""

from __future__ import annotations

import functools
from typing import Callable

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import PtychoBenchError
from ..secrets import scrub

app = typer.Typer(
    help="PtychoBench: adapt foundation models to X-ray ptychography and measure which adaptation works.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(scrub(message))}", highlight=False)
    raise typer.Exit(code)


def command(name: str) -> Callable[[Callable], Callable]:
    """Register a sub-command whose foreseeable errors end in one clear line."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def safe(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except PtychoBenchError as e:
                fail(str(e))
            except OSError as e:  # permissions, a full disk, a vanished folder
                where = f"{e.filename}: " if e.filename else ""
                fail(f"{where}{e.strerror or e}")

        return app.command(name)(safe)

    return wrap
