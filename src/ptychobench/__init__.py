"""PtychoBench: adapt general-purpose foundation models to X-ray ptychography."""

from .data import Dataset, DatasetError, Sample, load_dataset, write_dataset
from .tasks import ARTIFACT_LABELS, ARTIFACTS, PARAM_OPTIONS, PARAMS, TASKS, Task, get_task

__version__ = "0.1.0"
__all__ = [
    "ARTIFACT_LABELS", "ARTIFACTS", "PARAM_OPTIONS", "PARAMS", "TASKS", "Task", "get_task",
    "Dataset", "DatasetError", "Sample", "load_dataset", "write_dataset", "__version__",
]
