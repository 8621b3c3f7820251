"""Experiments: a specimen, an instrument, injected defects and the current parameters.

An :class:`Experiment` is a small JSON-able recipe; :func:`acquire` turns it into the
measured data (deterministic for the experiment's seed). Acquisition defects change what
the detector records or what the workflow believes about the scan; reconstruction-side
faults change the "current parameter set" a user starts from. Defects never set labels:
labels are measured on the reconstruction (see :mod:`.measure`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from . import forward, instruments, objects
from .recon import ReconParams


@dataclass(frozen=True)
class Scale:
    """Geometry and conventions of a build. ``full``/``quick`` are sim-v1's (kept so its
    experiments can still be regenerated); ``v2``/``v2-quick`` are sim-v2's: a field twice
    as wide, a probe and step 1.4x larger (fewer positions per area, same overlap), an
    initial probe known from an earlier scan, and default parameters that converge."""

    n_obj: int  # object grid (pixels)
    scan_fov: float  # extent of the scan positions (pixels)
    roi: int  # well-illuminated central region that is rendered and measured
    base_epochs: int  # iterations of the default parameter set
    step_factor: float = 1.0  # instrument step and probe width scaled by this
    known_probe: bool = False  # the workflow starts from the instrument's measured probe
    batch_size: int = 25  # default batch size
    momentum: bool = False  # default momentum acceleration
    render_size: int = 128  # pixels of the rendered image


SCALES = {
    "full": Scale(n_obj=112, scan_fov=48.0, roi=64, base_epochs=20),
    # the --quick build: same physics on a smaller field, for tests
    "quick": Scale(n_obj=96, scan_fov=32.0, roi=48, base_epochs=12),
    "v2": Scale(
        n_obj=176,
        scan_fov=104.0,
        roi=128,
        base_epochs=30,
        step_factor=1.4,
        known_probe=True,
        batch_size=16,
        momentum=True,
        render_size=256,
    ),
    # text-task experiments: the v1 field with v2's conventions (their many option
    # trials stay affordable; the text describes the run, no image is shown)
    "v2-text": Scale(
        n_obj=112,
        scan_fov=50.0,
        roi=64,
        base_epochs=30,
        step_factor=1.4,
        known_probe=True,
        batch_size=16,
        momentum=True,
    ),
    "v2-text-quick": Scale(
        n_obj=96,
        scan_fov=32.0,
        roi=48,
        base_epochs=20,
        known_probe=True,
        batch_size=16,
        momentum=True,
    ),
    "v2-quick": Scale(
        n_obj=120,
        scan_fov=60.0,
        roi=80,
        base_epochs=20,
        step_factor=1.4,
        known_probe=True,
        batch_size=16,
        momentum=True,
        render_size=160,
    ),
}

ACQUISITION_DEFECTS = (
    "position_jitter",
    "position_affine",
    "raster_poor_probe",
    "partial_coherence",
    "probe_variation",
    "low_dose",
    "off_centre",
    "orientation",
    "detector_defects",
    "saturated_centre",
    "beamstop",
    "scan_line_jitter",
    "thick_sample",
)
RECONSTRUCTION_FAULTS = (
    "few_iterations",
    "strong_regularization",
    "unsuitable_batch",
    "compact_no_momentum",
    "poisson_noise_model",
    "spurious_position_correction",
    "spurious_opr",
    "single_batch_no_momentum",
)
DEFECTS = ACQUISITION_DEFECTS + RECONSTRUCTION_FAULTS

# how often each defect is drawn (relative); rarer-label producers are drawn more often
DEFECT_WEIGHTS = {
    "position_jitter": 1.2,
    "position_affine": 1.0,
    "raster_poor_probe": 1.2,
    "partial_coherence": 1.0,
    "probe_variation": 1.0,
    "low_dose": 1.3,
    "off_centre": 1.1,
    "orientation": 0.6,
    "detector_defects": 1.0,
    "saturated_centre": 0.7,
    "beamstop": 1.0,
    "scan_line_jitter": 0.9,
    "thick_sample": 0.8,
    "few_iterations": 1.0,
    "strong_regularization": 1.0,
    "unsuitable_batch": 0.6,
    "compact_no_momentum": 0.6,
    "poisson_noise_model": 0.6,
    "spurious_position_correction": 0.5,
    "spurious_opr": 0.5,
    "single_batch_no_momentum": 0.6,
}


@dataclass
class Experiment:
    index: int
    seed: int
    sample_type: str
    instrument: str
    scan: str
    defects: dict[str, dict] = field(default_factory=dict)  # name -> {"severity", ...}
    params: ReconParams = field(default_factory=ReconParams)
    scale: str = "full"

    @property
    def geometry(self) -> Scale:
        return SCALES[self.scale]

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "seed": self.seed,
            "sample_type": self.sample_type,
            "instrument": self.instrument,
            "scan": self.scan,
            "defects": self.defects,
            "params": self.params.to_dict(),
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Experiment:
        return cls(
            d["index"],
            d["seed"],
            d["sample_type"],
            d["instrument"],
            d["scan"],
            d["defects"],
            ReconParams(**d["params"]),
            d.get("scale", "full"),
        )


@dataclass
class Acquisition:
    patterns: np.ndarray  # (n, P, P) DC-centred counts, as recorded
    positions: np.ndarray  # nominal (y, x) positions the workflow is given
    true_positions: np.ndarray
    probe0: np.ndarray  # initial probe guess the workflow starts from
    true_object: np.ndarray  # (n_slices, N, N)
    wavelength_m: float
    pixel_m: float
    slice_spacing_m: float
    step_px: float
    valid_mask: np.ndarray  # detector pixels that are trustworthy


def instrument_for(exp: Experiment) -> instruments.Instrument:
    """The instrument as this experiment's build uses it (step and probe scaled)."""
    inst = instruments.INSTRUMENTS[exp.instrument]
    f = exp.geometry.step_factor
    if f == 1.0:
        return inst
    return replace(inst, step_px=round(inst.step_px * f, 2), probe_width_px=round(inst.probe_width_px * f, 2))


