"""One family of errors the tool can foresee, so the CLI can say each in one line.

Every error raised for bad input, a bad config, a broken store or an unusable model
derives from :class:`PtychoBenchError`; the CLI catches that base class and prints the
message (which names the file, line or sample and what to do) with a non-zero exit.
The ``ValueError`` mix-in keeps ``except ValueError`` callers of the library working.
"""

from __future__ import annotations


class PtychoBenchError(Exception):
    """Base class: a problem the user can fix; the message says where and what to do."""


class DatasetError(PtychoBenchError, ValueError):
    """Bad input data (a dataset, a released file, an image)."""


class ConfigError(PtychoBenchError, ValueError):
    """A run config, an option or a command-line value that cannot work."""


class StoreError(PtychoBenchError, ValueError):
    """A prediction store that cannot be read or written."""


class ModelError(PtychoBenchError, ValueError):
    """A model, adapter or endpoint that cannot be loaded or used for the task."""


class TrainingCutShort(ModelError):
    """A fine-tuning run that its wall-clock guard stopped before its planned steps: the
    adapter would depend on the machine's speed, so none is saved and its cells fail."""
