"""The perturbation matrix: does each label fire on its own artifact, and only there?

Each artifact has a synthetic perturbation of the true object at graded severities
(``SEVERITIES``; the ones marked visible are large enough for a person to see in the
rendered image). Applied to the truth of every specimen kind, the perturbed object is
measured and labelled exactly as a reconstruction is (:mod:`.measure`, :mod:`.labels`).
No reconstruction is needed, so the matrix runs in seconds with numpy alone and is a CI
test; the validation report prints it.

Amplitudes are relative to the specimen's own displayed range ``d`` (radians), so a
severity means the same visible strength on a weak cell and on a wrapping crystal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..tasks import ARTIFACT_LABELS, NO_ARTIFACTS
from .labels import artifact_labels
from .measure import metrics
from .objects import SAMPLE_TYPES, make_object
from .render import display_window

Perturb = Callable[[np.ndarray, float, np.random.Generator, float], np.ndarray]


def _phase(t: np.ndarray) -> np.ndarray:
    return np.angle(t * np.exp(-1j * np.angle(t.mean())))


def _range(t: np.ndarray) -> float:
    lo, hi = display_window(t)
    return max(hi - lo, 0.1)


def _smooth_field(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
    return f / (f.std() + 1e-12)


def ramp(t, sev, rng, step):
    n = t.shape[-1]
    th = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:n, 0:n] / n
    end_to_end = max(sev * _range(t), 1.0)
    return t * np.exp(1j * end_to_end * (x * np.cos(th) + y * np.sin(th)) * n / 128)


def vortex_pairs(t, sev, rng, step):
    n = t.shape[-1]
    y, x = np.mgrid[0:n, 0:n].astype(float)
    out = t.copy()
    lo, hi = n // 2 - 54, n // 2 + 54
    for _ in range(int(sev)):
        cy, cx = rng.uniform(lo, hi, 2)
        a = rng.uniform(0, np.pi)
        d = rng.uniform(1.5, 3.0)
        for sign in (1, -1):
            py, px = cy + sign * d * np.sin(a), cx + sign * d * np.cos(a)
            out = out * np.exp(1j * sign * np.arctan2(y - py, x - px))
            out = out * (1 - np.exp(-((y - py) ** 2 + (x - px) ** 2) / 3.0))
    return out


def blur(t, sev, rng, step):
    return ndimage.gaussian_filter(t.real, sev) + 1j * ndimage.gaussian_filter(t.imag, sev)


def noise(t, sev, rng, step):
    s = sev * _range(t) * np.abs(t).mean() / np.sqrt(2)
    return t + s * (rng.standard_normal(t.shape) + 1j * rng.standard_normal(t.shape))


def grid(t, sev, rng, step):
    n = t.shape[-1]
    y, x = np.mgrid[0:n, 0:n].astype(float)
    p = rng.uniform(0, 2 * np.pi, 2)
    pattern = np.cos(2 * np.pi * y / step + p[0]) * np.cos(2 * np.pi * x / step + p[1])
    return t * np.exp(1j * sev * _range(t) * pattern)


def stripes(t, sev, rng, step):
    """A few straight streaks across the field, all in one direction."""
    n = t.shape[-1]
    y, x = np.mgrid[0:n, 0:n].astype(float)
    th = rng.uniform(0, np.pi)
    d = (y - n / 2) * np.cos(th) - (x - n / 2) * np.sin(th)
    pattern = np.zeros((n, n))
    for off in rng.uniform(-50, 50, int(rng.integers(3, 7))):
        pattern += np.exp(-((d - off) ** 2) / (2 * rng.uniform(0.6, 1.2) ** 2)) * rng.choice([-1, 1])
    return t * np.exp(1j * sev * _range(t) * pattern)


def background(t, sev, rng, step):
    f = _smooth_field(rng, t.shape[-1], t.shape[-1] / 6)
    return t * np.exp(1j * sev * _range(t) * f)


def reduced_contrast(t, sev, rng, step):
    """The specimen's contrast scaled by ``sev``, over the faint noise floor every real
    reconstruction has (without it an autoscaled viewer would undo the change)."""
    m = t.mean()
    z = m + sev * (t - m)
    s = 0.005 * _range(t) * np.abs(t).mean()
    return z + s * (rng.standard_normal(t.shape) + 1j * rng.standard_normal(t.shape))


def warp(t, sev, rng, step):
    n = t.shape[-1]
    dy = _smooth_field(rng, n, n / 10)
    dx = _smooth_field(rng, n, n / 10)
    scale = sev / max(np.abs(dy).max(), np.abs(dx).max(), 1e-9)
    y, x = np.mgrid[0:n, 0:n].astype(float)
    coords = [y + scale * dy, x + scale * dx]
    re = ndimage.map_coordinates(t.real, coords, order=1, mode="nearest")
    im = ndimage.map_coordinates(t.imag, coords, order=1, mode="nearest")
    return re + 1j * im


def rims(t, sev, rng, step):
    ph = _phase(t)
    rng_ = float(np.percentile(ph, 99) - np.percentile(ph, 1))
    fg = np.abs(ph - np.median(ph)) > 0.3 * max(rng_, 1e-3)
    rim = ndimage.binary_dilation(fg, iterations=5) & ~fg
    rim = ndimage.gaussian_filter(rim.astype(float), 1.0)
    return t * np.exp(-1j * sev * _range(t) * rim)


def destroyed(t, sev, rng, step):
    """Only a fraction ``sev`` of the specimen left, the rest replaced by smooth nonsense
    of the same phase range."""
    f = _smooth_field(rng, t.shape[-1], 3.0)
    other = np.abs(t).mean() * np.exp(1j * 0.5 * _range(t) * f)
    return sev * t + (1 - sev) * other


def phase_offset(t, sev, rng, step):
    return t * np.exp(1j * rng.uniform(0.5, 3.0))


def subpixel_shift(t, sev, rng, step):
    sy, sx = rng.uniform(0.2, 0.5, 2)
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(t), (sy, sx)))


@dataclass(frozen=True)
class Perturbation:
    name: str
    label: str | None  # the label it should produce (None: none at all)
    apply: Perturb
    severities: tuple[float, ...]
    visible: tuple[float, ...]  # the severities a person sees


PERTURBATIONS: tuple[Perturbation, ...] = (
    Perturbation("none", None, lambda t, s, r, st: t, (0.0,), (0.0,)),
    Perturbation("global phase offset", None, phase_offset, (0.0,), (0.0,)),
    Perturbation("sub-pixel shift", None, subpixel_shift, (0.0,), (0.0,)),
    Perturbation("linear phase", "Phase ramp", ramp, (0.5, 1.0, 2.0), (1.0, 2.0)),
    Perturbation("vortex pairs", "Singularity artifacts", vortex_pairs, (1, 2, 4), (2, 4)),
    Perturbation("Gaussian blur", "Blurring", blur, (1.0, 2.0, 3.0), (2.0, 3.0)),
    Perturbation("noise", "Noisy artifacts", noise, (0.05, 0.1, 0.2), (0.1, 0.2)),
    Perturbation("scan-step pattern", "Grid artifacts", grid, (0.05, 0.1, 0.2), (0.1, 0.2)),
    Perturbation("stripes", "Line artifacts", stripes, (0.1, 0.2, 0.4), (0.2, 0.4)),
    Perturbation("slow background", "Non-uniform background", background, (0.2, 0.4, 0.8), (0.4, 0.8)),
    Perturbation("reduced contrast", "Low contrast", reduced_contrast, (0.5, 0.35, 0.2), (0.35, 0.2)),
    Perturbation("local warps", "Local distortion", warp, (2.5, 4.0, 6.0), (4.0, 6.0)),
    Perturbation("rims around features", "Halo artifacts", rims, (0.2, 0.4, 0.8), (0.4, 0.8)),
    Perturbation("destroyed structure", "No clear structure", destroyed, (0.3, 0.15, 0.0), (0.15, 0.0)),
)

FIELD = 160  # object grid of the matrix: a sim-v2 field (128 px) with its margin
ROI = 128
STEP = 9.8


def matrix(seeds: int = 2, sample_types: tuple[str, ...] | None = None) -> list[dict]:
    """One row per (specimen kind, seed, perturbation, severity) with the labels given."""
    rows: list[dict] = []
    for st in sample_types or tuple(SAMPLE_TYPES):
        for seed in range(seeds):
            truth = make_object(st, np.random.default_rng([seed, 4242]), FIELD)[0].astype(np.complex128)
            for p in PERTURBATIONS:
                for k, sev in enumerate(p.severities):
                    rng = np.random.default_rng([seed, k, len(rows)])
                    rec = p.apply(truth, sev, rng, STEP)
                    m = metrics(rec, truth, ROI, STEP, "raster")
                    rows.append(
                        {
                            "sample_type": st,
                            "seed": seed,
                            "perturbation": p.name,
                            "severity": sev,
                            "visible": sev in p.visible,
                            "labels": sorted(artifact_labels(m)),
                            "metrics": m,
                        }
                    )
    return rows


def summary(rows: list[dict]) -> dict:
    """Per perturbation: the share of visible cases where its own label fired, the share
    where any other artifact label fired, and (for the clean ones) the share labelled
    "No obvious artifacts"."""
    out: dict[str, dict] = {}
    for p in PERTURBATIONS:
        mine = [r for r in rows if r["perturbation"] == p.name and r["visible"]]
        if not mine:
            continue
        own = None if p.label is None else float(np.mean([p.label in r["labels"] for r in mine]))
        others = [
            lab for r in mine for lab in r["labels"] if lab not in (p.label, NO_ARTIFACTS) and lab in ARTIFACT_LABELS
        ]
        other_rate = float(np.mean([any(lab not in (p.label, NO_ARTIFACTS) for lab in r["labels"]) for r in mine]))
        out[p.name] = {
            "label": p.label,
            "n": len(mine),
            "own": own,
            "other": other_rate,
            "clean": float(np.mean([r["labels"] == [NO_ARTIFACTS] for r in mine])),
            "other_labels": {lab: others.count(lab) for lab in sorted(set(others))},
        }
    return out


TARGET_OWN = 0.90
TARGET_OTHER = 0.05
TARGET_CLEAN = 0.95


def markdown(rows: list[dict]) -> str:
    """The matrix as the validation report prints it: firing rate of every label per
    perturbation (visible severities), the targets, and whether each is met."""
    s = summary(rows)
    labels = [lab for lab in ARTIFACT_LABELS]
    short = [lab.replace(" artifacts", "").replace("Non-uniform background", "Background") for lab in labels]
    kinds = sorted({r["sample_type"] for r in rows})
    seeds = len({r["seed"] for r in rows})
    out = [
        "# Perturbation matrix",
        "",
        f"Truths of {len(kinds)} specimen kinds x {seeds} seeds, each perturbed at the severities "
        "a person sees (see `sim/perturb.py`), measured and labelled as reconstructions are. Cells: "
        "% of cases in which the label fires. Targets: own label >= "
        f"{100 * TARGET_OWN:.0f}%, any other <= {100 * TARGET_OTHER:.0f}%, clean inputs "
        f'"No obvious artifacts" >= {100 * TARGET_CLEAN:.0f}%.',
        "",
        "| perturbation | n | " + " | ".join(short) + " | own | other | met |",
        "|---" * (len(short) + 5) + "|",
    ]
    for p in PERTURBATIONS:
        mine = [r for r in rows if r["perturbation"] == p.name and r["visible"]]
        if not mine:
            continue
        cells = [f"{100 * np.mean([lab in r['labels'] for r in mine]):.0f}" for lab in labels]
        v = s[p.name]
        if p.label is None:
            met = v["clean"] >= TARGET_CLEAN
            own = f"clean {100 * v['clean']:.0f}%"
        else:
            met = v["own"] >= TARGET_OWN and v["other"] <= TARGET_OTHER
            own = f"{100 * v['own']:.0f}%"
        out.append(
            f"| {p.name} | {len(mine)} | "
            + " | ".join(cells)
            + f" | {own} | {100 * v['other']:.0f}% | "
            + ("yes" if met else "**no**")
            + " |"
        )
    return "\n".join(out) + "\n"
