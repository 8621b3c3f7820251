"""``diagnose``: what is wrong with a reconstruction, with no truth, and what to change.

>>> from ptychobench import diagnose
>>> d = diagnose("recon.h5", scan_step=12)
>>> d.labels, d.probabilities["Phase ramp"], d.measurements["ramp"].value
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .advice import DEFAULT_ADVISOR, Advice, CurrentParams, advise, load_params
from .detector import DEFAULT_DETECTOR, Detection, get_detector, render
from .io import DiagnoseError, Recon, centre_crop, expand, read, to_recon
from .measure import FRC, Measurement, measure


@dataclass
class Diagnosis:
    """The diagnosis of one reconstruction. ``image`` is what the detector saw."""

    name: str
    source: str
    shape: tuple[int, int]
    kind: str
    labels: list[str]
    probabilities: dict[str, float] | None
    thresholds: dict[str, float | None] | None  # None: a label the detector never predicts
    detector: str
    measurements: dict[str, Measurement]
    frc: FRC | None = None
    advice: Advice | None = None
    image: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (the rendered image left out)."""
        return {
            "name": self.name,
            "source": self.source,
            "shape": list(self.shape),
            "kind": self.kind,
            "detector": self.detector,
            "labels": self.labels,
            "probabilities": self.probabilities,
            "thresholds": self.thresholds,
            "measurements": {k: m.to_dict() for k, m in self.measurements.items()},
            "frc": self.frc.to_dict() if self.frc else None,
            "advice": self.advice.to_dict() if self.advice else None,
        }


def _as_recon(x: Any, key: str | None, name: str | None) -> Recon:
    if isinstance(x, Recon):
        return x
    if isinstance(x, (str, Path)):
        return read(x, key)
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        return to_recon(np.asarray(x), name or "array", "array")
    raise DiagnoseError(f"{name or type(x).__name__}: expected a path or an array, got {type(x).__name__}")


def diagnose_many(
    inputs: list[Any],
    *,
    key: str | None = None,
    detector: str = DEFAULT_DETECTOR,
    adapter: str | None = None,
    params: str | Path | CurrentParams | None = None,
    scan_step: float | None = None,
    half: Any = None,
    advisor: str | None = DEFAULT_ADVISOR,
    advisor_adapter: str | None = None,
    dataset: str | None = None,
    crop: int | None = None,
) -> list[Diagnosis]:
    """Diagnose several reconstructions (paths, folders or arrays); the detector and the
    advisor load once. ``advisor=None`` skips the advice; ``crop`` keeps the central
    ``crop`` x ``crop`` pixels of each (and of ``half``)."""
    items: list[Any] = []
    for x in inputs:
        if isinstance(x, (str, Path)):
            items.extend(expand([x]))
        else:
            items.append(x)
    recons = [_as_recon(x, key, f"array{i}") for i, x in enumerate(items)]
    if half is not None and len(recons) != 1:
        raise DiagnoseError(f"--half compares two halves of one reconstruction; {len(recons)} inputs were given")
    half_recon = _as_recon(half, key, "half") if half is not None else None
    if crop:
        recons = [centre_crop(r, crop) for r in recons]
        half_recon = centre_crop(half_recon, crop) if half_recon is not None else None
    cur = load_params(params) if isinstance(params, (str, Path)) else params
    images = [render(r.data) for r in recons]
    detections: list[Detection] = get_detector(detector, adapter, dataset).detect(images)
    out = []
    for r, img, det in zip(recons, images, detections):
        m, curve = measure(r, scan_step, half_recon)
        adv = None
        if advisor:
            label = r.path.name if r.path is not None else r.name
            if r.path is not None and r.name.startswith(f"{r.path}:"):  # the dataset inside the file
                label += r.name[len(str(r.path)) :]
            adv = advise(label, det.labels, m, cur, advisor, advisor_adapter, dataset)
        out.append(
            Diagnosis(
                name=r.name,
                source=r.source,
                shape=r.shape,
                kind=r.kind,
                labels=det.labels,
                probabilities=det.probabilities,
                thresholds=det.thresholds,
                detector=det.detector,
                measurements=m,
                frc=curve,
                advice=adv,
                image=img,
            )
        )
    return out


def diagnose(array_or_path: Any, **options: Any) -> Diagnosis:
    """Diagnose one reconstruction: a path (PNG/TIFF/.npy/.npz/HDF5/.ptyr) or an array
    (complex object or phase map). Options as :func:`diagnose_many`."""
    if isinstance(array_or_path, (str, Path)) and Path(array_or_path).is_dir():
        raise DiagnoseError(f"{array_or_path}: a folder; use diagnose_many for several files")
    return diagnose_many([array_or_path], **options)[0]
