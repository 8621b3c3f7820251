"""Scores per cell from the store's records alone, over each task's fixed label space."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from ..tasks import get_task
from .metrics import Scores, score


@dataclass
class ConfigScores:
    config: str
    task: str
    meta: dict[str, Any]
    scores: Scores
    sample_ids: list[str]


def score_records(records: Iterable[dict[str, Any]], ci: bool = True, seed: int = 0) -> list[ConfigScores]:
    """Scores per configuration, over each task's scored labels, from store records only."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r["config"]].append(r)
    out = []
    for config, recs in sorted(groups.items()):
        recs.sort(key=lambda r: r["sample_id"])
        task = get_task(recs[0]["task"])
        sc = score(
            [frozenset(r["gold"]) for r in recs],
            [frozenset(r["labels"]) for r in recs],
            task.scored_labels,
            sample_types=[r.get("sample_type", "unknown") for r in recs],
            parse_ok=[bool(r.get("parse_ok", True)) for r in recs],
            errors=[r.get("error") for r in recs],
            ci=ci, seed=seed, all_labels=task.labels if task.unscored else None,
        )
        out.append(ConfigScores(config, task.name, recs[0].get("meta", {}), sc, [r["sample_id"] for r in recs]))
    return out
