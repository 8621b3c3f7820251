"""Evaluation: generate into the store (``predict``), the typed record and the store
itself, metrics over the fixed label space, scores per cell, and paired comparisons."""

from .predict import make_record, predict
from .record import RECORD_VERSION, PredictionRecord
from .score import ConfigScores, score_records
from .store import PredictionStore, read_run

__all__ = [
    "RECORD_VERSION",
    "ConfigScores",
    "PredictionRecord",
    "PredictionStore",
    "make_record",
    "predict",
    "read_run",
    "score_records",
]
