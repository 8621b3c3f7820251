"""Artifact metrics of a reconstruction against the ground-truth object, and labels.

Every label is a threshold on one measured quantity (see ``THRESHOLDS`` and
``docs/dataset.md``); the injected defects play no part. The reconstruction is first
registered to the truth (sub-pixel translation, global phase), then:

* ``ramp_rad``     - linear phase across the field of view (peak of the spectrum of
                     ``exp(i * error)``), in radians end to end;
* ``corr``         - complex correlation of reconstruction and truth (ramp removed);
* ``contrast``     - spread of the reconstruction relative to that of the truth;
* ``blur_px``      - sigma of the Gaussian blur of the truth that best explains it;
* ``noise``        - high-frequency power of the reconstruction beyond that of the
                     blurred truth, relative to truth contrast;
* ``background``   - low-frequency residual relative to truth contrast;
* ``halo``         - phase offset of a rim just outside features against the far
                     background, relative to the truth's phase range;
* ``grid``         - residual amplitude at the scan-lattice frequencies (where the truth
                     has no peaks of its own), relative to truth contrast;
* ``lines``        - concentration of residual power in one spectral direction, over the
                     truth's own concentration (straight streaks and stripes);
* ``residues``     - phase vortices in the reconstruction beyond those of the truth;
* ``distortion_px``- spread of local (structured-tile) shifts after global registration.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..tasks import ARTIFACT_LABELS, NO_ARTIFACTS

THRESHOLDS: dict[str, tuple[str, float]] = {
    "Grid artifacts": ("grid", 0.08),
    "Halo artifacts": ("halo", 0.08),
    "Line artifacts": ("lines", 2.7),
    "Local distortion": ("distortion_px", 1.2),
    "Low contrast": ("contrast", 0.75),  # below
    "No clear structure": ("corr", 0.35),  # below
    "Noisy artifacts": ("noise", 0.35),
    "Non-uniform background": ("background", 0.35),
    "Phase ramp": ("ramp_rel", 0.5),
    "Singularity artifacts": ("residues", 6.0),
    "Blurring": ("blur_px", 1.4),
}
BELOW = {"Low contrast", "No clear structure"}


def _gauss(z: np.ndarray, s: float) -> np.ndarray:
    if s <= 0:
        return z
    return ndimage.gaussian_filter(z.real, s) + 1j * ndimage.gaussian_filter(z.imag, s)


def project(obj: np.ndarray) -> np.ndarray:
    return np.prod(obj, axis=0) if obj.ndim == 3 else obj


def upsample(obj2d: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return obj2d
    return ndimage.zoom(obj2d.real, factor, order=1) + 1j * ndimage.zoom(obj2d.imag, factor, order=1)


def centre_crop(a: np.ndarray, size: int) -> np.ndarray:
    n = a.shape[-1]
    s = (n - size) // 2
    return a[..., s : s + size, s : s + size]


def _xcorr_shift(t: np.ndarray, r: np.ndarray, max_shift: int = 5) -> np.ndarray:
    """Shift (dy, dx) that moves ``r`` onto ``t``: peak of the windowed cross-correlation
    within +-max_shift px (the reconstruction lives in the truth's frame up to the small
    probe-centring ambiguity), refined to sub-pixel by a parabola."""
    n = t.shape[0]
    w = np.outer(np.hanning(n), np.hanning(n))
    a = (t - t.mean()) * w
    b = (r - r.mean()) * w
    xc = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b)))))
    c = n // 2
    sub = xc[c - max_shift : c + max_shift + 1, c - max_shift : c + max_shift + 1]
    iy, ix = np.unravel_index(np.argmax(sub), sub.shape)
    out = []
    for idx, line in ((iy, sub[:, ix]), (ix, sub[iy, :])):
        off = 0.0
        if 0 < idx < len(line) - 1:
            den = line[idx - 1] - 2 * line[idx] + line[idx + 1]
            off = 0.5 * (line[idx - 1] - line[idx + 1]) / den if den != 0 else 0.0
        out.append(idx - max_shift + float(np.clip(off, -0.5, 0.5)))
    return np.array(out)


def register(recon: np.ndarray, truth: np.ndarray, roi: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Registered ``(recon_roi, truth_roi, shift)``; global phase of recon matched."""
    win = roi + 16
    r, t = centre_crop(recon, win), centre_crop(truth, win)
    shift = _xcorr_shift(t, r)
    r = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(r), shift))
    r, t = centre_crop(r, roi), centre_crop(t, roi)
    r = r * np.exp(1j * np.angle(np.vdot(r, t)))
    r = r * (np.abs(t).mean() / max(np.abs(r).mean(), 1e-12))
    return r, t, tuple(float(x) for x in shift)


