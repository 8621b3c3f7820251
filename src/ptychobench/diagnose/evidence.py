"""Labels that agree with the measurements, and whether the input is a reconstruction at all.

The detector looks at a rendered picture; three measurements are decisive on their own
where they are far beyond what a specimen alone gives. The thresholds come from sim-v2's
test split (docs/diagnose.md, "Labels and measurements"; ``benchmarks/validate_diagnose.py``):

* a plane fitted to the phase that spans more than the specimen's phase range
  (``RAMP_REL`` x, and ``RAMP_MIN_RAD`` radians, the dataset's floor) is a phase ramp
  (no image without a ramp measured above 0.68 there), and one under ``RAMP_REL_LOW`` of
  the range is none (every labelled ramp measured 0.11 or more);
* ``MIN_VORTICES`` or more phase residues are singularities (the dataset's rule), and none
  at all (where they can be counted) means there are none;
* a scan-lattice peak of ``GRID_PEAK`` times its surroundings is a grid (the images
  without one reach 73).

Where the detector and a decisive measurement disagree, the label follows the measurement
and a one-line note says so; where the measurement is not decisive, the detector's label
stands and a disagreement is still noted.

:func:`input_warnings` says when an input is no reconstruction (a colour picture, a
photograph, an amplitude-only map): then no labels are given unless the user forces them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..sim.labels import RAMP_MIN_RAD, THRESHOLDS
from ..tasks import NO_ARTIFACTS
from .io import IMAGE_SUFFIXES, TIFF_SUFFIXES, Recon
from .measure import Measurement

RAMP = "Phase ramp"
SINGULARITY = "Singularity artifacts"
GRID = "Grid artifacts"
RAMP_REL = 1.0  # the ramp end to end above the specimen's phase range
MIN_VORTICES = int(THRESHOLDS[SINGULARITY][2])  # 4, the dataset's rule
GRID_PEAK = 100.0
#: below this the ramp is too small to show (decisive); below GRID_LOW_PEAK the lattice
#: says "no", not decisively (noted, not applied)
RAMP_REL_LOW = 0.05
GRID_LOW_PEAK = 2.0
#: amplitude-only map: non-negative values all within this fraction of their median of it
AMPLITUDE_BAND = 1.0
#: a complex object whose phase varies less than this (rad, standard deviation) has no phase image
FLAT_PHASE_RAD = 0.01


def _v(m: dict[str, Measurement], key: str) -> float | None:
    x = m.get(key)
    return None if x is None or x.value is None else float(x.value)


def measured_verdicts(m: dict[str, Measurement]) -> dict[str, tuple[bool | None, bool, str]]:
    """label -> (present?, decisive?, why) for the labels a measurement speaks to; present
    None: the measurement cannot say."""
    out: dict[str, tuple[bool | None, bool, str]] = {}
    ramp, rel = _v(m, "ramp"), _v(m, "ramp_rel")
    if ramp is not None and rel is not None:
        unit = m["ramp"].unit.replace(" across the field", "")
        big = rel >= RAMP_REL and (unit != "rad" or ramp >= RAMP_MIN_RAD)
        why = f"measured ramp {ramp:.3g} {unit} end to end, {rel:.2f} x the phase range"
        if big:
            out[RAMP] = (True, True, f"{why} (a ramp from {RAMP_REL:g} x: it spans more than the specimen)")
        elif rel < RAMP_REL_LOW:
            out[RAMP] = (False, True, f"{why} (below {RAMP_REL_LOW:g} x no ramp shows)")
    n = _v(m, "vortices")
    if n is not None:
        if n >= MIN_VORTICES:
            out[SINGULARITY] = (True, True, f"{n:.0f} phase vortices counted (singularities from {MIN_VORTICES})")
        elif n == 0:
            out[SINGULARITY] = (False, True, "no phase vortex counted")
    peak = _v(m, "grid_peak")
    if peak is not None:
        if peak >= GRID_PEAK:
            out[GRID] = (
                True,
                True,
                f"scan-lattice peak {peak:.3g} x its surroundings (a grid from {GRID_PEAK:g})",
            )
        elif peak < GRID_LOW_PEAK:
            out[GRID] = (False, False, f"scan-lattice peak {peak:.3g} x its neighbourhood (no lattice)")
    return out


def reconcile(
    labels: list[str],
    probabilities: dict[str, float] | None,
    thresholds: dict[str, Any] | None,
    m: dict[str, Measurement],
) -> tuple[list[str], list[str]]:
    """The labels after the decisive measurements, and one note per disagreement."""
    from ..tasks import ARTIFACT_LABELS

    have = set(labels) - {NO_ARTIFACTS}
    notes = []
    for label, (present, decisive, why) in measured_verdicts(m).items():
        said = label in have
        if present is None or present == said:
            continue
        p = (probabilities or {}).get(label)
        t = (thresholds or {}).get(label)
        det = "the detector " + ("finds it" if said else "does not")
        if p is not None:
            det += f" (probability {p:.2f}, threshold {'never' if t is None else f'{t:.2f}'})"
        if decisive:
            (have.add if present else have.discard)(label)
            verdict = "labelled from the measurement"
        else:
            verdict = "the detector's label stands (the measurement is not decisive here)"
        notes.append(f"{label}: {det}, but the {why}: {verdict}")
    out = [lab for lab in ARTIFACT_LABELS if lab in have]
    return out or [NO_ARTIFACTS], notes


# --------------------------------------------------------------------------- is it a reconstruction?


def colour_of(x: Any) -> bool:
    """True when ``x`` (a path or an array) is a colour picture: its channels differ. A
    phase map saved as RGB with equal channels is grey and passes."""
    a = None
    if isinstance(x, (str, Path)):
        p = Path(x)
        suffix = p.suffix.lower()
        try:
            if suffix in IMAGE_SUFFIXES:
                from PIL import Image

                with Image.open(p) as im:
                    if im.mode in ("L", "I", "I;16", "F", "1", "LA"):
                        return False
                    a = np.asarray(im.convert("RGB"))
            elif suffix in TIFF_SUFFIXES:
                import tifffile

                a = np.asarray(tifffile.imread(p))
        except Exception:  # noqa: BLE001 - unreadable files are io.read's to report
            return False
    elif isinstance(x, np.ndarray):
        a = x
    if a is None or a.ndim != 3 or a.shape[-1] not in (3, 4) or a.dtype.kind not in "bu":
        return False
    rgb = a[..., :3].astype(np.int32)
    spread = np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).max(axis=-1)
    return bool((spread > 8).mean() > 0.02)


def input_warnings(
    recon: Recon, colour: bool, similarity: float | None, novel_below: float, m: dict[str, Measurement]
) -> list[str]:
    """Why this input does not look like a reconstruction's phase (empty: it does).

    A grey picture unlike every training image (detector features) is flagged only when no
    decisive measurement explains it: a reconstruction dominated by a ramp or vortices
    looks unlike the training images too, and is a reconstruction with that artifact."""
    out = []
    if colour:
        out.append("a colour (RGB) picture: a phase image is grey; this looks like a photograph or a chart")
    a = recon.data
    if recon.kind == "phase":
        med = float(np.median(a))
        if float(a.min()) >= 0 and med > 0 and float(np.ptp(a)) < AMPLITUDE_BAND * med:
            out.append(
                f"a non-negative map with values {float(a.min()):.3g}-{float(a.max()):.3g} around {med:.3g}: "
                "an amplitude (transmission) map, not a phase in radians"
            )
    elif recon.kind == "complex":
        ph = np.angle(a * np.exp(-1j * np.angle(a.mean())))
        amp = np.abs(a)
        if float(ph.std()) < FLAT_PHASE_RAD and float(amp.std()) > FLAT_PHASE_RAD * float(amp.mean()):
            out.append("a complex object whose phase is flat: an amplitude-only object, no phase image to diagnose")
    explained = any(present and decisive for present, decisive, _ in measured_verdicts(m).values())
    if recon.kind == "image" and similarity is not None and similarity < novel_below and not explained:
        out.append(
            f"a grey picture unlike every training reconstruction (feature similarity {similarity:.2f}, "
            f"below {novel_below:g}): it looks like a photograph, not a phase image"
        )
    return out
