"""Trainer callbacks: a per-step clock for the loss curve and a wall-clock budget."""

from __future__ import annotations

import time
from typing import Any


def step_clock() -> Any:
    """A callback recording the wall time since the start of training at each step."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.times: dict[int, float] = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times[state.global_step] = round(time.perf_counter() - self.start, 2)

    return StepClock()


def time_budget(seconds: float) -> Any:
    """A callback that stops training after ``seconds`` of wall time (checked after each
    optimizer step); ``.hit`` says whether it did, and ``train_adapter`` then fails the run
    (``TrainingCutShort``) rather than save an adapter whose steps depend on the machine."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        def __init__(self) -> None:
            self.hit = False
            self.start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.start > seconds:
                self.hit = True
                control.should_training_stop = True
            return control

    return TimeBudget()
