"""Instruments: probe optics, energy, detector and scan geometry.

Three set-ups of the kinds used at hard X-ray ptychography beamlines. Probes are built
as the focus of a pupil (a Fresnel zone plate with central stop gives rings; crossed KB
mirrors give a separable, rectangular-pupil focus; a pinhole placed out of focus gives a
top-hat with Fresnel fringes). All lengths on the object grid are in pixels; the object
pixel size follows from wavelength, detector distance and detector size and is stored
for the metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HC_KEV_NM = 1.23984198  # h*c in keV*nm


@dataclass(frozen=True)
class Instrument:
    name: str
    beam: str  # e.g. "zone-plate focus"
    energy_kev: float
    detector_px: int  # diffraction pattern size = probe array size
    pixel_size_nm: float  # object pixel size
    scan: str  # "raster" or "fermat"
    step_px: float  # nominal scan step on the object grid
    probe_width_px: float  # approximate probe FWHM
    dose: float  # mean photons per diffraction pattern

    @property
    def wavelength_m(self) -> float:
        return HC_KEV_NM / self.energy_kev * 1e-9

    def describe(self) -> dict:
        return asdict(self)


INSTRUMENTS: dict[str, Instrument] = {
    "fzp-nanoprobe": Instrument(
        name="fzp-nanoprobe",
        beam="Fresnel zone-plate focus (central stop, slightly defocused)",
        energy_kev=10.0,
        detector_px=48,
        pixel_size_nm=10.0,
        scan="fermat",
        step_px=6.5,
        probe_width_px=14.0,
        dose=2e5,
    ),
    "kb-microprobe": Instrument(
        name="kb-microprobe",
        beam="KB-mirror focus (crossed mirrors)",
        energy_kev=12.0,
        detector_px=48,
        pixel_size_nm=12.0,
        scan="raster",
        step_px=7.0,
        probe_width_px=13.0,
        dose=2e5,
    ),
    "pinhole-defocus": Instrument(
        name="pinhole-defocus",
        beam="defocused pinhole-defined beam",
        energy_kev=8.8,
        detector_px=48,
        pixel_size_nm=15.0,
        scan="fermat",
        step_px=7.5,
        probe_width_px=18.0,
        dose=2e5,
    ),
    # held out of every training split: the test-ood split's beamline
    "mll-nanoprobe": Instrument(
        name="mll-nanoprobe",
        beam="crossed multilayer Laue lens focus (astigmatic, with side lobes)",
        energy_kev=15.0,
        detector_px=48,
        pixel_size_nm=8.0,
        scan="raster",
        step_px=6.8,
        probe_width_px=12.0,
        dose=2e5,
    ),
}
MAIN_INSTRUMENTS = ("fzp-nanoprobe", "kb-microprobe", "pinhole-defocus")
OOD_INSTRUMENTS = ("mll-nanoprobe",)


def _centered_freq(n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.fft.fftshift(np.fft.fftfreq(n))
    return np.meshgrid(k, k, indexing="ij")


def _focus(pupil: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))


def make_probe(inst: Instrument, rng: np.random.Generator, defocus: float | None = None) -> np.ndarray:
    """Main coherent probe mode (complex, ``detector_px`` square), unit total intensity."""
    n = inst.detector_px
    ky, kx = _centered_freq(n)
    kr = np.hypot(ky, kx)
    # pupil radius (cycles/px) from the desired focal width: FWHM ~ 0.5/kmax
    kmax = 0.5 / inst.probe_width_px * 1.6
    if defocus is None:
        defocus = rng.uniform(0.6, 1.4)
    if inst.name.startswith("fzp"):
        pupil = ((kr < kmax) & (kr > 0.35 * kmax)).astype(complex)
        pupil *= np.exp(1j * defocus * 3.0 * (kr / kmax) ** 2)
        probe = _focus(pupil)
    elif inst.name.startswith("mll"):
        # hard-edged, slightly tilted apertures and astigmatism: a cross of side lobes
        ay, ax = kmax * rng.uniform(0.8, 1.2, 2)
        ty, tx = 0.15 * ky + 0.1 * kx, kx - 0.1 * ky
        pupil = ((np.abs(ty) < ay) & (np.abs(tx) < ax)).astype(complex)
        pupil *= np.exp(1j * defocus * 2.5 * ((ty / ay) ** 2 - 0.6 * (tx / ax) ** 2) + 1j * 1.5 * (tx / ax) ** 3)
        probe = _focus(pupil)
    elif inst.name.startswith("kb"):
        ay, ax = kmax * rng.uniform(0.85, 1.15, 2)
        pupil = ((np.abs(ky) < ay) & (np.abs(kx) < ax)).astype(complex)
        pupil *= np.exp(1j * defocus * 2.0 * ((ky / ay) ** 2 + 0.7 * (kx / ax) ** 2))
        probe = _focus(pupil)
    else:
        y, x = np.mgrid[0:n, 0:n] - (n - 1) / 2
        r = np.hypot(y, x)
        rad = inst.probe_width_px / 2 * 1.1
        aperture = 0.5 * (1 - np.tanh((r - rad) / 0.8))
        curvature = np.exp(1j * defocus * 4.0 * (r / rad) ** 2)
        # Fresnel fringes from a short propagation of the pinhole field
        field = aperture * curvature
        f = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(field)))
        f *= np.exp(-1j * np.pi * 25.0 * kr**2 * defocus)
        probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(f)))
    # keep the probe inside the window: soft circular taper near the edges
    y, x = np.mgrid[0:n, 0:n] - (n - 1) / 2
    probe *= 0.5 * (1 - np.tanh((np.hypot(y, x) - 0.45 * n) / 1.5))
    return (probe / np.sqrt((np.abs(probe) ** 2).sum())).astype(np.complex64)


def incoherent_modes(probe: np.ndarray, n_modes: int, occupancy_main: float) -> np.ndarray:
    """Partially coherent illumination: the main mode plus orthogonal modes built from
    its spatial derivatives, with the remaining power shared out geometrically."""
    modes = [probe]
    gy, gx = np.gradient(probe)
    for m in (gx, gy, gx * 1j + gy)[: n_modes - 1]:
        # Gram-Schmidt against the previous modes
        for p in modes:
            m = m - np.vdot(p, m) / np.vdot(p, p) * p
        modes.append(m / np.sqrt((np.abs(m) ** 2).sum()))
    rest = 1 - occupancy_main
    w = np.array([occupancy_main] + [rest * 0.5**k for k in range(n_modes - 1)])
    w[1:] *= rest / max(w[1:].sum(), 1e-12)
    return np.stack([m * np.sqrt(wi) for m, wi in zip(modes, w)]).astype(np.complex64)


def scan_positions(
    inst: Instrument, fov_px: float, rng: np.random.Generator, scan: str | None = None, step: float | None = None
) -> np.ndarray:
    """Nominal scan positions ``(n, 2)`` as (y, x) pixels about the object centre."""
    scan = scan or inst.scan
    step = step or inst.step_px
    half = fov_px / 2
    if scan == "raster":
        k = np.arange(-half, half + 1e-6, step)
        k = k - k.mean()
        yy, xx = np.meshgrid(k, k, indexing="ij")
        pos = np.stack([yy.ravel(), xx.ravel()], 1)
    else:  # Fermat spiral with the same areal density as a raster of this step
        n = int(np.ceil((2 * half / step + 1) ** 2 * np.pi / 4 * 1.15))
        i = np.arange(n)
        golden = np.pi * (3 - np.sqrt(5))
        r = step * 0.57 * np.sqrt(i) * 1.0
        th = i * golden
        pos = np.stack([r * np.sin(th), r * np.cos(th)], 1)
        pos = pos[np.abs(pos).max(1) <= half]
    return pos.astype(np.float64)
