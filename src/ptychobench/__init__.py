"""PtychoBench: adapt general-purpose foundation models to X-ray ptychography."""

from .data import Dataset, DatasetError, Sample, load_dataset, write_dataset
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
    "ARTIFACT_LABELS", "ARTIFACTS", "PARAM_OPTIONS", "PARAMS", "TASKS", "Task", "get_task",
    "Dataset", "DatasetError", "Sample", "load_dataset", "write_dataset", "__version__",
    "diagnose",
]
