"""Every labelling rule of the simulated datasets, in one place.

The build, the validation report, the perturbation matrix and the tests read the rules
from here, and the build writes :func:`rules` into the dataset's manifest together with
``LABELLING_VERSION``, so a dataset says exactly how its labels were made.

Artifact labels: a label holds when its measurement (see :mod:`.measure`) passes its
threshold AND the artifact is visible in the displayed image, which the measurements
express as a fraction of the viewer's grey range. Thresholds were calibrated on a
calibration build with seeds disjoint from the shipped splits (``generate --calibration``)
and on the perturbation matrix (:mod:`.perturb`), then frozen.

Option labels: an option is a label when it lowers the error against the truth by at
least ``GAIN_MARGIN`` (relative) and ``MIN_ABS_GAIN`` (absolute), by more than
``SPREAD_FACTOR`` times the seed-to-seed spread, and a one-sided paired test over
``N_SEEDS`` repeated reconstructions gives p < ``MAX_P``. A single-seed screen stops early
when the gain is clearly below the margin (``SCREEN_FRACTION`` of it).
"""

from __future__ import annotations

from typing import Any

from ..tasks import ARTIFACT_LABELS, NO_ARTIFACTS

LABELLING_VERSION = "2.1"

# label -> (measurement, comparison, threshold); every measurement named here is in
# measure.metrics. "vis" quantities are fractions of the displayed grey range.
THRESHOLDS: dict[str, tuple[str, str, float]] = {
    "Phase ramp": ("ramp", ">=", 0.6),
    "Singularity artifacts": ("vortices", ">=", 4),
    "Blurring": ("blur_px", ">=", 1.75),
    "Noisy artifacts": ("noise", ">=", 0.065),
    "Non-uniform background": ("background", ">=", 0.1),
    "Grid artifacts": ("grid", ">=", 0.035),
    "Line artifacts": ("lines", ">=", 0.12),
    "Halo artifacts": ("halo", ">=", 0.15),
    "Local distortion": ("distortion_px", ">=", 2.0),
    "Low contrast": ("contrast", "<", 0.55),
    "No clear structure": ("corr_fit", "<", 0.45),
}
# floors that keep a label to what can be seen
RAMP_MIN_RAD = 0.8  # a ramp of less than this is hidden by any specimen's own relief
LINES_MIN_CONCENTRATION = 3.0  # streak power over the truth's own directional power
GRID_MIN_PEAK = 5.0  # lattice peak over its neighbourhood's median in the error spectrum
GRID_OVER_TRUTH = 1.5  # ... and over the specimen's own peak there (an IC's pitch can match the step)
BLUR_MIN_FINE = 0.05  # the truth must have fine detail for blur to show
BLUR_MAX_PX = 6.0  # the widest blur tried: at the cap the image is failure, not blur
MIN_CORR_FOR_DETAIL = 0.6  # streaks, halos and distortion are judged on a recognisable image
FAINT_CORR = 0.6  # specimen recognisable but faint against everything else shown: low contrast

# parameter options
GAIN_MARGIN = 0.10
MIN_ABS_GAIN = 0.005
N_SEEDS = 3
SPREAD_FACTOR = 2.0
MAX_P = 0.05
SCREEN_FRACTION = 0.5
# mutually exclusive options: never both labels (the larger verified gain wins)
EXCLUSIVE = (
    ("H", "N"),  # increase / reduce batch size
    ("A", "N"),  # one batch / smaller batches
    ("E", "B"),  # momentum on / off
    ("F", "C"),  # multimodal update on / off
    ("G", "D"),  # position correction on / off
    ("T", "S"),  # OPR on / off
    ("I", "S"),  # more OPR modes / no OPR
    ("V", "X"),  # compact / uniform batch selection
)


def _passes(value: float, op: str, thr: float) -> bool:
    return value < thr if op == "<" else value >= thr


def artifact_labels(m: dict[str, Any]) -> frozenset[str]:
    """The visible artifact labels of one reconstruction's measurements."""
    out = {lab for lab, (key, op, thr) in THRESHOLDS.items() if _passes(float(m[key]), op, thr)}
    if m["ramp_rad"] < RAMP_MIN_RAD:
        out.discard("Phase ramp")
    if m["lines_concentration"] < LINES_MIN_CONCENTRATION:
        out.discard("Line artifacts")
    if m["grid_peak"] < GRID_MIN_PEAK or m["grid_peak"] < GRID_OVER_TRUTH * m["grid_truth_peak"]:
        out.discard("Grid artifacts")
    if FAINT_CORR > m["corr_fit"] >= THRESHOLDS["No clear structure"][2]:
        out.add("Low contrast")
    if m["fine_structure"] < BLUR_MIN_FINE:
        out.discard("Blurring")
    if m["blur_px"] >= BLUR_MAX_PX and m["corr_fit"] < 0.7:
        out.add("No clear structure")
    if "No clear structure" in out:
        out -= {"Low contrast", "Blurring", "Local distortion", "Halo artifacts", "Line artifacts"}
    elif m["corr_fit"] < MIN_CORR_FOR_DETAIL:
        out -= {"Line artifacts", "Halo artifacts", "Local distortion"}
    if not out:
        out.add(NO_ARTIFACTS)
    assert out <= set(ARTIFACT_LABELS)
    return frozenset(out)


def rules() -> dict[str, Any]:
    """Everything above, JSON-able, for the manifest."""
    return {
        "labelling_version": LABELLING_VERSION,
        "artifact_thresholds": {k: list(v) for k, v in THRESHOLDS.items()},
        "floors": {
            "ramp_min_rad": RAMP_MIN_RAD,
            "lines_min_concentration": LINES_MIN_CONCENTRATION,
            "grid_min_peak": GRID_MIN_PEAK,
            "grid_over_truth": GRID_OVER_TRUTH,
            "blur_min_fine": BLUR_MIN_FINE,
            "blur_max_px": BLUR_MAX_PX,
            "min_corr_for_detail": MIN_CORR_FOR_DETAIL,
            "faint_corr": FAINT_CORR,
        },
        "options": {
            "gain_margin": GAIN_MARGIN,
            "min_abs_gain": MIN_ABS_GAIN,
            "n_seeds": N_SEEDS,
            "spread_factor": SPREAD_FACTOR,
            "max_p": MAX_P,
            "screen_fraction": SCREEN_FRACTION,
            "exclusive": [list(p) for p in EXCLUSIVE],
        },
    }
