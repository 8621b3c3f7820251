"""PtychoBench: adapt general-purpose foundation models to X-ray ptychography, and measure
honestly which adaptation works. ``docs/architecture.md`` maps the package."""

from .api import load_backend, run_frame, score_frame
from .data import Dataset, Sample, load_dataset, write_dataset
from .errors import ConfigError, DatasetError, ModelError, PtychoBenchError, StoreError
from .tasks import ARTIFACT_LABELS, ARTIFACTS, PARAM_OPTIONS, PARAMS, TASKS, Task, get_task

__version__ = "0.1.0"


def __getattr__(name: str):
    """``ptychobench.diagnose`` (a callable package) is imported on first use: it pulls in
    scipy and the readers, which ``import ptychobench`` alone should not pay for."""
    if name == "diagnose":
        import importlib

        return importlib.import_module(".diagnose", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "ARTIFACTS",
    "ARTIFACT_LABELS",
    "PARAMS",
    "PARAM_OPTIONS",
    "TASKS",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "ModelError",
    "PtychoBenchError",
    "Sample",
    "StoreError",
    "Task",
    "get_task",
    "load_backend",
    "load_dataset",
    "run_frame",
    "score_frame",
    "write_dataset",
    "diagnose",
]
