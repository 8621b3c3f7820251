"""diagnose: truth-free measurements on constructed fields with known values."""

from __future__ import annotations

import numpy as np
import pytest

from ptychobench.diagnose.io import to_recon
from ptychobench.diagnose.measure import frc, measure

N = 128
YY, XX = np.mgrid[0:N, 0:N]


def _specimen(seed: int = 0) -> np.ndarray:
    """A few flat features on a flat background: what the ramp fit must see through."""
    s = np.zeros((N, N))
    s[30:60, 40:90] = 1.0
    s[80:100, 20:50] = -0.7
    s[(YY - 95) ** 2 + (XX - 95) ** 2 < 15**2] = 0.5
    return s + 0.02 * np.random.default_rng(seed).standard_normal((N, N))


@pytest.mark.parametrize("gy,gx", [(0.0, 0.08), (0.05, -0.03), (0.12, 0.1)])
def test_ramp_plane_fit_recovers_a_known_ramp_through_wraps(gy: float, gx: float) -> None:
    ph = _specimen() + gy * YY + gx * XX  # up to ~20 rad: wraps many times
    m, _ = measure(to_recon(np.exp(1j * ph), "ramp"))
    want = np.hypot(gy * N, gx * N)
    assert m["ramp"].value == pytest.approx(want, rel=0.03)
    assert m["ramp"].unit.startswith("rad")
    flat, _ = measure(to_recon(np.exp(1j * _specimen()), "flat"))
    assert flat["ramp"].value < 0.3


def test_ramp_on_a_phase_map_and_a_grey_image() -> None:
    ph = _specimen() + 0.02 * XX
    m, _ = measure(to_recon(ph, "phase"))
    assert m["ramp"].value == pytest.approx(0.02 * N, rel=0.03)
    grey = np.round((ph - ph.min()) / np.ptp(ph) * 255).astype(np.uint8)
    g, _ = measure(to_recon(grey, "grey"))
    assert g["ramp"].unit.startswith("grey level")
    assert g["ramp"].value == pytest.approx(0.02 * N * 255 / np.ptp(ph), rel=0.1)
    assert g["vortices"].value is None  # no phase scale on a grey image


def _vortex_field(centres) -> np.ndarray:
    z = np.ones((N, N), complex)
    for (cy, cx), charge in centres:
        v = (XX - cx) + 1j * (YY - cy)
        z *= v if charge > 0 else np.conj(v)
    return np.exp(1j * np.angle(z))


def test_vortices_counted_with_charge() -> None:
    pairs = [
        ((30.3, 30.4), 1),
        ((30.6, 60.2), -1),
        ((70.5, 40.5), 1),
        ((90.5, 100.5), -1),
        ((100.2, 30.7), 1),
        ((60.4, 90.6), -1),
    ]
    m, _ = measure(to_recon(_vortex_field(pairs) * np.exp(1j * 0.2 * _specimen()), "v"))
    assert m["vortices"].value == 6
    assert m["vortex_balance"].value == 0
    none, _ = measure(to_recon(np.exp(1j * _specimen()), "none"))
    assert none["vortices"].value == 0


def test_vortices_outside_the_transmitting_region_are_not_counted() -> None:
    z = _vortex_field([((40.5, 40.5), 1), ((40.5, 80.5), -1)])
    rng = np.random.default_rng(3)
    amp = np.ones((N, N))
    amp[:, 100:] = 0.01  # opaque strip: its phase is noise
    z[:, 100:] = np.exp(2j * np.pi * rng.random((N, 28)))
    m, _ = measure(to_recon(amp * z, "masked"))
    assert m["vortices"].value == 2
    assert m["region"].value == pytest.approx(100 / N, abs=0.05)
    unmasked, _ = measure(to_recon(z, "phase only: whole field"))  # unit amplitude: all trusted
    assert unmasked["vortices"].value > 20


M = 256  # FRC field: the window's two-ring blur is small against the rings to the cut-off


def _band_limited(rng, cutoff: float) -> np.ndarray:
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(M), np.fft.fftfreq(M), indexing="ij"))
    s = np.fft.ifft2(np.fft.fft2(rng.standard_normal((M, M))) * (f < cutoff)).real
    return s / s.std()


@pytest.mark.parametrize("period", [8.0, 16.0])
def test_frc_half_bit_resolution_of_a_constructed_pair(period: float) -> None:
    rng = np.random.default_rng(0)
    signal = _band_limited(rng, 1 / period)  # common to both halves up to 1/period
    a = to_recon(signal + 0.2 * rng.standard_normal((M, M)), "a")
    b = to_recon(signal + 0.2 * rng.standard_normal((M, M)), "b")
    curve = frc(a, b)
    assert curve.resolution_px == pytest.approx(period, rel=0.15)
    assert all(c > 0.9 for f, c in zip(curve.frequency, curve.frc) if f < 0.7 / period)
    same = frc(a, a)  # identical halves: resolved to Nyquist
    assert same.crossing is None and same.resolution_px == 2.0


def test_frc_needs_the_same_field() -> None:
    from ptychobench.diagnose.io import DiagnoseError

    with pytest.raises(DiagnoseError, match="same field"):
        frc(to_recon(np.ones((N, N)) + np.eye(N), "a"), to_recon(np.ones((64, 64)) + np.eye(64), "b"))


def test_scan_lattice_energy_grows_with_a_grid_at_the_step() -> None:
    base = np.exp(1j * _specimen())
    peaks = []
    for g in (0.0, 0.05, 0.2):
        grid = g * (np.cos(2 * np.pi * XX / 8) + np.cos(2 * np.pi * YY / 8))
        m, _ = measure(to_recon(base * np.exp(1j * grid), "grid"), scan_step=8)
        peaks.append(m["grid_peak"].value)
    assert peaks[0] < 5 < peaks[1] < peaks[2]
    m, _ = measure(to_recon(base, "no step"))
    assert m["grid_peak"].value is None and "--scan-step" in m["grid_peak"].meaning


def test_noise_and_background_estimates() -> None:
    rng = np.random.default_rng(1)
    sigma = 0.1
    m, _ = measure(to_recon(np.exp(1j * (_specimen() + sigma * rng.standard_normal((N, N)))), "noisy"))
    assert m["noise"].value == pytest.approx(sigma, rel=0.15)
    # compact features (a minority of any window) on a slow variation across the field
    dots = sum(0.8 * (((YY - cy) ** 2 + (XX - cx) ** 2) < 36) for cy in (20, 60, 100) for cx in (25, 70, 110))
    dots = dots + 0.01 * rng.standard_normal((N, N))  # measured data is never exactly 1 + 0j
    slow = 0.6 * np.sin(2 * np.pi * XX / N)
    bg, _ = measure(to_recon(np.exp(1j * (dots + slow)), "slow"))
    flat, _ = measure(to_recon(np.exp(1j * dots), "flat"))
    assert bg.keys() == flat.keys()
    assert bg["background"].value > 3 * flat["background"].value
    assert bg["background"].value == pytest.approx(0.6 / np.sqrt(2), rel=0.35)


def test_every_measurement_has_unit_and_meaning() -> None:
    m, _ = measure(to_recon(np.exp(1j * _specimen()), "x"), scan_step=10)
    for x in m.values():
        assert x.unit and x.meaning and x.title