def _ramp(err_phase: np.ndarray) -> tuple[float, float]:
    """Frequency (cycles/px) of the linear phase in ``exp(i * err)``: spectral peak on an
    8x padded grid, refined by a parabola."""
    n = err_phase.shape[0]
    pad = 8 * n
    spec = np.abs(np.fft.fft2(np.exp(1j * err_phase), s=(pad, pad)))
    iy, ix = np.unravel_index(np.argmax(spec), spec.shape)
    out = []
    for idx, axis in ((iy, 0), (ix, 1)):
        line = spec[:, ix] if axis == 0 else spec[iy, :]
        left, c, r = line[(idx - 1) % pad], line[idx], line[(idx + 1) % pad]
        den = left - 2 * c + r
        off = 0.5 * (left - r) / den if den != 0 else 0.0
        f = (idx + np.clip(off, -0.5, 0.5)) / pad
        out.append(float(f - 1 if f > 0.5 else f))
    return out[0], out[1]


def _residues(z: np.ndarray) -> int:
    ph = np.angle(z)

    def w(a):
        return (a + np.pi) % (2 * np.pi) - np.pi

    d1 = w(ph[:-1, 1:] - ph[:-1, :-1])
    d2 = w(ph[1:, 1:] - ph[:-1, 1:])
    d3 = w(ph[1:, :-1] - ph[1:, 1:])
    d4 = w(ph[:-1, :-1] - ph[1:, :-1])
    return int((np.abs(d1 + d2 + d3 + d4) > np.pi).sum())


