"""Read a user's reconstruction from the files the field writes: PNG/TIFF, ``.npy``/``.npz``
and HDF5 (pty-chi objects as users save them, ptypy ``.ptyr`` files).

Every reader returns a :class:`Recon`: one 2-D array (complex object, phase map in
radians, or an image in grey levels) and where it came from. Anything that is not one
clear 2-D object fails with :class:`DiagnoseError` naming the file and what was expected,
because guessing which of several arrays is "the object" would diagnose the wrong thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
NUMPY_SUFFIXES = (".npy", ".npz")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".ptyr", ".cxi", ".nxs")
SUFFIXES = IMAGE_SUFFIXES + TIFF_SUFFIXES + NUMPY_SUFFIXES + HDF5_SUFFIXES
#: names under which reconstructions keep the object (pty-chi scripts, PEAR, ptypy exports)
OBJECT_NAMES = ("object", "obj", "recon", "reconstruction", "object_complex", "objects")
PHASE_NAMES = ("phase", "object_phase", "obj_phase")
AMPLITUDE_NAMES = ("amplitude", "amp", "magnitude", "mag", "object_amplitude", "obj_amplitude")
MIN_SIDE = 16
#: the largest array a reader loads (a header claiming more is refused before allocating)
MAX_ARRAY_BYTES = 2 * 1024**3
EXPECTED = "a 2-D phase or complex object (or a (slices, H, W) complex stack), as PNG/TIFF, .npy/.npz or HDF5"


class DiagnoseError(DatasetError):
    """A user's input that cannot be diagnosed; the message names the file and the fix."""


@dataclass
class Recon:
    """One reconstruction ready to measure.

    ``kind``: ``complex`` (object transmission), ``phase`` (a float phase map, radians) or
    ``image`` (integer grey levels, e.g. a PNG a viewer saved: phase in arbitrary units)."""

    name: str
    data: np.ndarray
    kind: str
    source: str = ""
    path: Path | None = None

    @property
    def unit(self) -> str:
        return "grey level" if self.kind == "image" else "rad"

    @property
    def shape(self) -> tuple[int, int]:
        n0, n1 = self.data.shape[:2]
        return int(n0), int(n1)


# --------------------------------------------------------------------------- arrays


