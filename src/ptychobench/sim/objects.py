"""Procedural specimens: complex transmission functions of the kinds beamlines image.

Every generator takes a seeded ``numpy.random.Generator`` and a grid size and returns
``(amplitude, phase)`` on that grid; :func:`make_object` turns them into a complex
transmission ``amplitude * exp(1j * phase)``. Phase ranges follow the physics of each
kind of specimen: a cell is a weak phase object (a few tenths of a radian), a battery
particle or a crystal is thick enough to wrap the phase.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

Generator = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:n, 0:n].astype(float)
    return y, x


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
    return f / (f.std() + 1e-12)


def _sphere_thickness(y, x, cy, cx, r) -> np.ndarray:
    d2 = (y - cy) ** 2 + (x - cx) ** 2
    return np.sqrt(np.clip(r * r - d2, 0, None)) / max(r, 1e-6)


def integrated_circuit(rng, n):
    """Manhattan wiring on two metal layers with vias: sharp edges, moderate phase."""
    t = np.zeros((n, n))
    pitch = int(rng.integers(7, 12))
    for layer, horizontal in ((0.55, True), (0.45, False)):
        for k in range(pitch // 2, n, pitch):
            if rng.random() < 0.35:
                continue
            w = int(rng.integers(2, max(3, pitch // 2)))
            a, b = sorted(rng.integers(0, n, 2))
            if b - a < n // 5:
                a, b = 0, n
            sl = (slice(k, k + w), slice(a, b)) if horizontal else (slice(a, b), slice(k, k + w))
            t[sl] = np.maximum(t[sl], layer)
    for _ in range(int(rng.integers(10, 30))):
        cy, cx = rng.integers(4, n - 4, 2)
        s = int(rng.integers(2, 4))
        t[cy - s : cy + s, cx - s : cx + s] = 1.0
    t = ndimage.gaussian_filter(t, 0.6)
    phase_max = rng.uniform(0.8, 1.6)
    return 1.0 - 0.25 * t, phase_max * t


def ncm_battery(rng, n):
    """Polycrystalline NCM spheres with grain contrast and cracks: thick, wrapping phase."""
    y, x = _grid(n)
    t = np.zeros((n, n))
    for _ in range(int(rng.integers(2, 6))):
        r = rng.uniform(0.12, 0.28) * n
        cy, cx = rng.uniform(0.15, 0.85, 2) * n
        t = np.maximum(t, _sphere_thickness(y, x, cy, cx, r))
    # grains: a Voronoi-like tessellation from random seeds
    seeds = rng.uniform(0, n, (40, 2))
    d = (y[..., None] - seeds[:, 0]) ** 2 + (x[..., None] - seeds[:, 1]) ** 2
    grain = rng.uniform(0.85, 1.15, len(seeds))[np.argmin(d, axis=-1)]
    t = t * grain
    for _ in range(int(rng.integers(1, 4))):  # cracks
        cy, cx = rng.uniform(0.2, 0.8, 2) * n
        ang = rng.uniform(0, np.pi)
        dist = np.abs((y - cy) * np.cos(ang) - (x - cx) * np.sin(ang))
        along = np.abs((y - cy) * np.sin(ang) + (x - cx) * np.cos(ang))
        t[(dist < rng.uniform(0.6, 1.5)) & (along < rng.uniform(0.1, 0.3) * n)] *= 0.15
    t = ndimage.gaussian_filter(t, 0.7)
    phase_max = rng.uniform(0.8, 2.2)
    return np.exp(-0.15 * t), phase_max * t


def biological_cell(rng, n):
    """Weak phase cell: membrane, cytoplasm, nucleus and small organelles."""
    y, x = _grid(n)
    cy, cx = rng.uniform(0.4, 0.6, 2) * n
    a, b = rng.uniform(0.28, 0.42, 2) * n
    ang = rng.uniform(0, np.pi)
    yy = (y - cy) * np.cos(ang) - (x - cx) * np.sin(ang)
    xx = (y - cy) * np.sin(ang) + (x - cx) * np.cos(ang)
    rho = np.sqrt((yy / a) ** 2 + (xx / b) ** 2) + 0.06 * _smooth_noise(rng, n, 6)
    t = 0.5 * (1 - np.tanh((rho - 1) * 12))
    t += 0.5 * np.exp(-((rho - 1) ** 2) / 0.002)  # membrane
    ny, nx = cy + rng.uniform(-0.1, 0.1) * n, cx + rng.uniform(-0.1, 0.1) * n
    t += 0.8 * _sphere_thickness(y, x, ny, nx, 0.12 * n)
    for _ in range(int(rng.integers(8, 20))):
        r = rng.uniform(2, 5)
        oy, ox = cy + rng.uniform(-0.7, 0.7) * a, cx + rng.uniform(-0.7, 0.7) * b
        t += rng.uniform(0.3, 0.8) * _sphere_thickness(y, x, oy, ox, r)
    t += 0.08 * _smooth_noise(rng, n, 2) * (t > 0.2)
    t = ndimage.gaussian_filter(t, 0.8)
    phase_max = rng.uniform(0.15, 0.45)
    return np.exp(-0.02 * t), phase_max * t


def catalyst_nanoparticles(rng, n):
    """Dense metal nanoparticles on a thin, slightly rough support film."""
    y, x = _grid(n)
    support = 0.3 + 0.05 * _smooth_noise(rng, n, 8)
    p = np.zeros((n, n))
    for _ in range(int(rng.integers(25, 60))):
        r = rng.uniform(2.0, 5.5)
        cy, cx = rng.uniform(0.05, 0.95, 2) * n
        p = np.maximum(p, _sphere_thickness(y, x, cy, cx, r))
    p = ndimage.gaussian_filter(p, 0.5)
    phase = 0.5 * support + rng.uniform(0.8, 1.6) * p
    return np.exp(-0.05 * support - rng.uniform(0.2, 0.5) * p), phase


def siemens_star(rng, n):
    """Resolution target: a Siemens star with 16-36 spokes."""
    y, x = _grid(n)
    cy, cx = (0.5 + rng.uniform(-0.06, 0.06, 2)) * n
    theta = np.arctan2(y - cy, x - cx) + rng.uniform(0, np.pi)
    r = np.hypot(y - cy, x - cx)
    spokes = int(rng.integers(8, 19))
    t = (np.sin(spokes * theta) > 0).astype(float)
    t *= (r < rng.uniform(0.42, 0.55) * n) & (r > 2)
    t = ndimage.gaussian_filter(t, 0.5)
    return 1.0 - 0.1 * t, rng.uniform(0.8, 1.4) * t


def zone_plate(rng, n):
    """A Fresnel zone plate: concentric zones of radius sqrt(k) * r1."""
    y, x = _grid(n)
    cy, cx = (0.5 + rng.uniform(-0.15, 0.15, 2)) * n
    r = np.hypot(y - cy, x - cx)
    r1 = rng.uniform(10, 15)
    zone = np.floor((r / r1) ** 2).astype(int)
    # outermost zone no finer than ~1.5 px (zone width r1^2 / 2r), else it aliases
    r_out = min(rng.uniform(0.35, 0.55) * n, r1**2 / 3.0)
    t = ((zone % 2) == 1).astype(float) * (r < r_out)
    t = ndimage.gaussian_filter(t, 0.5)
    return 1.0 - 0.2 * t, rng.uniform(0.9, 1.8) * t


def porous_foam(rng, n):
    """Open-cell foam: thresholded correlated noise, pores are empty."""
    f = _smooth_noise(rng, n, rng.uniform(3, 6))
    solid = ndimage.gaussian_filter((f > rng.uniform(-0.3, 0.3)).astype(float), 0.8)
    t = solid * (1 + 0.2 * _smooth_noise(rng, n, 2))
    return np.exp(-0.1 * t), rng.uniform(0.6, 1.4) * t


def fibres(rng, n):
    """Random straight and gently curved fibres (cylinders seen side on)."""
    y, x = _grid(n)
    t = np.zeros((n, n))
    for _ in range(int(rng.integers(5, 14))):
        r = rng.uniform(1.5, 5)
        cy, cx = rng.uniform(0, n, 2)
        ang = rng.uniform(0, np.pi)
        curv = rng.uniform(-0.004, 0.004)
        along = (y - cy) * np.sin(ang) + (x - cx) * np.cos(ang)
        dist = np.abs((y - cy) * np.cos(ang) - (x - cx) * np.sin(ang) - curv * along**2)
        t = np.maximum(t, np.sqrt(np.clip(1 - (dist / r) ** 2, 0, None)) * r / 5)
    return np.exp(-0.08 * t), rng.uniform(0.7, 1.5) * t


def strong_phase_crystal(rng, n):
    """Faceted crystals thick enough that the phase wraps several times."""
    y, x = _grid(n)
    t = np.zeros((n, n))
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.25, 0.75, 2) * n
        r = rng.uniform(0.15, 0.3) * n
        k = int(rng.integers(4, 7))
        ang0 = rng.uniform(0, 2 * np.pi)
        inside = np.ones((n, n), bool)
        for j in range(k):
            a = ang0 + 2 * np.pi * j / k
            inside &= (y - cy) * np.sin(a) + (x - cx) * np.cos(a) < r
        slope = rng.uniform(-0.02, 0.02, 2)
        t = np.maximum(t, inside * (1 + slope[0] * (y - cy) + slope[1] * (x - cx)))
    t = ndimage.gaussian_filter(t, 0.7)
    return np.exp(-0.15 * t), rng.uniform(4.0, 8.0) * t


SAMPLE_TYPES: dict[str, Generator] = {
    "integrated circuit": integrated_circuit,
    "NCM battery particles": ncm_battery,
    "biological cell": biological_cell,
    "catalyst nanoparticles": catalyst_nanoparticles,
    "Siemens star": siemens_star,
    "zone plate": zone_plate,
    "porous foam": porous_foam,
    "fibres": fibres,
    "strong-phase crystal": strong_phase_crystal,
}


def make_object(sample_type: str, rng: np.random.Generator, n: int, n_slices: int = 1) -> np.ndarray:
    """Complex transmission of shape ``(n_slices, n, n)``; thick samples split over slices.

    For several slices each slice holds an independent specimen of the same kind (the
    absorption shared out, 70% of the phase each), so propagation inside the sample matters.
    """
    gen = SAMPLE_TYPES[sample_type]
    slices = []
    for _ in range(n_slices):
        amp, phase = gen(rng, n)
        amp = np.clip(amp, 0.05, 1.0) ** (1.0 / n_slices)
        slices.append(amp * np.exp(1j * phase * 0.7))
    return np.stack(slices).astype(np.complex64)
