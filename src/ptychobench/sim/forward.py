"""Far-field ptychography forward model in numpy.

Conventions (checked against ``ptychi``'s own forward model in ``tests/test_sim.py``):

* the object is ``(n_slices, N, N)``; scan positions are ``(y, x)`` pixels measured from
  the object's origin pixel coordinate ``round(N / 2) - 0.5`` (ptychi's "support" origin);
  the patch seen by the probe at position ``p`` has its top-left pixel at
  ``p + origin - (P - 1) / 2``; fractional parts are applied by a Fourier shift of the
  object patch;
* probes are ``(n_modes, P, P)``; the exit wave of each incoherent mode is propagated with
  an unnormalised ``fft2`` (numpy's default, ptychi's far-field propagator) and the
  intensities of the modes add;
* recorded patterns are DC-centred (``fftshift``), as detectors record them; ptychi is
  given ``fft_shift=True``;
* thick samples: multislice with an angular-spectrum propagator between slices.
"""

from __future__ import annotations

import numpy as np

PAD = 2


def origin(n: int) -> float:
    return float(np.round(n / 2) - 0.5)


def extract_patches(obj2d: np.ndarray, positions: np.ndarray, p: int) -> np.ndarray:
    """Patches ``(n_pos, p, p)`` of one slice at sub-pixel positions (Fourier shift)."""
    n = obj2d.shape[-1]
    tl = positions + origin(n) - (p - 1) / 2.0
    i0 = np.floor(tl).astype(int)
    frac = tl - i0
    big = p + 2 * PAD
    padded = np.pad(obj2d, big, mode="constant")
    out = np.empty((len(positions), big, big), dtype=np.complex128)
    for k, (y0, x0) in enumerate(i0 - PAD + big):
        out[k] = padded[y0 : y0 + big, x0 : x0 + big]
    ky = np.fft.fftfreq(big)
    ramp = np.exp(
        2j * np.pi * (frac[:, 0, None, None] * ky[None, :, None] + frac[:, 1, None, None] * ky[None, None, :])
    )
    shifted = np.fft.ifft2(np.fft.fft2(out) * ramp)
    return shifted[:, PAD : PAD + p, PAD : PAD + p]


def asm_transfer(p: int, wavelength_m: float, pixel_m: float, dz_m: float) -> np.ndarray:
    """Angular-spectrum transfer function over ``dz_m`` (evanescent waves blocked)."""
    k = np.fft.fftfreq(p) / pixel_m
    ky, kx = np.meshgrid(k, k, indexing="ij")
    s = 1 - (wavelength_m**2) * (ky**2 + kx**2)
    h = np.exp(2j * np.pi * dz_m / wavelength_m * np.sqrt(np.clip(s, 0, None)))
    return np.where(s > 0, h, 0)


def exit_waves(
    obj: np.ndarray, probes: np.ndarray, positions: np.ndarray, transfer: np.ndarray | None = None
) -> np.ndarray:
    """Exit waves ``(n_pos, n_modes, P, P)``.

    ``probes`` is ``(n_modes, P, P)`` shared by all positions or ``(n_pos, n_modes, P, P)``
    when the illumination varies across the scan.
    """
    p = probes.shape[-1]
    psi = probes if probes.ndim == 4 else probes[None]
    psi = np.broadcast_to(psi, (len(positions),) + psi.shape[1:]).astype(np.complex128)
    for s in range(obj.shape[0]):
        if s > 0:
            if transfer is None:
                raise ValueError("a multislice object needs the slice transfer function")
            psi = np.fft.ifft2(np.fft.fft2(psi) * transfer)
        psi = psi * extract_patches(obj[s], positions, p)[:, None]
    return psi


def intensities(psi: np.ndarray) -> np.ndarray:
    """Far-field intensities with the DC at the corner (ptychi's internal convention)."""
    return (np.abs(np.fft.fft2(psi)) ** 2).sum(1)


def simulate_patterns(obj, probes, positions, transfer=None, center_shift=(0.0, 0.0)) -> np.ndarray:
    """Noise-free DC-centred patterns; ``center_shift`` (pixels) moves the pattern on the
    detector, as a mis-centred detector or a tilted beam does (a linear phase on the
    exit wave)."""
    psi = exit_waves(obj, probes, positions, transfer)
    if center_shift[0] or center_shift[1]:
        p = psi.shape[-1]
        y = np.arange(p)
        tilt = np.exp(2j * np.pi * (center_shift[0] * y[:, None] + center_shift[1] * y[None, :]) / p)
        psi = psi * tilt
    return np.fft.fftshift(intensities(psi), axes=(-2, -1))
