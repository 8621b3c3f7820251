"""Physical measurements of a reconstruction that need no ground truth.

Each is a number with a unit and a one-line meaning, computed from the reconstruction
alone, the way a ptychographer checks an image before trusting it:

* phase ramp across the field: a plane fitted to the phase gradient (interquartile mean of wrapped
  pixel differences, so structure edges and wraps do not pull it), end to end;
* phase vortices: residues of the phase, counted where the amplitude is not negligible
  (outside the illuminated or transmitting region the phase is noise and vortices mean
  nothing);
* scan-lattice energy: spectral peaks at the raster scan's frequencies (given the step);
* slow background: a large-window median of the phase, so compact features do not count;
* noise: the robust (median absolute deviation) size of the finest diagonal differences;
* Fourier ring correlation of two independent half-data reconstructions and its half-bit
  resolution (van Heel & Schatz 2005), as the field measures resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage, stats

from .io import DiagnoseError, Recon

#: the amplitude (smoothed, relative to its median) below which the phase is not trusted
AMPLITUDE_FLOOR = 0.2


@dataclass
class Measurement:
    key: str
    title: str
    value: float | None
    unit: str
    meaning: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FRC:
    """Fourier ring correlation of two half-data reconstructions."""

    frequency: list[float]  # ring centres, cycles per pixel
    frc: list[float]
    threshold: list[float]  # half-bit criterion per ring
    crossing: float | None  # first frequency where the FRC falls below the threshold
    resolution_px: float  # full period 1 / crossing (2 px: resolved up to Nyquist)
    gap: list[float] | None = None  # near field: the low-frequency band skipped (cycles per pixel)

    def to_dict(self) -> dict:
        return asdict(self)


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def phase_and_amplitude(recon: Recon) -> tuple[np.ndarray, np.ndarray | None]:
    """Phase (global offset removed for a complex object) and the amplitude, if known."""
    a = recon.data
    if recon.kind == "complex":
        return np.angle(a * np.exp(-1j * np.angle(a.mean()))), np.abs(a)
    return a.astype(np.float64), None


def trusted_region(amp: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose amplitude is not negligible (all of them without an amplitude).

    Small holes are closed: a vortex core has (near) zero amplitude by nature, and it must
    stay inside the region it belongs to; an opaque area wider than a few pixels stays out."""
    if amp is None:
        return np.ones(shape, bool)
    ref = float(np.median(amp))
    if ref <= 0:
        return np.ones(shape, bool)
    raw = np.pad(amp >= AMPLITUDE_FLOOR * ref, 3, mode="edge")
    closed = ndimage.binary_closing(raw, structure=np.ones((3, 3), bool), iterations=2)
    return closed[3:-3, 3:-3]


def _diff(phase: np.ndarray, axis: int, wrapped: bool) -> np.ndarray:
    d = np.diff(phase, axis=axis)
    return _wrap(d) if wrapped else d


def ramp(phase: np.ndarray, region: np.ndarray, wrapped: bool) -> tuple[float, float]:
    """Slope of the best plane (units per pixel), (gy, gx): the interquartile mean of the
    wrapped pixel differences inside ``region``. Where most of a field is flat or noisy
    that is the plane; edges of features are outliers and do not pull it, and unlike the
    median it is not stuck on a grey image's integer steps."""
    dy = _diff(phase, 0, wrapped)[(region[1:] & region[:-1])]
    dx = _diff(phase, 1, wrapped)[(region[:, 1:] & region[:, :-1])]
    gy = float(stats.trim_mean(dy, 0.25)) if dy.size else 0.0
    gx = float(stats.trim_mean(dx, 0.25)) if dx.size else 0.0
    return gy, gx


def deramp(phase: np.ndarray, g: tuple[float, float], wrapped: bool) -> np.ndarray:
    yy, xx = np.mgrid[0 : phase.shape[0], 0 : phase.shape[1]]
    out = phase - (g[0] * yy + g[1] * xx)
    if wrapped:
        out = _wrap(out - np.angle(np.mean(np.exp(1j * out))))
    return out - np.median(out)


