"""The shipped labeller as ``generate``'s artifact labelling (sim-v3, labelling version 3).

Why here and not in ``sim``: the simulator sits below ``diagnose`` (whose image
measurements are features) and below this package, so the build cannot import the
labeller; the CLI hands it an object with this module's interface
(:class:`ptychobench.sim.build.ImageLabelling`) instead.

Each decision uses exactly the features the labeller was fitted on: the calibration
panel's features came from :func:`.labeller.sample_features` of built samples, so a unit
is judged through the same function, on a sample with the same stored (rounded) metrics,
experiment and rendered PNG.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..data import Sample
from . import labeller as lb


class ShippedLabelling:
    """Labels of one reconstruction from a labeller file (default: the shipped one).

    ``decide`` returns the sure labels (probability >= the file's ``hi``; "No obvious
    artifacts" when none), the unsure ones (probability in [``lo``, ``hi``): the gray zone)
    and every learnt label's probability."""

    def __init__(self, path: Path | str = lb.SHIPPED) -> None:
        self.path = Path(path)
        self.labeller = lb.load(self.path)
        self.version = self.labeller.version
        #: what a cached decision is valid for: this exact file (a refit keeps its version)
        self.fingerprint = hashlib.sha256(self.path.read_bytes()).hexdigest()

    def rules(self) -> dict[str, Any]:
        """How the labels are made, JSON-able, for the manifest."""
        return {
            "labelling_version": self.version,
            "labeller": {
                "file": self.path.name,
                "sha256": self.fingerprint,
                "trained_on": self.labeller.trained_on,
                "cross_validated": self.labeller.cv,
                "not_learnt": self.labeller.not_learnt,
            },
            "gray_zone": {m.label: [m.lo, m.hi] for m in self.labeller.models},
        }

    def decide(self, unit: str, metrics: dict[str, Any], image: Path, experiment: dict[str, Any]) -> dict[str, Any]:
        import torch

        sample = Sample(unit, "train", "artifacts", experiment["sample_type"], "", Path(image), frozenset(), {})
        sample.metadata.update(metrics=metrics, experiment=experiment)
        # one thread, as every work unit: the same sums in any build (a probability near a
        # cut-off cannot flip with the thread count), and no fight for the cores with the
        # worker processes beside it (benchmarks/bench_v3_labelling.py times a decision)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            x = lb.matrix([lb.sample_features(sample)])
        finally:
            torch.set_num_threads(threads)
        probs = {k: float(v[0]) for k, v in self.labeller.probabilities(x).items()}
        ((labels, unsure),) = self.labeller.label(x)
        return {
            "labels": sorted(labels),
            "unsure": sorted(unsure),
            "probabilities": {k: round(v, 6) for k, v in sorted(probs.items())},
        }
