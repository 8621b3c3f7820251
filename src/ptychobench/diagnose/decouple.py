"""Single-defect training images, so the detector learns each artifact on its own.

In sim-v2's artifact train split, 16 of the 25 "Phase ramp" images also carry
"Singularity artifacts" (both follow from the same failed reconstructions), so a probe
fitted on it learns the pair, not the ramp: a pure ramp gets 0.08. Here clean training
images (labelled "No obvious artifacts" only) are given one defect each, with the
dataset's own rule for when it is visible (:mod:`ptychobench.sim.labels`: a ramp of at
least 0.6 of the displayed window and 0.8 rad; at least 4 vortices), and added to the
probe's training set with that one label. The added images come from the TRAIN split only
and go through the same viewer (:func:`ptychobench.sim.render.render_phase`).

A viewer's 8-bit image carries no radians; its grey range is read as a window of
``WINDOW_RAD`` (the middle of sim-v2's displayed windows), which sets the size of the
ramps and the wrap of the vortices.
"""

from __future__ import annotations

import numpy as np

from ..tasks import NO_ARTIFACTS

RAMP = "Phase ramp"
SINGULARITY = "Singularity artifacts"
WINDOW_RAD = 2.0
#: of the clean train images, how many get a ramp and how many get vortices (each a fresh copy)
N_EACH = 48


def _phase(grey: np.ndarray) -> np.ndarray:
    return (grey.astype(np.float64) / 255.0 - 0.5) * WINDOW_RAD


def with_ramp(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A complex object (wrapped) or a float phase (unwrapped) with a plane of 1.5 to 6
    times the window end to end, in a random direction."""
    n0, n1 = grey.shape
    yy, xx = np.mgrid[0:n0, 0:n1]
    theta = rng.uniform(0, 2 * np.pi)
    total = rng.uniform(1.5, 6.0) * WINDOW_RAD
    plane = (np.cos(theta) * yy / n0 + np.sin(theta) * xx / n1) * total
    ph = _phase(grey) + plane
    return np.exp(1j * ph) if rng.random() < 0.5 else ph


def with_vortices(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A complex object with 4 to 10 phase vortices of random charge (+-1) at random
    places, each with the dark core a real vortex has."""
    n0, n1 = grey.shape
    yy, xx = np.mgrid[0:n0, 0:n1]
    field = np.exp(1j * _phase(grey))
    core = max(n0, n1) / 40
    for _ in range(int(rng.integers(4, 11))):
        cy, cx = rng.uniform(0.15, 0.85) * n0, rng.uniform(0.15, 0.85) * n1
        z = (xx - cx) + 1j * (yy - cy)
        r = np.abs(z)
        charge = 1 if rng.random() < 0.5 else -1
        field = field * (z / np.maximum(r, 1e-9)) ** charge * (1 - np.exp(-((r / core) ** 2)))
    return field


def single_defect_images(
    images: list[np.ndarray], labels: list[frozenset[str]], seed: int = 0
) -> list[tuple[np.ndarray, str]]:
    """(object, its one label) for ``N_EACH`` ramps and ``N_EACH`` vortex sets made from the
    clean images among ``images`` (8-bit grey), reproducibly."""
    rng = np.random.default_rng(seed)
    clean = [im for im, lab in zip(images, labels) if set(lab) <= {NO_ARTIFACTS}]
    if not clean:
        return []
    pick = rng.permutation(len(clean))
    out: list[tuple[np.ndarray, str]] = []
    for i in range(N_EACH):
        out.append((with_ramp(clean[pick[i % len(clean)]], rng), RAMP))
    for i in range(N_EACH):
        out.append((with_vortices(clean[pick[(i + N_EACH) % len(clean)]], rng), SINGULARITY))
    return out