def vortices(phase: np.ndarray, region: np.ndarray) -> tuple[int, int]:
    """(positive, negative) phase residues: 2x2 loops whose wrapped differences sum to
    +-2 pi, counted where all four corners are in ``region``."""
    d1 = _wrap(phase[:-1, 1:] - phase[:-1, :-1])
    d2 = _wrap(phase[1:, 1:] - phase[:-1, 1:])
    d3 = _wrap(phase[1:, :-1] - phase[1:, 1:])
    d4 = _wrap(phase[:-1, :-1] - phase[1:, :-1])
    s = d1 + d2 + d3 + d4
    inside = region[:-1, :-1] & region[1:, :-1] & region[:-1, 1:] & region[1:, 1:]
    return int(((s > np.pi) & inside).sum()), int(((s < -np.pi) & inside).sum())


def lattice(phase: np.ndarray, step_px: float) -> tuple[float, float]:
    """(peak ratio, relative amplitude) of the phase's spectrum at a raster scan's
    frequencies (1/step along y, x and the diagonals, and the second harmonics).

    Peak ratio: for each lattice direction (y, x, the diagonals, the second harmonics),
    the peak power near its two symmetric points over the larger of the median power on
    the ring and along the radial line there (geometric mean of the two); the largest
    over directions (1 = no peak; any periodic pattern at the step shows in one).
    Relative amplitude: RMS of the component at those points over the RMS of the phase."""
    n0, n1 = phase.shape
    win = np.outer(np.hanning(n0), np.hanning(n1))
    p = phase - phase.mean()
    pad = (2 * n0, 2 * n1)
    f = np.fft.fftshift(np.fft.fft2(p * win, s=pad))
    power = np.abs(f) ** 2
    fy, fx = np.meshgrid(
        np.fft.fftshift(np.fft.fftfreq(pad[0])), np.fft.fftshift(np.fft.fftfreq(pad[1])), indexing="ij"
    )
    fr = np.hypot(fy, fx)
    keep = np.zeros(power.shape, bool)
    ratios = []
    c0, c1 = pad[0] // 2, pad[1] // 2
    for my, mx in ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2)):
        pair = []
        for sg in (1, -1):
            ty, tx = sg * my / step_px, sg * mx / step_px
            if np.hypot(ty, tx) > 0.45:
                continue
            near = (np.abs(fy - ty) <= 2.5 / pad[0]) & (np.abs(fx - tx) <= 2.5 / pad[1])
            ring = np.abs(fr - np.hypot(ty, tx)) < 3.0 / min(pad)
            # the same direction a little nearer and farther: a feature's edge streak runs
            # radially through the point and is no peak there; a lattice peak is
            uy, ux = np.array([ty * pad[0], tx * pad[1]]) / np.hypot(ty * pad[0], tx * pad[1])
            radial = [
                power[round(c0 + ty * pad[0] + s * uy) % pad[0], round(c1 + tx * pad[1] + s * ux) % pad[1]]
                for s in (*range(-12, -3), *range(4, 13))
            ]
            keep |= near
            ref = max(float(np.median(power[ring])), float(np.median(radial)))
            pair.append(power[near].max() / (ref + 1e-20))
        if pair:  # a real pattern's spectrum is symmetric: both points must show it
            ratios.append(float(np.sqrt(np.prod(pair))) if len(pair) == 2 else pair[0])
    if not ratios:
        return 1.0, 0.0
    comp = np.fft.ifft2(np.fft.ifftshift(np.where(keep, f, 0)))[:n0, :n1]
    wn = np.sqrt((win**2).mean())
    amp = float(np.sqrt((np.abs(comp) ** 2).mean()) / wn / (p.std() + 1e-12))
    return float(np.max(ratios)), amp


def background(phase: np.ndarray, wrapped: bool) -> float:
    """RMS of the slow variation: a median filter over a sixth of the field (on a field
    reduced to 96 px, for speed), so that compact features, a minority of any window, are
    left out and only the level beneath them remains."""
    work = np.exp(1j * phase) if wrapped else phase
    scale = min(1.0, 96 / max(phase.shape))
    if scale < 1:
        if wrapped:
            work = ndimage.zoom(work.real, scale, order=1) + 1j * ndimage.zoom(work.imag, scale, order=1)
        else:
            work = ndimage.zoom(work, scale, order=1)
    small = np.angle(work) if wrapped else work
    size = max(5, round(max(small.shape) / 6) | 1)
    slow = ndimage.median_filter(small, size=size, mode="reflect")
    return float(np.std(slow))