def metrics(
    recon_obj: np.ndarray, true_obj: np.ndarray, roi: int, step_px: float, scan: str, bin_factor: int = 1
) -> dict[str, Any]:  # numbers, and the shift as a list
    rec = upsample(project(recon_obj), bin_factor)
    tru = project(true_obj)
    r, t, shift = register(rec, tru, roi)
    err = np.angle(r * np.conj(t))
    ky, kx = _ramp(err)
    yy, xx = np.mgrid[0:roi, 0:roi]
    plane = np.exp(-2j * np.pi * (ky * yy + kx * xx))
    r1 = r * plane
    r1 = r1 * np.exp(1j * np.angle(np.vdot(r1, t)))
    ramp_rad = float(2 * np.pi * np.hypot(ky, kx) * roi)
    tphase = np.angle(t * np.exp(-1j * np.angle(t.mean())))
    t_range = float(np.percentile(tphase, 99) - np.percentile(tphase, 1))

    tc = t - t.mean()
    rc = r1 - r1.mean()
    tn = np.sqrt((np.abs(tc) ** 2).mean())
    corr = float(np.abs(np.vdot(tc, rc)) / (np.linalg.norm(tc) * np.linalg.norm(rc) + 1e-12))
    contrast = float(np.sqrt((np.abs(rc) ** 2).mean()) / (tn + 1e-12))

    best = None
    for s in (0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0):
        tb = _gauss(t, s)
        tb = tb - tb.mean()
        coef = np.vdot(tb, rc) / max(np.vdot(tb, tb).real, 1e-12)
        res = rc - coef * tb
        n2 = float((np.abs(res) ** 2).mean())
        if best is None or n2 < best[0] - 1e-12:
            best = (n2, s, res, tb, coef)
    assert best is not None  # the loop above always runs at least once
    _, blur, res, tb, coef = best

    # noise: high-frequency power of the reconstruction beyond what the (blurred, scaled)
    # truth carries there; power does not depend on registration, so sharp edges that
    # are a fraction of a pixel off do not count as noise
    def hf_power(z):
        h = z - _gauss(z, 1.0)
        return float((np.abs(h) ** 2).mean())

    excess = hf_power(rc) - abs(coef) ** 2 * hf_power(tb)
    noise = float(np.sqrt(max(excess, 0.0)) / (tn + 1e-12))
    lf = _gauss(res, 6.0)
    lf = lf - lf.mean()
    background = float(np.sqrt((np.abs(lf) ** 2).mean()) / (tn + 1e-12))
    # grid: the residual's component at the lattice frequencies of a raster of this step
    # (peak over ring median, and its amplitude relative to the truth's contrast)
    win = np.outer(np.hanning(roi), np.hanning(roi))
    pad = 2 * roi
    fres = np.fft.fftshift(np.fft.fft2((res - res.mean()) * win, s=(pad, pad)))
    spec = np.abs(fres) ** 2
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(pad)), np.fft.fftshift(np.fft.fftfreq(pad)), indexing="ij")
    fr = np.hypot(fy, fx)
    # the truth's own power there (an IC's wiring pitch can match the scan step) is not
    # an artifact: such peaks are compared with the truth's peaks
    tspec = np.abs(np.fft.fftshift(np.fft.fft2((t - t.mean()) * win, s=(pad, pad)))) ** 2
    keep = np.zeros_like(fr, bool)
    ratios, truth_ratios = [], []
    for my, mx in ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2)):
        for sg in (1, -1):
            ty, tx = sg * my / step_px, sg * mx / step_px
            if np.hypot(ty, tx) > 0.45:
                continue
            near = (np.abs(fy - ty) <= 2.5 / pad) & (np.abs(fx - tx) <= 2.5 / pad)
            ring = np.abs(fr - np.hypot(ty, tx)) < 3.0 / pad
            keep |= near
            ratios.append(spec[near].max() / (np.median(spec[ring]) + 1e-20))
            truth_ratios.append(tspec[near].max() / (np.median(tspec[ring]) + 1e-20))
    comp = np.fft.ifft2(np.fft.ifftshift(np.where(keep, fres, 0)))[:roi, :roi]
    wn = np.sqrt((win**2).mean())
    grid_amp = float(np.sqrt((np.abs(comp) ** 2).mean()) / wn / (tn + 1e-12))
    grid_peak = float(np.median(ratios)) if ratios else 0.0
    truth_peak = float(np.median(truth_ratios)) if truth_ratios else 0.0
    grid = grid_amp if grid_peak >= 10 and grid_peak >= 3 * truth_peak else 0.0

    # lines: straight streaks or stripes, i.e. residual power gathered in one direction
    # of the spectrum, relative to the same concentration in the truth's own structure
    ang = np.mod(np.arctan2(fy, fx), np.pi)
    band = (fr > 3.0 / roi) & (fr < 0.4)
    bins = np.minimum((ang[band] / np.pi * 90).astype(int), 89)

    def angular(z):
        ps = np.abs(np.fft.fftshift(np.fft.fft2((z - z.mean()) * win, s=(pad, pad)))) ** 2
        h = np.bincount(bins, weights=ps[band], minlength=90)
        h = h + np.roll(h, 1) + np.roll(h, -1)
        return h / (h.mean() + 1e-20)

    a_res = angular(res)
    a_tru = angular(t - _gauss(t, 3.0))
    lines = float(np.max(a_res / np.maximum(a_tru, 1.0)))

    residues = max(0, _residues(r1) - _residues(t))

    # halo: a rim of shifted phase just outside features, relative to the background far
    # from them; measured on the phase residual and relative to the feature contrast
    fg = np.abs(tphase - np.median(tphase)) > 0.3 * max(t_range, 1e-3)
    near = ndimage.binary_dilation(fg, iterations=7) & ~ndimage.binary_dilation(fg, iterations=1)
    far = ~ndimage.binary_dilation(fg, iterations=12)
    rphase = np.angle(r1 * np.conj(t))
    rphase = rphase - ndimage.gaussian_filter(rphase, 15)
    if near.sum() > 50 and far.sum() > 150 and fg.sum() > 30:
        halo = float(abs(rphase[near].mean() - rphase[far].mean()) / max(t_range, 0.2))
    else:
        halo = 0.0

    # local distortion: shifts of overlapping 24-px tiles that carry strong structure
    tile, stride = 24, 12
    shifts = []
    grad = np.abs(np.gradient(t)[0]) + np.abs(np.gradient(t)[1])
    energies = []
    for i in range(0, roi - tile + 1, stride):
        for j in range(0, roi - tile + 1, stride):
            energies.append((grad[i : i + tile, j : j + tile].mean(), i, j))
    if energies and corr > 0.5:
        cut = max(np.median([e for e, _, _ in energies]), 0.02 * np.abs(t).mean())
        for e, i, j in energies:
            if e < cut:
                continue
            shifts.append(_xcorr_shift(t[i : i + tile, j : j + tile], r1[i : i + tile, j : j + tile], max_shift=4))
    if len(shifts) >= 4:
        sh = np.array(shifts)
        distortion = float(np.percentile(np.hypot(*(sh - np.median(sh, 0)).T), 75))
    else:
        distortion = 0.0

    phase_err = np.angle(r1 * np.conj(t))
    return {
        "error": float(np.sqrt((np.abs(r - t) ** 2).mean()) / (np.abs(t).mean() + 1e-12)),
        "phase_rmse": float(np.sqrt((phase_err**2).mean())),
        "ramp_rad": ramp_rad,
        "ramp_rel": float(ramp_rad / max(t_range, 1.0)),
        "truth_phase_range": t_range,
        "corr": corr,
        "contrast": contrast,
        "blur_px": float(blur),
        "noise": noise,
        "background": background,
        "halo": halo,
        "grid": grid if scan == "raster" else 0.0,
        "grid_peak": grid_peak,
        "grid_truth_peak": truth_peak,
        "lines": lines,
        "residues": float(residues),
        "distortion_px": distortion,
        "shift_px": list(shift),
    }


