"""Scores per cell from the store's records alone, over each task's fixed label space.

Two rules keep a score from misleading:

- a cell whose share of generation errors plus unparseable replies passes
  ``max_failure_rate`` (default 20%) is marked ``failed``: its F1 measures the failures,
  not the model, so the report never calls it the best and ``run`` exits non-zero;
- a cell rerun under changed settings is scored from its newest settings only: records
  left from the old settings (a rerun killed midway) are counted in ``stale``, never mixed in.

A generation error is counted once, as an error, not also as an unparseable reply.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from ..tasks import get_task
from .metrics import Scores, score

#: a cell whose errors plus parse failures exceed this share of its samples is marked failed
MAX_FAILURE_RATE = 0.2


@dataclass
class ConfigScores:
    config: str
    task: str
    meta: dict[str, Any]
    scores: Scores
    sample_ids: list[str]
    #: (generation errors + unparseable replies) / n
    failure_rate: float = 0.0
    #: failure_rate above the run's threshold: never starred, reported as failed
    failed: bool = False
    #: records made under older settings of this cell, left out of the score
    stale: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "task": self.task,
            "meta": self.meta,
            "failure_rate": self.failure_rate,
            "failed": self.failed,
            "stale": self.stale,
            **self.scores.as_dict(),
        }


def current_settings(recs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """A cell's records made under its newest settings (the last record's), and how many
    older-settings records were left out. Records come newest last."""
    newest = recs[-1].get("settings") if recs else None
    current = [r for r in recs if r.get("settings") == newest]
    return current, len(recs) - len(current)


def failure_rate(scores: Scores) -> float:
    return (scores.errors + scores.parse_failures) / scores.n if scores.n else 0.0


def _threshold(recs: list[dict[str, Any]], default: float | None) -> float:
    """The run's threshold travels in each record's meta, so ``report`` needs no config."""
    if default is not None:
        return default
    value = recs[-1].get("meta", {}).get("max_failure_rate")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else MAX_FAILURE_RATE


def score_records(
    records: Iterable[dict[str, Any]], ci: bool = True, seed: int = 0, max_failure_rate: float | None = None
) -> list[ConfigScores]:
    """Scores per configuration, over each task's scored labels, from store records only.
    Records are taken newest last (as :func:`~ptychobench.eval.store.read_run` gives them)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r["config"]].append(r)
    out = []
    for config, recs in sorted(groups.items()):
        current, stale = current_settings(recs)
        current.sort(key=lambda r: r["sample_id"])
        task = get_task(current[0]["task"])
        errors = [r.get("error") for r in current]
        sc = score(
            [frozenset(r["gold"]) for r in current],
            [frozenset(r["labels"]) for r in current],
            task.scored_labels,
            sample_types=[r.get("sample_type", "unknown") for r in current],
            # an error is counted as an error only, not as an unparseable reply too
            parse_ok=[bool(r.get("parse_ok", True)) or bool(e) for r, e in zip(current, errors)],
            errors=errors,
            ci=ci,
            seed=seed,
            all_labels=task.labels if task.unscored else None,
        )
        rate = failure_rate(sc)
        out.append(
            ConfigScores(
                config,
                task.name,
                current[-1].get("meta", {}),
                sc,
                [r["sample_id"] for r in current],
                failure_rate=rate,
                failed=rate > _threshold(current, max_failure_rate),
                stale=stale,
            )
        )
    return out