def noise(phase: np.ndarray, region: np.ndarray, wrapped: bool) -> float:
    """Standard deviation of white noise that would explain the finest diagonal
    differences (phi00 - phi01 - phi10 + phi11 has variance 4 sigma^2 for white noise):
    1.4826 * MAD / 2. Smooth structure and ramps cancel in this difference."""
    d = phase[:-1, :-1] - phase[:-1, 1:] - phase[1:, :-1] + phase[1:, 1:]
    if wrapped:
        d = _wrap(d)
    inside = region[:-1, :-1] & region[1:, 1:]
    v = d[inside] if inside.any() else d.ravel()
    return float(1.4826 * np.median(np.abs(v - np.median(v))) / 2)


def half_bit(n_ring: np.ndarray) -> np.ndarray:
    """The half-bit information threshold for rings of ``n_ring`` pixels."""
    s = np.sqrt(np.maximum(n_ring, 1))
    return (0.2071 + 1.9102 / s) / (1.2071 + 0.9102 / s)


def frc(a: Recon, b: Recon, near_field: bool = False) -> FRC:
    """Fourier ring correlation of two half-data reconstructions of the same field.

    ``near_field``: the crossing is searched from the start of the longest band of
    agreement, past a low-frequency gap (:func:`_agreement_start`).

    Complex objects are compared as complex fields (global phase matched); phase maps as
    phase. Both are apodised with a Hann window so the field's edges add no correlation
    (its low sidelobes keep strong low frequencies from leaking into the outer rings; its
    main lobe shifts a sharp cut-off outwards by about two rings)."""
    if a.shape != b.shape:
        raise DiagnoseError(
            f"{b.name}: half reconstruction is {b.shape[0]} x {b.shape[1]} px but "
            f"{a.name} is {a.shape[0]} x {a.shape[1]} px; expected the same field"
        )
    if a.kind == "complex" and b.kind == "complex":
        x, y = a.data, b.data
        y = y * np.exp(1j * np.angle(np.vdot(y, x)))
    else:
        x, y = phase_and_amplitude(a)[0], phase_and_amplitude(b)[0]
    x, y = x - x.mean(), y - y.mean()
    n0, n1 = x.shape
    win = np.outer(np.hanning(n0), np.hanning(n1))
    fa, fb = np.fft.fftshift(np.fft.fft2(x * win)), np.fft.fftshift(np.fft.fft2(y * win))
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(n0)), np.fft.fftshift(np.fft.fftfreq(n1)), indexing="ij")
    width = 1.0 / min(n0, n1)
    idx = np.round(np.hypot(fy, fx) / width).astype(int).ravel()
    n_rings = min(n0, n1) // 2  # up to Nyquist
    ok = idx < n_rings
    idx = idx[ok]
    num = np.bincount(idx, (fa * np.conj(fb)).real.ravel()[ok], n_rings)
    pa = np.bincount(idx, (np.abs(fa) ** 2).ravel()[ok], n_rings)
    pb = np.bincount(idx, (np.abs(fb) ** 2).ravel()[ok], n_rings)
    count = np.bincount(idx, minlength=n_rings)
    curve = num / np.sqrt(pa * pb + 1e-30)
    thr = half_bit(count)
    freq = np.arange(n_rings) * width
    start, gap = 1, None  # ring 0 is the mean, removed
    if near_field:
        start = _agreement_start(curve, thr)
        gap = [round(float(freq[1]), 5), round(float(freq[start - 1]), 5)] if start > 1 else None
    crossing = None
    for i in range(start, n_rings):
        if curve[i] < thr[i]:
            f0, f1 = freq[i - 1], freq[i]
            d0, d1 = curve[i - 1] - thr[i - 1], curve[i] - thr[i]
            crossing = float(f0 + (f1 - f0) * d0 / (d0 - d1)) if d0 > 0 else float(f0 if i > 1 else f1)
            break
    resolution = 1.0 / crossing if crossing else 2.0
    return FRC(
        [round(float(v), 5) for v in freq[1:]],
        [round(float(v), 4) for v in curve[1:]],
        [round(float(v), 4) for v in thr[1:]],
        crossing,
        float(resolution),
        gap,
    )


def _agreement_start(curve: np.ndarray, thr: np.ndarray) -> int:
    """The first ring of the longest run of rings above the threshold.

    Near-field (holographic) phase contrast transfers the lowest spatial frequencies
    weakly (the contrast transfer function goes as sin(pi lambda z f^2)), so two half-data
    reconstructions can disagree there and agree far beyond: the first crossing would stop
    in that gap. The resolution is where the band of agreement ends."""
    above = np.concatenate([[False], curve[1:] >= thr[1:], [False]])
    edges = np.flatnonzero(np.diff(above.astype(int)))
    runs = list(zip(edges[::2], edges[1::2]))  # [first ring, one past the last) of each run
    if not runs:
        return 1
    first, _ = max(runs, key=lambda r: r[1] - r[0])
    return int(first) + 1


