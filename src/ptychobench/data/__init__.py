"""Samples and datasets: the on-disk format, the datasets the tool knows by name, and the
authors' released chat-JSON format in and out."""

from ..errors import DatasetError
from .dataset import MANIFEST, SPLITS, Dataset, Sample, content_hash, label_counts, load_dataset, write_dataset
from .registry import DEFAULT_DATASET, list_datasets, resolve_dataset

__all__ = [
    "DEFAULT_DATASET",
    "MANIFEST",
    "SPLITS",
    "Dataset",
    "DatasetError",
    "Sample",
    "content_hash",
    "label_counts",
    "list_datasets",
    "load_dataset",
    "resolve_dataset",
    "write_dataset",
]
