"""The ``ptychobench`` command: one module per group of sub-commands, one error handler
(``app.command``).

Each command imports what it needs when it runs, so ``--help`` is instant. Every error
the tool can foresee is a :class:`~ptychobench.errors.PtychoBenchError`; :func:`command`
turns it (and an unreadable or unwritable file) into one line and exit code 2.
"""

from __future__ import annotations

from . import data, loop, recon, results, run, train  # noqa: F401  (each registers its commands)
from .app import app, command


def _mount_parts() -> None:
    """The sub-apps of the later steps: ``annotate`` (Label Studio round trip) and
    ``diagnose`` (a user's own reconstruction)."""
    from ..annotate.cli import app as annotate_app
    from ..diagnose.cli import diagnose_command

    app.add_typer(annotate_app, name="annotate")
    command("diagnose")(diagnose_command)


_mount_parts()

__all__ = ["app", "command"]