def measure(
    recon: Recon, scan_step: float | None = None, half: Recon | None = None, near_field: bool = False
) -> tuple[dict[str, Measurement], FRC | None]:
    """All truth-free measurements of ``recon`` (and the FRC against ``half``; near-field
    data skip a low-frequency gap, :func:`frc`)."""
    phase, amp = phase_and_amplitude(recon)
    wrapped = recon.unit == "rad"
    u = recon.unit
    region = trusted_region(amp, phase.shape)
    g = ramp(phase, region, wrapped)
    flat = deramp(phase, g, wrapped)
    inside = flat[region] if region.any() else flat.ravel()
    prange = float(np.percentile(inside, 99) - np.percentile(inside, 1))
    n0, n1 = phase.shape
    ramp_total = float(np.hypot(g[0] * n0, g[1] * n1))
    scale = max(prange, 1.0) if wrapped else max(prange, 1e-9)
    pos, neg = vortices(phase, region) if wrapped else (0, 0)
    bg = background(flat, wrapped)
    sigma = noise(flat, region, wrapped)
    out = [
        Measurement(
            "ramp",
            "Phase ramp",
            ramp_total,
            f"{u} across the field",
            "plane fitted to the phase gradient, end to end along its direction",
        ),
        Measurement(
            "ramp_rel",
            "Phase ramp / phase range",
            ramp_total / scale,
            "ratio",
            "the ramp against the specimen's own phase range (above ~0.5 it dominates the view)",
        ),
        Measurement(
            "phase_range",
            "Phase range",
            prange,
            u,
            "1st-99th percentile spread of the ramp-free phase: the specimen's contrast",
        ),
        Measurement(
            "vortices",
            "Phase vortices",
            float(pos + neg) if wrapped else None,
            "count",
            "phase residues where the amplitude is not negligible"
            if amp is not None
            else (
                "phase residues (no amplitude given: whole field)"
                if wrapped
                else "not measurable on a grey-level image (phase scale unknown)"
            ),
        ),
        Measurement(
            "vortex_balance",
            "Vortex charge balance",
            float(pos - neg) if wrapped else None,
            "count",
            "positive minus negative residues (vortices from noise come in pairs)",
        ),
        Measurement(
            "background",
            "Slow background",
            bg,
            u,
            "RMS of the phase beneath the features (median over a sixth of the field)",
        ),
        Measurement(
            "background_rel",
            "Slow background / phase range",
            bg / scale,
            "ratio",
            "slow variation against the specimen's contrast",
        ),
        Measurement("noise", "Noise", sigma, u, "white-noise sigma explaining the finest diagonal differences"),
        Measurement(
            "noise_rel", "Noise / phase range", sigma / scale, "ratio", "noise against the specimen's contrast"
        ),
        Measurement(
            "region",
            "Trusted region",
            float(region.mean()),
            "fraction of pixels",
            "where the amplitude is not negligible (all pixels without amplitude)",
        ),
    ]
    if scan_step:
        peak, amp_rel = lattice(flat, scan_step)
        out += [
            Measurement(
                "grid_peak",
                "Scan-lattice peak",
                peak,
                "x ring median",
                f"spectral power at the scan frequencies (step {scan_step:g} px) over its ring; 1 = none",
            ),
            Measurement(
                "grid_amp",
                "Scan-lattice amplitude",
                amp_rel,
                "fraction of phase RMS",
                "RMS of the phase component at the scan frequencies, relative to the phase's RMS",
            ),
        ]
    else:
        out.append(
            Measurement(
                "grid_peak",
                "Scan-lattice peak",
                None,
                "x ring median",
                "give --scan-step (px) to measure energy at the scan-lattice frequencies",
            )
        )
    curve = None
    if half is not None:
        curve = frc(recon, half, near_field)
        out.append(
            Measurement(
                "frc_resolution",
                "FRC half-bit resolution",
                curve.resolution_px,
                "px (full period)",
                "finest period at which the two half-data reconstructions still agree"
                + ("" if curve.crossing else " (no crossing: resolved to Nyquist)")
                + (
                    f" (near field: the low-frequency gap {curve.gap[0]:.3g}-{curve.gap[1]:.3g} cycles/px skipped)"
                    if curve.gap
                    else ""
                ),
            )
        )
    return {m.key: m for m in out}, curve