def draw_experiment(
    index: int,
    seed: int,
    rng: np.random.Generator,
    scale: str = "full",
    pool: tuple[str, ...] = instruments.MAIN_INSTRUMENTS,
) -> Experiment:
    """Draw a specimen, an instrument from ``pool``, 0-2 defects with severities and the
    current parameters."""
    geo = SCALES[scale]
    base_epochs = geo.base_epochs
    sample_type = list(objects.SAMPLE_TYPES)[int(rng.integers(len(objects.SAMPLE_TYPES)))]
    inst_name = pool[int(rng.integers(len(pool)))]
    inst = instruments.INSTRUMENTS[inst_name]
    scan = inst.scan if rng.random() < 0.7 else ("raster" if inst.scan == "fermat" else "fermat")
    names = list(DEFECT_WEIGHTS)
    w = np.array([DEFECT_WEIGHTS[n] for n in names])
    u = rng.random()
    n_def = 0 if u < 0.14 else (1 if u < 0.72 else 2)
    chosen = [str(x) for x in rng.choice(names, size=n_def, replace=False, p=w / w.sum())] if n_def else []
    defects: dict[str, dict] = {}
    params = ReconParams(n_epochs=base_epochs, batch_size=geo.batch_size, momentum=geo.momentum)
    for name in sorted(chosen):
        sev = float(np.round(rng.uniform(0.15, 1.0), 2))
        d: dict = {"severity": sev}
        if name == "raster_poor_probe" or name == "scan_line_jitter":
            scan = "raster"
        if name == "orientation":
            d["kind"] = str(rng.choice(["transpose", "flip-y"]))
        if name == "off_centre":
            d["angle"] = float(np.round(rng.uniform(0, 2 * np.pi), 3))
        if name == "few_iterations":
            params = params.with_(n_epochs=int(round(10 - 7 * sev)))
        if name == "strong_regularization":
            params = params.with_(regularization=float(np.round(0.03 + 0.095 * sev, 3)))
        if name == "unsuitable_batch":
            params = params.with_(batch_size=int(rng.choice([2, 3, 4])) if rng.random() < 0.5 else 400)
        if name == "compact_no_momentum":
            params = params.with_(
                batching="compact", momentum=False, n_epochs=int(round(base_epochs * (1 - 0.5 * sev)))
            )
        if name == "poisson_noise_model":
            params = params.with_(noise_model="poisson")
        if name == "spurious_position_correction":
            params = params.with_(position_correction=True, affine_constraint=bool(rng.random() < 0.5))
        if name == "spurious_opr":
            params = params.with_(n_opr_modes=int(rng.integers(1, 3)))
        if name == "single_batch_no_momentum":
            params = params.with_(batch_size=400, momentum=False, n_epochs=int(round(base_epochs * (1 - 0.5 * sev))))
        defects[name] = d
    # some users already run with a few extras switched on; options must then be judged
    # against them (and the "disable" options become applicable)
    if "spurious_position_correction" not in defects and rng.random() < 0.15:
        params = params.with_(position_correction=True, affine_constraint=bool(rng.random() < 0.3))
    if rng.random() < 0.2:
        # v1 users sometimes switch momentum on; v2's default has it, some switch it off
        params = params.with_(momentum=not geo.momentum)
    if rng.random() < 0.12:
        params = params.with_(n_probe_modes=int(rng.integers(2, 4)), multimodal_update=bool(rng.random() < 0.6))
    return Experiment(index, seed, sample_type, inst_name, scan, defects, params, scale)


