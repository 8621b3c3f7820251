"""Measured ptychography data from a CXI file, reconstructed with pty-chi LSQML.

The simulation builds its own acquisitions (:mod:`.defects`); a beamline's data come as a
CXI file (the Coherent X-ray Imaging format: HDF5 with ``entry_1/instrument_1/detector_1/
data``, the detector's distance and pixel size, the source's wavelength and the sample's
``geometry_1/translation`` in metres). :func:`read_cxi` reads those, :func:`geometry`
turns them into the object's pixel size and the propagation distance, and
:func:`reconstruct_measured` runs :func:`.recon.reconstruct` on them with a
:class:`.recon.ReconParams`, so parameter advice applies to measured data as to simulated.

Near-field holography with a divergent beam (a focus ``z1`` upstream of the sample, the
detector ``z2`` downstream) is, by the Fresnel scaling theorem, a parallel-beam experiment
magnified by ``M = (z1 + z2) / z1`` over the effective distance ``z2 / M``; the object's
pixel is the detector's over ``M``. Without a focus distance the beam is taken as parallel
(pixel = detector pixel, distance = z2). Far field: pixel = wavelength z2 / (N detector pixel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .recon import ReconParams, ReconResult, reconstruct

DATA = "entry_1/instrument_1/detector_1/data"
DISTANCE = "entry_1/instrument_1/detector_1/distance"
PIXEL = "entry_1/instrument_1/detector_1/x_pixel_size"
MASK = "entry_1/instrument_1/detector_1/mask"
WAVELENGTH = "entry_1/instrument_1/source_1/wavelength"
ENERGY = "entry_1/instrument_1/source_1/energy"
TRANSLATION = "entry_1/sample_1/geometry_1/translation"
#: h c in joule metres: a CXI source may give its energy (J) instead of the wavelength
HC = 1.98644586e-25


@dataclass
class Measured:
    """One measured scan, ready for pty-chi."""

    name: str
    patterns: np.ndarray  # (n, P, P) float32 intensities as recorded
    translation_m: np.ndarray  # (n, 2) sample (y, x) translations, metres
    wavelength_m: float
    distance_m: float  # sample to detector
    detector_pixel_m: float
    valid: np.ndarray | None  # (P, P) True on good pixels
    focus_to_sample_m: float | None = None
    near_field: bool = False
    #: (centre (y, x) px, object shape) of the whole scan, kept by a subset so that
    #: half-data reconstructions share the whole scan's object frame
    frame: tuple[tuple[float, float], tuple[int, int]] | None = None

    @property
    def magnification(self) -> float:
        z1 = self.focus_to_sample_m
        return (z1 + self.distance_m) / z1 if (self.near_field and z1) else 1.0

    @property
    def propagation_m(self) -> float | None:
        """pty-chi's free-space propagation distance (None: far field)."""
        return self.distance_m / self.magnification if self.near_field else None

    @property
    def pixel_m(self) -> float:
        """The object's pixel size."""
        if self.near_field:
            return self.detector_pixel_m / self.magnification
        return self.wavelength_m * self.distance_m / (self.patterns.shape[-1] * self.detector_pixel_m)

    @property
    def positions_px(self) -> np.ndarray:
        """(y, x) positions in object pixels about the scan's centre (CXI translations enter
        with a + sign: pty-chi's position is where the probe sits on the object)."""
        p = self.translation_m / self.pixel_m
        centre = self.frame[0] if self.frame else (p.max(0) + p.min(0)) / 2
        return p - np.asarray(centre)

    def object_shape(self) -> tuple[int, int]:
        """The scan's extent plus one probe width plus a margin of 8 px per side."""
        if self.frame:
            return self.frame[1]
        ext = np.ptp(self.positions_px, axis=0)
        n = self.patterns.shape[-1]
        return int(np.ceil(ext[0])) + n + 16, int(np.ceil(ext[1])) + n + 16

    def subset(self, idx: np.ndarray) -> Measured:
        """The same scan with positions ``idx`` only (a half-data reconstruction), in the
        whole scan's object frame."""
        from dataclasses import replace

        p = self.translation_m / self.pixel_m
        frame = self.frame or (tuple((p.max(0) + p.min(0)) / 2), self.object_shape())
        return replace(self, patterns=self.patterns[idx], translation_m=self.translation_m[idx], frame=frame)

    def geometry_lines(self) -> list[str]:
        g = [f"{len(self.patterns)} patterns of {self.patterns.shape[1]} x {self.patterns.shape[2]} px"]
        g.append(f"wavelength {self.wavelength_m * 1e12:.2f} pm, sample-detector {self.distance_m:.4g} m")
        if self.near_field:
            g.append(
                f"near field: magnification {self.magnification:.2f}, effective distance "
                f"{self.propagation_m * 1e3:.4g} mm, object pixel {self.pixel_m * 1e9:.2f} nm"  # type: ignore[operator]
            )
        else:
            g.append(f"far field: object pixel {self.pixel_m * 1e9:.2f} nm")
        return g


