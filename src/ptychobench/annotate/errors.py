"""The error of the annotate package."""

from __future__ import annotations

from ..data import DatasetError


class AnnotateError(DatasetError):
    """Bad Label Studio input or export request; the message names the file, task and fix.

    A :class:`DatasetError` so that every command that already turns dataset errors into
    one line and a non-zero exit does the same for these.
    """
