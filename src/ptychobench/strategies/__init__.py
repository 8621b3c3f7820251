"""Adaptation strategies: in-context demo selectors, LoRA fine-tuning, and the baselines.

Import is light (no torch): the heavy parts load inside the functions that need them.

- :func:`make_selector` -> a :class:`~.selectors.Selector` with ``select(query, pool, k)``;
- :func:`train_adapter` -> a LoRA adapter folder with a ``ptychobench_adapter.json`` manifest;
- :func:`fit_predict_probe` -> label sets from a frozen-feature probe or a nearest-neighbour vote.
"""

from __future__ import annotations

from .probes import PROBES, fit_predict_probe
from .selectors import SELECTORS, Selector, demos_for, make_selector

__all__ = ["PROBES", "SELECTORS", "Selector", "demos_for", "fit_predict_probe", "make_selector", "train_adapter"]


def train_adapter(*args, **kwargs):
    from .sft import train_adapter as _train

    return _train(*args, **kwargs)


train_adapter.__doc__ = "LoRA fine-tuning; see :func:`ptychobench.strategies.sft.train_adapter`."
