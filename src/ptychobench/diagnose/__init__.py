"""Diagnose a scientist's own reconstruction, with no truth: artifact labels with
probabilities, truth-free physical measurements, and parameter advice with its evidence.

``ptychobench.diagnose`` is this package and is also callable, so a notebook can write
``ptychobench.diagnose("recon.h5")``; it is the same as
``ptychobench.diagnose.diagnose("recon.h5")`` (see :mod:`.api`).
"""

from __future__ import annotations

import sys
import types

from .api import Diagnosis, diagnose, diagnose_many
from .io import DiagnoseError, Recon, read


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> Diagnosis:
        return diagnose(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["DiagnoseError", "Diagnosis", "Recon", "diagnose", "diagnose_many", "read"]
