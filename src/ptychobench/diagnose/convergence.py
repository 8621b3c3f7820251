"""The loss curve's own verdict on "more iterations" (K): a measurement that overrides the advisor.

The advisor reads the loss trend as a few words among many. On the P25 scan at 20 epochs it
gave K a calibrated 0.11 against its threshold 0.17 and advised "No changes needed" while
its own text said the loss was still falling 8.2% over the last quarter of the iterations;
200 epochs then fitted the data 45% better. As a decisive measurement decides a label
(:mod:`.evidence`), a loss curve from ``--params`` that still falls by ``STILL_FALLING`` or
more over the last quarter of its iterations (:func:`~ptychobench.sim.text.recent_drop`,
the number the text's trend line prints) makes K the advice, withdraws "No changes
needed", and a note says that the measurement overrode the advisor (``advice.loss_rule``).

``STILL_FALLING`` is tuned on the params TRAIN split only, the way the advisor's own
thresholds are (:func:`~ptychobench.strategies.probes.best_f1_threshold`: the highest F1
for "K verified"), over diagnose's texts of the 91 train experiments, whose trend lines
give each one's fall: ``PYTHONPATH=src python benchmarks/loss_rule.py`` prints the table
(docs/diagnose.md, "Parameter advice"). From 5.35% K was verified in 13 of the 31 train
experiments the rule fires on (42%; 15 of all 91, 16%; 2 of the 60 below it), and "No
changes needed" in 3 of the 31 (21 of all 91).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

MORE_ITERATIONS = "K"
#: fall of the loss over the last quarter of the iterations from which K is advised
STILL_FALLING = 0.0535
#: the trend line of a text (``sim.text._trend``): its signed fall in percent
_TREND = re.compile(r"trend: (still decreasing|increasing) \(([\d.]+)% over the last \d+ iterations\)")


def loss_curve(extras: dict[str, Any]) -> list[float] | None:
    """The loss curve a ``--params`` file carries (``loss``), or None."""
    loss = extras.get("loss")
    if not isinstance(loss, list) or not loss:
        return None
    try:
        return [float(v) for v in loss]
    except (TypeError, ValueError):
        return None


def still_falling(extras: dict[str, Any]) -> str | None:
    """Why K is advised whatever the advisor says (None: the loss curve does not decide)."""
    from ..sim.text import recent_drop

    loss = loss_curve(extras)
    drop = recent_drop(loss) if loss is not None else None
    if drop is None or not np.isfinite(drop[0]) or drop[0] < STILL_FALLING:
        return None
    rel, q = drop
    return (
        f"the loss is still falling: {100 * rel:.1f}% over the last {q} of {len(loss or [])} iterations "
        f"(from {100 * STILL_FALLING:.3g}% over the last quarter more iterations are advised)"
    )


def text_drop(text: str) -> float:
    """The signed fall (fraction) a text's trend line gives; 0 where it prints no percent
    ("flat", "fluctuating" and "too few iterations" are all within 2% of no change)."""
    m = _TREND.search(text)
    if m is None:
        return 0.0
    v = float(m.group(2)) / 100
    return v if m.group(1) == "still decreasing" else -v


def tuned_threshold(drops: np.ndarray, verified: np.ndarray) -> float:
    """The fall from which K is advised: the advisor's threshold rule (best F1 for "K
    verified") over the train experiments' falls."""
    from ..strategies.probes import best_f1_threshold

    return round(float(best_f1_threshold(np.asarray(verified, int), np.asarray(drops, float))), 4)


def train_falls(train: list) -> tuple[np.ndarray, np.ndarray]:
    """(fall, K verified) per params train experiment, from diagnose's texts of them
    (``advice.own_train_samples``; never the test split)."""
    drops = np.array([text_drop(s.text) for s in train])
    return drops, np.array([MORE_ITERATIONS in s.labels for s in train])