def _poor_probe(p: int, width: float) -> np.ndarray:
    y, x = np.mgrid[0:p, 0:p] - (p - 1) / 2
    g = np.exp(-(x**2 + y**2) / (2 * (width * 1.3) ** 2)).astype(np.complex64)
    return g / np.sqrt((np.abs(g) ** 2).sum())


def acquire(exp: Experiment) -> Acquisition:
    """Simulate the measurement of an experiment (deterministic for ``exp.seed``)."""
    rng = np.random.default_rng([exp.seed, 1])
    g = exp.geometry
    inst = instrument_for(exp)
    d = exp.defects
    sev = {k: v["severity"] for k, v in d.items()}
    p = inst.detector_px
    wavelength, pixel = inst.wavelength_m, inst.pixel_size_nm * 1e-9

    thick = "thick_sample" in d
    obj = objects.make_object(exp.sample_type, rng, g.n_obj, n_slices=2 if thick else 1)
    dz = (10.0 + 40.0 * sev.get("thick_sample", 0.0)) * pixel**2 / wavelength
    transfer = forward.asm_transfer(p, wavelength, pixel, dz) if thick else None

    nominal = instruments.scan_positions(inst, g.scan_fov, rng, scan=exp.scan)
    true = nominal.copy()
    n = len(nominal)
    if "position_jitter" in d:
        true += rng.normal(0, 0.6 + 2.4 * sev["position_jitter"], true.shape)
    if "position_affine" in d:
        s = sev["position_affine"]
        scale = 1 + (0.01 + 0.03 * s) * rng.choice([-1, 1])
        th = np.deg2rad((0.5 + 2 * s) * rng.choice([-1, 1]))
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        drift = np.outer(np.linspace(0, 1, n), rng.normal(0, 1, 2)) * (0.5 + 2 * s)
        true = (true @ rot.T) * scale + drift
    if "scan_line_jitter" in d:
        rows = np.unique(np.round(nominal[:, 0], 3))
        offs = rng.normal(0, 1.5 + 3.0 * sev["scan_line_jitter"], len(rows))
        for r, o in zip(rows, offs):
            true[np.isclose(nominal[:, 0], r), 1] += o
    true = np.clip(true, -g.n_obj / 2 + p / 2 + 2, g.n_obj / 2 - p / 2 - 2)

    probe = instruments.make_probe(inst, rng)
    if "partial_coherence" in d:
        modes = instruments.incoherent_modes(probe, 3, 0.8 - 0.45 * sev["partial_coherence"])
    else:
        modes = probe[None]
    if "probe_variation" in d:
        s = sev["probe_variation"]
        t = np.linspace(0, 1, n)
        var = instruments.make_probe(inst, rng, defocus=rng.uniform(1.6, 2.4)) - probe
        a = (0.3 + 0.9 * s) * (np.sin(2 * np.pi * (1.5 * t + rng.random())) + 0.5 * (t - 0.5))
        inten = 1 + (0.1 + 0.3 * s) * np.sin(2 * np.pi * (0.7 * t + rng.random()))
        probes = (
            modes[None] + a[:, None, None, None] * var[None, None] * (np.arange(len(modes)) == 0)[None, :, None, None]
        )
        probes = probes * np.sqrt(inten)[:, None, None, None]
    else:
        probes = modes

    shift = (0.0, 0.0)
    if "off_centre" in d:
        mag = 1.0 + 3.0 * sev["off_centre"]
        shift = (mag * np.sin(d["off_centre"]["angle"]), mag * np.cos(d["off_centre"]["angle"]))
    clean = forward.simulate_patterns(obj, probes, true, transfer, center_shift=shift)
    dose = inst.dose
    if "low_dose" in d:
        dose *= 10 ** (-2.0 - 1.5 * sev["low_dose"])
    scale = dose / clean.sum((1, 2)).mean()
    counts = rng.poisson(clean * scale).astype(np.float32)

    mask = np.ones((p, p), bool)
    if "detector_defects" in d:
        s = sev["detector_defects"]
        dead = rng.random((p, p)) < 0.004 + 0.03 * s
        counts[:, dead] = 0
        mask &= ~dead
        for _ in range(1 + int(2 * s)):
            k = int(rng.integers(p // 2 - 12, p // 2 + 12))
            if rng.random() < 0.5:
                counts[:, k, :] *= rng.uniform(0, 0.3)
                mask[k, :] = False
            else:
                counts[:, :, k] *= rng.uniform(0, 0.3)
                mask[:, k] = False
        # hot pixels near the centre: each adds a fringe (a stripe pattern) to the object
        n_hot = 1 + int(2 * s)
        rad = rng.uniform(3, 12, n_hot)
        ang = rng.uniform(0, 2 * np.pi, n_hot)
        hy = np.clip(np.round(p // 2 + rad * np.sin(ang)).astype(int), 0, p - 1)
        hx = np.clip(np.round(p // 2 + rad * np.cos(ang)).astype(int), 0, p - 1)
        counts[:, hy, hx] += counts.max() * (0.05 + 0.3 * s)
        mask[hy, hx] = False
    if "saturated_centre" in d:
        # detector saturation: the direct beam clips at a full-well level
        peak = np.quantile(counts.max((1, 2)), 0.5)
        counts = np.minimum(counts, peak * (0.25 - 0.22 * sev["saturated_centre"]))
    if "beamstop" in d:
        # a central beamstop the workflow does not mask: the lowest spatial frequencies
        # are (nearly) missing from the data
        yy, xx = np.mgrid[0:p, 0:p] - p // 2
        stop = np.hypot(yy, xx) <= 1.0 + 3.0 * sev["beamstop"]
        counts[:, stop] = np.round(counts[:, stop] * rng.uniform(0.0, 0.03)).astype(np.float32)
        mask &= ~stop
    if "orientation" in d:
        counts = _orient(counts, d["orientation"]["kind"])

    if "raster_poor_probe" in d:
        probe0 = _poor_probe(p, inst.probe_width_px * (1.0 + sev["raster_poor_probe"]))
    elif g.known_probe:
        # the probe reconstructed from an earlier scan on this instrument (its coherent
        # main mode; partial coherence or a varying beam are what this scan adds)
        probe0 = probe
    else:
        # a model probe from the nominal optics: right family, inexact defocus
        probe0 = instruments.make_probe(inst, np.random.default_rng([exp.seed, 2]))
    # unnormalised FFT: a pattern sums to P^2 * sum|probe|^2, so this probe carries the dose
    probe0 = (probe0 * np.sqrt(dose) / p).astype(np.complex64)
    return Acquisition(counts, nominal, true, probe0, obj, wavelength, pixel, dz, inst.step_px, mask)


def _orient(patterns: np.ndarray, kind: str) -> np.ndarray:
    if kind == "transpose":
        return np.ascontiguousarray(np.swapaxes(patterns, -1, -2))
    if kind == "flip-y":
        return np.ascontiguousarray(patterns[..., ::-1, :])
    if kind == "flip-x":
        return np.ascontiguousarray(patterns[..., :, ::-1])
    return patterns


def prepare(acq: Acquisition, params: ReconParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The workflow's data preparation: orientation, recentring, cropping.

    Returns (patterns, positions, initial probe, object pixel size factor)."""
    pats = _orient(acq.patterns, params.orientation) if params.orientation != "as recorded" else acq.patterns
    probe0 = acq.probe0
    pos = acq.positions
    if params.recenter:
        # shift every pattern so the centre of mass of the mean pattern sits at the centre
        mean = pats.mean(0)
        cy, cx = ndimage.center_of_mass(mean)
        c = pats.shape[-1] // 2  # the DC pixel of a centred (fftshift-ed) pattern
        dy, dx = int(round(c - cy)), int(round(c - cx))
        pats = np.roll(pats, (dy, dx), axis=(-2, -1))
    factor = 1
    if params.bin_factor == 2:
        p = pats.shape[-1]
        q = p // 4
        pats = np.ascontiguousarray(pats[:, q : p - q, q : p - q])
        # real-space pixels twice as large: the probe is resampled, positions halved
        f = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe0)))[q : p - q, q : p - q]
        probe0 = (np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(f))) / 2).astype(np.complex64)
        pos = pos / 2
        factor = 2
    return pats, pos, probe0, factor


def centre_of_mass_offset(patterns: np.ndarray) -> tuple[float, float]:
    mean = patterns.mean(0)
    cy, cx = ndimage.center_of_mass(mean)
    c = patterns.shape[-1] // 2
    return float(cy - c), float(cx - c)