def _scalar(f, key: str, where: str) -> float:
    if key not in f:
        raise DatasetError(f"{where}: not a CXI ptychography file (no {key})")
    v = np.asarray(f[key][()], dtype=np.float64).ravel()
    if v.size != 1 or not np.isfinite(v[0]) or v[0] <= 0:
        raise DatasetError(f"{where}: {key} must be one positive number, got {v[:3].tolist()}")
    return float(v[0])


def read_cxi(path: str | Path, near_field: bool | None = None, focus_to_sample_m: float | None = None) -> Measured:
    """The scan in a CXI file; a missing or malformed field is a one-line DatasetError.

    ``near_field`` and ``focus_to_sample_m`` default to the attributes of ``entry_1`` of
    that name when the file has them (the shipped P25 scan does), else far field."""
    import h5py

    p = Path(path).expanduser()
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise DatasetError(f"{p}: not a readable CXI (HDF5) file ({e})") from None
    with f:
        if DATA not in f or TRANSLATION not in f:
            raise DatasetError(f"{p}: not a CXI ptychography file (expected {DATA} and {TRANSLATION})")
        data = np.asarray(f[DATA][()])
        trans = np.asarray(f[TRANSLATION][()], dtype=np.float64)
        wavelength = _scalar(f, WAVELENGTH, str(p)) if WAVELENGTH in f else HC / _scalar(f, ENERGY, str(p))
        distance = _scalar(f, DISTANCE, str(p))
        pixel = _scalar(f, PIXEL, str(p))
        mask = np.asarray(f[MASK][()]) if MASK in f else None
        attrs = dict(f["entry_1"].attrs) if "entry_1" in f else {}
    if near_field is None:
        near_field = bool(attrs.get("near_field", False))
    if focus_to_sample_m is None and near_field and "focus_to_sample_m" in attrs:
        focus_to_sample_m = float(attrs["focus_to_sample_m"])
    if data.ndim != 3 or data.shape[1] != data.shape[2] or data.dtype.kind not in "uif":
        raise DatasetError(f"{p}: {DATA} has shape {data.shape} ({data.dtype}); expected (n, P, P) intensities")
    if trans.ndim != 2 or trans.shape[0] != data.shape[0] or trans.shape[1] < 2:
        raise DatasetError(f"{p}: {TRANSLATION} has shape {trans.shape}; expected ({data.shape[0]}, 3)")
    if not (np.all(np.isfinite(data)) and np.all(np.isfinite(trans))):
        raise DatasetError(f"{p}: patterns or translations hold NaN or infinite values")
    if near_field and focus_to_sample_m is not None and not focus_to_sample_m > 0:
        raise DatasetError(f"--focus-to-sample {focus_to_sample_m}: expected a positive distance in metres")
    valid = (mask == 0) if mask is not None and mask.shape == data.shape[1:] else None
    return Measured(
        name=p.stem,
        patterns=np.maximum(data, 0).astype(np.float32),
        translation_m=trans[:, [1, 0]],  # CXI: x, y, z -> (y, x)
        wavelength_m=wavelength,
        distance_m=distance,
        detector_pixel_m=pixel,
        valid=valid,
        focus_to_sample_m=focus_to_sample_m,
        near_field=near_field,
    )


def initial_probe(m: Measured) -> np.ndarray:
    """Near field: the square root of the mean hologram (the illumination as the detector
    sees it, flat phase). Far field: the back-propagated root mean pattern."""
    root = np.sqrt(np.maximum(m.patterns.mean(0), 0))
    if m.valid is not None:
        root = np.where(m.valid, root, np.median(root))
    if m.near_field:
        return root.astype(np.complex64)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(root))).astype(np.complex64)


def reconstruct_measured(m: Measured, params: ReconParams, seed: int = 0) -> ReconResult:
    """LSQML on measured data with ``params`` (data-preparation options, which re-bin or
    re-orient far-field patterns, do not apply and are refused)."""
    if params.bin_factor != 1 or params.recenter or params.orientation != "as recorded":
        raise DatasetError(
            "measured data are reconstructed as recorded: bin_factor, recenter and orientation cannot be changed here"
        )
    return reconstruct(
        m.patterns,
        m.positions_px,
        initial_probe(m),
        0,
        params,
        m.wavelength_m,
        m.pixel_m,
        m.pixel_m,
        seed,
        propagation_m=m.propagation_m,
        valid_mask=m.valid,
        obj_shape=m.object_shape(),
    )