def to_recon(arr: np.ndarray, name: str, source: str = "", path: Path | None = None) -> Recon:
    """Check and normalise an array: squeeze, project a multislice stack, grey an RGB
    image, refuse anything that is not one 2-D field."""
    a = np.asarray(arr)
    if a.dtype == object or a.dtype.kind not in "uifc":  # bool: a mask, not an object
        raise DiagnoseError(f"{name}: holds {a.dtype} data; expected {EXPECTED}")
    a = np.squeeze(a)
    if a.ndim == 3 and a.shape[-1] in (3, 4) and a.dtype.kind in "bu":  # RGB(A) image
        a = a[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        a = np.round(a).astype(np.uint16)
    if a.ndim == 3 and np.iscomplexobj(a):  # multislice object: the projection is what is seen
        a = np.prod(a, axis=0)
    if a.ndim != 2:
        raise DiagnoseError(f"{name}: array of shape {tuple(np.shape(arr))}; expected {EXPECTED}")
    if min(a.shape) < MIN_SIDE:
        raise DiagnoseError(
            f"{name}: field of {a.shape[0]} x {a.shape[1]} px is too small; "
            f"expected at least {MIN_SIDE} x {MIN_SIDE} px"
        )
    if not np.all(np.isfinite(a)):
        raise DiagnoseError(f"{name}: contains NaN or infinite values; expected a finite object")
    if np.iscomplexobj(a):
        kind, a = "complex", a.astype(np.complex128)
    elif a.dtype.kind in "bui":
        kind = "image"
    else:
        kind, a = "phase", a.astype(np.float64)
    a, trimmed = trim_unscanned(a)
    if trimmed:
        source = f"{source}, unscanned border trimmed" if source else "unscanned border trimmed"
    if np.ptp(np.abs(a) if kind == "complex" else a) == 0 and (kind != "complex" or np.ptp(np.angle(a)) == 0):
        raise DiagnoseError(f"{name}: every pixel has the same value; expected a reconstructed object")
    return Recon(name=name, data=a, kind=kind, source=source, path=path)


def trim_unscanned(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """Drop border rows and columns of a complex object that hold one constant value: pty-chi
    (and ptypy) keep the object buffer beyond the scanned field at its initial value, 1 + 0j,
    or at that value rescaled (pty-chi normalises the object, so an unlit border of
    0.6937 + 0j is common), which is no part of the image. The value is a corner's, real and
    positive, as an initial guess is; a measured field is never exactly constant on a whole
    line."""
    if not np.iscomplexobj(a):
        return a, False
    top, bottom, left, right = 0, a.shape[0], 0, a.shape[1]
    corners = [a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]]
    fill = next((c for c in corners if c.imag == 0 and c.real > 0), None)
    if fill is None:
        return a, False

    def unscanned(v: np.ndarray) -> bool:
        return bool(np.all(v == fill))

    while bottom - top > MIN_SIDE and unscanned(a[top, left:right]):
        top += 1
    while bottom - top > MIN_SIDE and unscanned(a[bottom - 1, left:right]):
        bottom -= 1
    while right - left > MIN_SIDE and unscanned(a[top:bottom, left]):
        left += 1
    while right - left > MIN_SIDE and unscanned(a[top:bottom, right - 1]):
        right -= 1
    changed = (top, bottom, left, right) != (0, a.shape[0], 0, a.shape[1])
    return a[top:bottom, left:right], changed


def centre_crop(recon: Recon, size: int) -> Recon:
    """The central ``size`` x ``size`` pixels: the well-illuminated field, without the
    object buffer's weakly lit margins (the dataset measures and renders that field too)."""
    h, w = recon.shape
    if size < MIN_SIDE or size > min(h, w):
        raise DiagnoseError(
            f"{recon.name}: cannot crop {size} x {size} px from a {h} x {w} px field "
            f"(expected {MIN_SIDE} to {min(h, w)})"
        )
    top, left = (h - size) // 2, (w - size) // 2
    src = f"{recon.source}, central {size} px" if recon.source else f"central {size} px"
    return Recon(recon.name, recon.data[top : top + size, left : left + size], recon.kind, src, recon.path)


def _pick(names: Sequence[str], candidates: Sequence[str]) -> list[str]:
    """Entries of ``names`` whose last path component is one of ``candidates``."""
    return [n for n in names if n.rstrip("/").split("/")[-1].lower() in candidates]


def _amp_phase(get, names: Sequence[str]) -> np.ndarray | None:
    """An object stored as separate amplitude and phase arrays, when exactly one of each."""
    ph, amp = _pick(names, PHASE_NAMES), _pick(names, AMPLITUDE_NAMES)
    if len(ph) == 1 and len(amp) == 1:
        return np.asarray(get(amp[0])) * np.exp(1j * np.asarray(get(ph[0])))
    return None


# --------------------------------------------------------------------------- formats


def check_size(shape: Sequence[int], dtype: np.dtype, where: str) -> None:
    """DiagnoseError when an array's header claims more than :data:`MAX_ARRAY_BYTES`."""
    n = int(np.prod([int(x) for x in shape], dtype=object)) * np.dtype(dtype).itemsize
    if n > MAX_ARRAY_BYTES:
        raise DiagnoseError(
            f"{where}: its header claims an array of shape {tuple(shape)} ({n / 2**30:.1f} GiB); "
            f"over {MAX_ARRAY_BYTES / 2**30:.0f} GiB is refused"
        )


def _npy_header(f, where: str) -> None:
    """Check a .npy stream's header (shape and dtype) before its data is read."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:  # 2.0, and 3.0 (the same header, UTF-8 field names)
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise DiagnoseError(f"{where}: not a readable NumPy array ({e}); expected {EXPECTED}") from None
    check_size(shape, dtype, where)


def _check_numpy_file(path: Path) -> None:
    """Every array header of a .npy or .npz file, before anything is loaded."""
    import zipfile

    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.filename.endswith(".npy"):
                        with z.open(info) as f:
                            _npy_header(f, f"{path}:{info.filename[:-4]}")
        except (zipfile.BadZipFile, OSError) as e:
            raise DiagnoseError(f"{path}: not a readable NumPy file ({e}); expected {EXPECTED}") from None
        return
    with path.open("rb") as f:
        _npy_header(f, str(path))


def _read_image(path: Path) -> Recon:
    from PIL import Image, UnidentifiedImageError

    from ..safeio import check_image_header

    check_image_header(path, str(path), DiagnoseError)
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L") if im.mode in ("RGB", "RGBA", "P", "LA", "1", "CMYK") else im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DiagnoseError(f"{path}: not a readable image ({e}); expected {EXPECTED}") from None
    return to_recon(arr, str(path), "image file", path)


def _read_tiff(path: Path) -> Recon:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0] if tif.series else None
            if series is not None:
                check_size(series.shape, series.dtype, str(path))
        arr = tifffile.imread(path)
    except DiagnoseError:
        raise
    except Exception as e:  # noqa: BLE001 - tifffile raises many kinds; all mean "unreadable"
        raise DiagnoseError(f"{path}: not a readable TIFF ({type(e).__name__}: {e}); expected {EXPECTED}") from None
    return to_recon(arr, str(path), "TIFF", path)


def _read_npy(path: Path, key: str | None) -> Recon:
    _check_numpy_file(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DiagnoseError(f"{path}: not a readable NumPy file ({e}); expected {EXPECTED}") from None
    if isinstance(loaded, np.ndarray):
        if key:
            raise DiagnoseError(f"{path}: a .npy file holds one array; --key {key!r} applies to .npz and HDF5")
        return to_recon(loaded, str(path), "npy", path)
    with loaded:
        names = list(loaded.files)
        if key:
            if key not in names:
                raise DiagnoseError(f"{path}: no array {key!r}; it holds: {', '.join(names)}")
            return to_recon(loaded[key], f"{path}:{key}", f"npz key {key}", path)
        if len(names) == 1:
            return to_recon(loaded[names[0]], f"{path}:{names[0]}", f"npz key {names[0]}", path)
        found = _pick(names, OBJECT_NAMES)
        if len(found) == 1:
            return to_recon(loaded[found[0]], f"{path}:{found[0]}", f"npz key {found[0]}", path)
        combined = _amp_phase(lambda n: loaded[n], names) if not found else None
        if combined is not None:
            return to_recon(combined, str(path), "npz amplitude and phase", path)
        found = found or _pick(names, PHASE_NAMES)
        if len(found) == 1:
            return to_recon(loaded[found[0]], f"{path}:{found[0]}", f"npz key {found[0]}", path)
    raise DiagnoseError(
        f"{path}: cannot tell which array is the object (arrays: {', '.join(names)}); name one with --key"
    )


def _h5_datasets(f) -> list[str]:
    import h5py

    out: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 2:
            out.append(name)

    f.visititems(visit)
    return out


def _h5_read(f, name: str, path: Path) -> np.ndarray:
    """One HDF5 dataset, its size checked before it is read."""
    data = f[name]
    check_size(data.shape, data.dtype, f"{path}:{name}")
    return data[()]


def _read_hdf5(path: Path, key: str | None) -> Recon:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DiagnoseError(f"{path}: not a readable HDF5 file ({e}); expected {EXPECTED}") from None
    with f:
        if key:
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise DiagnoseError(
                    f"{path}: no dataset {key!r}; 2-D+ datasets: {', '.join(_h5_datasets(f)) or 'none'}"
                )
            return to_recon(_h5_read(f, key, path), f"{path}:{key}", f"HDF5 {key}", path)
        # ptypy: content/obj/<storage id>/data
        if "content/obj" in f and isinstance(f["content/obj"], h5py.Group):
            storages = [f"content/obj/{s}/data" for s in f["content/obj"] if f"content/obj/{s}/data" in f]
            if len(storages) == 1:
                return to_recon(_h5_read(f, storages[0], path), f"{path}:{storages[0]}", f"ptypy {storages[0]}", path)
            if len(storages) > 1:
                raise DiagnoseError(
                    f"{path}: ptypy file with {len(storages)} object storages "
                    f"({', '.join(storages)}); name one with --key"
                )
        names = _h5_datasets(f)
        for candidates in (OBJECT_NAMES, PHASE_NAMES):
            found = _pick(names, candidates)
            if len(found) == 1:
                return to_recon(_h5_read(f, found[0], path), f"{path}:{found[0]}", f"HDF5 {found[0]}", path)
            if len(found) > 1:
                raise DiagnoseError(f"{path}: several candidate objects ({', '.join(found)}); name one with --key")
            if candidates is OBJECT_NAMES:
                combined = _amp_phase(lambda n: _h5_read(f, n, path), names)
                if combined is not None:
                    return to_recon(combined, str(path), "HDF5 amplitude and phase", path)
        if len(names) == 1:
            return to_recon(_h5_read(f, names[0], path), f"{path}:{names[0]}", f"HDF5 {names[0]}", path)
        raise DiagnoseError(
            f"{path}: cannot tell which dataset is the object (2-D+ datasets: "
            f"{', '.join(names) or 'none'}); name one with --key"
        )


def read(path: Path | str, key: str | None = None) -> Recon:
    """Read one reconstruction file (format chosen by suffix)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DiagnoseError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        if key:
            raise DiagnoseError(f"{p}: --key applies to .npz and HDF5 files, not images")
        return _read_image(p)
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(p)
    if suffix in NUMPY_SUFFIXES:
        return _read_npy(p, key)
    if suffix in HDF5_SUFFIXES:
        return _read_hdf5(p, key)
    raise DiagnoseError(f"{p}: unknown file type {suffix or '(none)'}; expected one of {', '.join(SUFFIXES)}")


def expand(paths: Iterable[Path | str]) -> list[Path]:
    """Files to diagnose: each file as given, and every readable file in a folder (sorted,
    hidden files and other suffixes skipped)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(
                q for q in p.iterdir() if q.is_file() and not q.name.startswith(".") and q.suffix.lower() in SUFFIXES
            )
            if not found:
                raise DiagnoseError(f"{p}: folder holds no reconstruction files ({', '.join(SUFFIXES)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DiagnoseError(f"{p}: no such file or folder")
    return out
