"""Measurements of a reconstruction against the ground truth, in the units of the image
a person sees.

The reconstruction is registered to the truth (sub-pixel translation, global phase, a
linear phase removed and measured), and its complex difference from a best-fitting
blurred copy of the truth is the *residual*. Every quantity that decides a label is then
expressed relative to the displayed grey range ``display_rad``: the robust phase window
that the truth-free viewer (:mod:`.render`) autoscales to. A residual that is large in
radians but small against that window cannot be seen, and so is not a label. The
rules that turn these numbers into labels live in :mod:`.labels`.

Lengths are in pixels of the reconstructed field; the field is ``roi`` pixels wide.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .render import display_window

BLUR_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)


def _gauss(z: np.ndarray, s: float) -> np.ndarray:
    if s <= 0:
        return z
    return ndimage.gaussian_filter(z.real, s) + 1j * ndimage.gaussian_filter(z.imag, s)


def project(obj: np.ndarray) -> np.ndarray:
    """One transmission function from a multislice object (product of its slices)."""
    return np.prod(obj, axis=0) if obj.ndim == 3 else obj


def upsample(obj2d: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return obj2d
    return ndimage.zoom(obj2d.real, factor, order=1) + 1j * ndimage.zoom(obj2d.imag, factor, order=1)


def centre_crop(a: np.ndarray, size: int) -> np.ndarray:
    n = a.shape[-1]
    s = (n - size) // 2
    return a[..., s : s + size, s : s + size]


def _xcorr_shift(t: np.ndarray, r: np.ndarray, max_shift: int = 6) -> np.ndarray:
    """Shift (dy, dx) that moves ``r`` onto ``t``: peak of the windowed cross-correlation
    within +-max_shift px, refined to sub-pixel by a parabola."""
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
    """Registered ``(recon_roi, truth_roi, shift)``; global phase and mean amplitude matched.

    The shift is estimated twice (the second pass on the once-shifted field) so that a
    sub-pixel offset leaves no edge residual that could pass for noise or streaks."""
    win = roi + 16
    r, t = centre_crop(recon, win), centre_crop(truth, win)
    total = np.zeros(2)
    # registered on detail: a ramp or a slow background would pull a plain correlation
    th = t - _gauss(t, 4.0)
    for _ in range(2):
        shift = _xcorr_shift(th, r - _gauss(r, 4.0))
        total += shift
        r = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(r), shift))
    r, t = centre_crop(r, roi), centre_crop(t, roi)
    r = r * np.exp(1j * np.angle(np.vdot(r, t)))
    r = r * (np.abs(t).mean() / max(np.abs(r).mean(), 1e-12))
    return r, t, tuple(float(x) for x in total)


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


def residues(z: np.ndarray, mask: np.ndarray | None = None) -> int:
    """Phase vortices: plaquettes around which the wrapped phase winds by 2 pi."""
    ph = np.angle(z)

    def w(a):
        return (a + np.pi) % (2 * np.pi) - np.pi

    d1 = w(ph[:-1, 1:] - ph[:-1, :-1])
    d2 = w(ph[1:, 1:] - ph[:-1, 1:])
    d3 = w(ph[1:, :-1] - ph[1:, 1:])
    d4 = w(ph[:-1, :-1] - ph[1:, :-1])
    hit = np.abs(d1 + d2 + d3 + d4) > np.pi
    if mask is not None:
        hit &= mask[:-1, :-1]
    return int(hit.sum())


def _band_component(fres: np.ndarray, keep: np.ndarray, roi: int) -> np.ndarray:
    return np.fft.ifft2(np.fft.ifftshift(np.where(keep, fres, 0)))[:roi, :roi]


def _fit_blur(r1: np.ndarray, t: np.ndarray) -> tuple:
    """The blurred, scaled copy of the truth that best explains ``r1``:
    (residual power, sigma, residual, blurred truth, scale)."""
    rc = r1 - r1.mean()
    wide = r1.shape[-1] / 10
    rh = rc - _gauss(rc, wide)  # a slow background must not pass for blur: fit the detail
    best = None
    for s in BLUR_SIGMAS:
        tb = _gauss(t, s)
        tb = tb - tb.mean()
        th = tb - _gauss(tb, wide)
        coef = np.vdot(th, rh) / max(np.vdot(th, th).real, 1e-12)
        res = rc - coef * tb
        n2 = float((np.abs(rh - coef * th) ** 2).mean())
        if best is None or n2 < best[0] * (1 - 1e-3):
            best = (n2, s, res, tb, coef)
    assert best is not None
    return best


def metrics(
    recon_obj: np.ndarray, true_obj: np.ndarray, roi: int, step_px: float, scan: str, bin_factor: int = 1
) -> dict[str, Any]:
    """All measurements of one reconstruction (numbers, and the shift as a list)."""
    rec = upsample(project(recon_obj), bin_factor)
    tru = project(true_obj)
    r, t, shift = register(rec, tru, roi)
    amp = float(np.abs(t).mean()) + 1e-12  # complex residuals / amp ~ radians of phase
    lo, hi = display_window(r)
    display = float(hi - lo)
    err = np.angle(r * np.conj(t))
    ky, kx = _ramp(err)
    yy, xx = np.mgrid[0:roi, 0:roi]
    tc = t - t.mean()
    tn = float(np.sqrt((np.abs(tc) ** 2).mean())) + 1e-12

    def deramp(ky: float, kx: float) -> np.ndarray:
        z = r * np.exp(-2j * np.pi * (ky * yy + kx * xx))
        return z * np.exp(1j * np.angle(np.vdot(z, t)))

    # the spectral peak finds a ramp of many radians; a weighted plane fit of the phase
    # left after the best model of the specimen then refines it, so that a ramp the
    # estimate got slightly wrong is not left in the residual as "background"
    a = np.stack([yy.ravel(), xx.ravel(), np.ones(roi * roi)], 1)
    r1 = deramp(ky, kx)
    for model in ("truth", "fit"):
        if model == "truth":
            ref = t
        else:
            _, _, _, tb, coef = _fit_blur(r1, t)
            ref = r1.mean() + coef * tb
        e = np.angle(r1 * np.conj(ref))
        w = np.abs(ref).ravel() ** 2
        sol = np.linalg.lstsq(a * w[:, None] ** 0.5, e.ravel() * w**0.5, rcond=None)[0]
        ky, kx = ky + sol[0] / (2 * np.pi), kx + sol[1] / (2 * np.pi)
        r1 = deramp(ky, kx)
    ramp_rad = float(2 * np.pi * np.hypot(ky, kx) * roi)
    lo0, hi0 = display_window(r1)
    display0 = max(float(hi0 - lo0), 0.05)  # the grey range the specimen itself spans
    tlo, thi = display_window(t)
    truth_display = max(float(thi - tlo), 0.05)

    rc = r1 - r1.mean()
    corr = float(np.abs(np.vdot(tc, rc)) / (np.linalg.norm(tc) * np.linalg.norm(rc) + 1e-12))
    _, blur, _, tb, coef = _fit_blur(r1, t)
    fitted = r1.mean() + coef * tb
    corr_fit = float(np.abs(np.vdot(tb, rc)) / (np.linalg.norm(tb) * np.linalg.norm(rc) + 1e-12))
    contrast = float(abs(coef))  # the specimen's strength at its own (blurred) resolution
    # fine detail the truth carries (a smooth cell cannot look blurred)
    fine = float(np.sqrt((np.abs(tc - _gauss(tc, 1.5)) ** 2).mean()) / tn)

    # noise: fine-scale power beyond what the (blurred, scaled) specimen carries there;
    # power does not depend on where edges sit, so warps and sub-pixel slips are not noise
    def hf_power(z: np.ndarray) -> float:
        return float((np.abs(z - _gauss(z, 1.0)) ** 2).mean())

    # the specimen's share of fine-scale power scales with its coarse-scale power ratio,
    # which (unlike the fitted scale) a warp or a slip does not lower
    def lf_power(z: np.ndarray) -> float:
        return float((np.abs(_gauss(z, 2.0)) ** 2).mean())

    scale2 = min(lf_power(rc) / max(lf_power(tb), 1e-20), max(abs(coef) ** 2, 1.0))
    excess = hf_power(rc) - scale2 * hf_power(tb)
    noise = float(np.sqrt(max(excess, 0.0)) / amp / display0)
    # the error field: the reconstruction's phase relative to the model of the specimen,
    # in radians. A phase error is multiplicative; measured as a complex difference it
    # would carry the specimen's own structure with it
    ef = r1 * np.conj(fitted) / (np.abs(fitted) + 1e-3 * amp)
    eph = np.angle(ef * np.exp(-1j * np.angle(ef.mean())))
    eph = eph - eph.mean()

    def vis_rad(z: np.ndarray) -> float:
        return float(np.sqrt((np.abs(z) ** 2).mean()) / display0)

    lf = ndimage.gaussian_filter(eph, roi / 10)
    background = vis_rad(lf - lf.mean())

    # grid: residual at the scan-lattice frequencies, where the truth has no peaks
    win = np.outer(np.hanning(roi), np.hanning(roi))
    wn = float(np.sqrt((win**2).mean()))
    pad = 2 * roi
    fres = np.fft.fftshift(np.fft.fft2(eph * win, s=(pad, pad)))
    spec = np.abs(fres) ** 2
    f1 = np.fft.fftshift(np.fft.fftfreq(pad))
    fy, fx = np.meshgrid(f1, f1, indexing="ij")
    fr = np.hypot(fy, fx)
    tspec = np.abs(np.fft.fftshift(np.fft.fft2((t - t.mean()) * win, s=(pad, pad)))) ** 2
    keep = np.zeros_like(fr, bool)
    ratios, truth_ratios = [], []
    for my, mx in ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2)):
        for sg in (1, -1):
            ty, tx = sg * my / step_px, sg * mx / step_px
            if np.hypot(ty, tx) > 0.45:
                continue
            box = np.maximum(np.abs(fy - ty), np.abs(fx - tx))
            near = box <= 2.5 / pad
            # the neighbourhood of the peak, not its whole ring: a zone plate's rings or
            # a star's spokes fill rings of the spectrum but not a point
            ring = (box > 4.0 / pad) & (box <= 12.0 / pad)
            keep |= near
            ratios.append(spec[near].max() / (np.median(spec[ring]) + 1e-20))
            truth_ratios.append(tspec[near].max() / (np.median(tspec[ring]) + 1e-20))
    # the strongest lattice harmonic (a scan imprint need not have all of them), and the
    # specimen's own peak at that harmonic
    top = int(np.argmax(ratios)) if ratios else -1
    grid_peak = float(ratios[top]) if ratios else 0.0
    truth_peak = float(truth_ratios[top]) if ratios else 0.0
    grid = vis_rad(_band_component(fres, keep, roi)) / wn if scan == "raster" else 0.0
    # lines: residual power gathered in one direction, beyond the truth's own directions
    ang = np.mod(np.arctan2(fy, fx), np.pi)
    # the scan lattice's own frequencies belong to the grid measure, not to streaks
    band = (fr > 3.0 / roi) & (fr < 0.4) & ~ndimage.binary_dilation(keep, iterations=2)
    bins = np.minimum((ang / np.pi * 90).astype(int), 89)

    def angular(z: np.ndarray) -> np.ndarray:
        ps = np.abs(np.fft.fftshift(np.fft.fft2((z - z.mean()) * win, s=(pad, pad)))) ** 2
        h = np.bincount(bins[band], weights=ps[band], minlength=90)
        h = h + np.roll(h, 1) + np.roll(h, -1)
        return h / (h.mean() + 1e-20)

    a_res = angular(eph)
    a_tru = angular(t - _gauss(t, 3.0))
    ratio = a_res / np.maximum(a_tru, 1.0)
    peak_bin = int(np.argmax(ratio))
    lines_conc = float(ratio[peak_bin])
    dist = np.minimum(np.abs(bins - peak_bin), 90 - np.abs(bins - peak_bin))
    streak = np.abs(_band_component(fres, band & (dist <= 2), roi)) / wn
    lines = float(np.percentile(streak, 99.5) / display0)

    # vortices where the amplitude is not negligible, after a light smoothing so that
    # pixel noise does not count (a real vortex winds over several pixels)
    # counted in the error field (reconstruction over the model of the specimen), where
    # the specimen's own steep edges cannot pass for vortices
    mask = np.abs(_gauss(r1, 4.0)) >= 0.3 * np.median(np.abs(t))
    vortices = residues(_gauss(r1 * np.conj(fitted) / (np.abs(fitted) + 1e-6), 1.0), mask)

    # halo: a rim of shifted phase just outside features, against the far background
    tphase = np.angle(t * np.exp(-1j * np.angle(t.mean())))
    t_range = float(np.percentile(tphase, 99) - np.percentile(tphase, 1))
    fg = np.abs(tphase - np.median(tphase)) > 0.3 * max(t_range, 1e-3)
    ring_near = ndimage.binary_dilation(fg, iterations=6) & ~ndimage.binary_dilation(fg, iterations=1)
    far = ~ndimage.binary_dilation(fg, iterations=14)
    rphase = np.angle(r1 * np.conj(fitted))
    rphase = rphase - ndimage.gaussian_filter(rphase, roi / 5)
    if ring_near.sum() > 100 and far.sum() > 300 and fg.sum() > 60:
        halo = float(abs(rphase[ring_near].mean() - rphase[far].mean()) / display0)
    else:
        halo = 0.0

    # local distortion: spread of the shifts of structured tiles after global registration
    tile, stride = 32, 16
    grad = np.abs(np.gradient(t)[0]) + np.abs(np.gradient(t)[1])
    energies = [
        (float(grad[i : i + tile, j : j + tile].mean()), i, j)
        for i in range(0, roi - tile + 1, stride)
        for j in range(0, roi - tile + 1, stride)
    ]
    distortion = 0.0
    if energies and corr_fit > 0.5:
        cut = max(float(np.median([e for e, _, _ in energies])), 0.02 * amp)
        fh, rh = fitted - _gauss(fitted, 4.0), r1 - _gauss(r1, 4.0)  # slow variations do not shift tiles
        shifts = [
            _xcorr_shift(fh[i : i + tile, j : j + tile], rh[i : i + tile, j : j + tile], max_shift=5)
            for e, i, j in energies
            if e >= cut
        ]
        if len(shifts) >= 4:
            sh = np.array(shifts)
            distortion = float(np.percentile(np.hypot(*(sh - np.median(sh, 0)).T), 75))

    return {
        "error": float(np.sqrt((np.abs(r - t) ** 2).mean()) / amp),
        "display_rad": display,
        "specimen_display_rad": display0,
        "truth_display_rad": truth_display,
        "ramp_rad": ramp_rad,
        "ramp": float(ramp_rad / display0),
        "corr": corr,
        "corr_fit": corr_fit,
        "contrast": contrast,
        "fine_structure": fine,
        "blur_px": float(blur),
        "noise": noise,
        "background": background,
        "halo": halo,
        "grid": grid,
        "grid_peak": grid_peak,
        "grid_truth_peak": truth_peak,
        "lines": lines,
        "lines_concentration": lines_conc,
        "vortices": float(vortices),
        "distortion_px": distortion,
        "shift_px": list(shift),
    }