def labels_from_metrics(m: dict[str, float]) -> frozenset[str]:
    out = set()
    for label, (key, thr) in THRESHOLDS.items():
        v = m[key]
        if (v < thr) if label in BELOW else (v >= thr):
            out.add(label)
    # when even a heavily blurred truth explains the image poorly, no structure is visible
    if m["blur_px"] >= 5.0 and m["corr"] < 0.75:
        out.add("No clear structure")
    if "No clear structure" in out:
        out -= {"Low contrast", "Blurring", "Local distortion", "Halo artifacts"}
        # in an image without structure a grid shows only if it is a good part of it
        if m["grid"] < 0.25 * m["contrast"]:
            out.discard("Grid artifacts")
    # streaks are only judged on a reconstruction that resembles the specimen at all
    if m["corr"] < 0.5:
        out.discard("Line artifacts")
    # a halo is a rim around recognisable features
    if m["corr"] < 0.65:
        out.discard("Halo artifacts")
    if not out:
        out.add(NO_ARTIFACTS)
    assert out <= set(ARTIFACT_LABELS)
    return frozenset(out)


def render_phase(
    recon_obj: np.ndarray, true_obj: np.ndarray, roi: int, bin_factor: int = 1, upscale: int = 2
) -> np.ndarray:
    """8-bit grayscale image of the reconstructed phase over the field of view.

    The display window is the truth's phase range (what the scientist expects of the
    specimen) so low contrast looks low and ramps saturate; phase that wraps is shown
    wrapped on [-pi, pi]."""
    rec = centre_crop(upsample(project(recon_obj), bin_factor), roi)
    tru = centre_crop(project(true_obj), roi)
    rec = rec * np.exp(1j * np.angle(np.vdot(rec, tru)))
    ph = np.angle(rec)
    tph = np.angle(tru * np.exp(-1j * np.angle(tru.mean())))
    lo, hi = np.percentile(tph, 1), np.percentile(tph, 99)
    if hi - lo > 0.8 * 2 * np.pi:
        lo, hi = -np.pi, np.pi
    else:
        ph = np.angle(rec * np.exp(-1j * np.angle(tru.mean())))
        pad = 0.15 * (hi - lo) + 0.02
        lo, hi = lo - pad, hi + pad
    img = np.clip((ph - lo) / (hi - lo), 0, 1)
    img = ndimage.zoom(img, upscale, order=1) if upscale > 1 else img
    return np.round(img * 255).astype(np.uint8)
