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
from .detector import DEFAULT_DETECTOR, NOVEL_SIMILARITY, Detection, get_detector, render
from .evidence import colour_of, input_warnings, reconcile
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
    detector_labels: list[str] = field(default_factory=list)  # before the decisive measurements
    notes: list[str] = field(default_factory=list)  # one line per detector/measurement disagreement
    warnings: list[str] = field(default_factory=list)  # why this may not be a reconstruction
    similarity: float | None = None  # to the nearest training image (detector features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (the rendered image left out)."""
        return {
            "name": self.name,
            "source": self.source,
            "shape": list(self.shape),
            "kind": self.kind,
            "detector": self.detector,
            "labels": self.labels,
            "detector_labels": self.detector_labels,
            "notes": self.notes,
            "warnings": self.warnings,
            "similarity": self.similarity,
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
    force: bool = False,
    near_field: bool | None = None,
) -> list[Diagnosis]:
    """Diagnose several reconstructions (paths, folders or arrays); the detector and the
    advisor load once. ``advisor=None`` skips the advice; ``crop`` keeps the central
    ``crop`` x ``crop`` pixels of each (and of ``half``).

    Labels follow the decisive measurements (:mod:`.evidence`), with a note wherever the
    detector disagrees. An input that does not look like a reconstruction (a colour
    picture, a photograph, an amplitude-only map) gets warnings and no labels or advice
    unless ``force``. Without ``params`` the advice is marked generic. ``near_field`` (or
    ``near_field: true`` in the params) words the advice for holograms and lets the FRC
    skip its low-frequency gap."""
    items: list[Any] = []
    for x in inputs:
        if isinstance(x, (str, Path)):
            items.extend(expand([x]))
        else:
            items.append(x)
    colours = [colour_of(x) for x in items]
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
    if near_field is None:
        near_field = bool(cur.extras.get("near_field")) if cur is not None else False
    for r, img, det, colour in zip(recons, images, detections, colours):
        m, curve = measure(r, scan_step, half_recon, near_field=near_field)
        labels, notes = reconcile(det.labels, det.probabilities, det.thresholds, m)
        warnings = input_warnings(r, colour, det.similarity, NOVEL_SIMILARITY, m)
        withheld = bool(warnings) and not force
        if withheld:
            labels = []
            notes = [
                *notes,
                "labels and advice withheld: not a reconstruction, it seems (--force labels it)",
            ]
        adv = None
        if advisor and not withheld:
            label = r.path.name if r.path is not None else r.name
            if r.path is not None and r.name.startswith(f"{r.path}:"):  # the dataset inside the file
                label += r.name[len(str(r.path)) :]
            adv = advise(label, labels, m, cur, advisor, advisor_adapter, dataset, near_field)
        out.append(
            Diagnosis(
                name=r.name,
                source=r.source,
                shape=r.shape,
                kind=r.kind,
                labels=labels,
                probabilities=det.probabilities,
                thresholds=det.thresholds,
                detector=det.detector,
                measurements=m,
                frc=curve,
                advice=adv,
                image=img,
                detector_labels=det.labels,
                notes=notes,
                warnings=warnings,
                similarity=det.similarity,
            )
        )
    return out


def diagnose(array_or_path: Any, **options: Any) -> Diagnosis:
    """Diagnose one reconstruction: a path (PNG/TIFF/.npy/.npz/HDF5/.ptyr) or an array
    (complex object or phase map). Options as :func:`diagnose_many`."""
    if isinstance(array_or_path, (str, Path)) and Path(array_or_path).is_dir():
        raise DiagnoseError(f"{array_or_path}: a folder; use diagnose_many for several files")
    return diagnose_many([array_or_path], **options)[0]
