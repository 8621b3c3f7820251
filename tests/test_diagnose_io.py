"""diagnose: reading users' reconstructions in every supported format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptychobench.diagnose.io import (
    DiagnoseError,
    centre_crop,
    expand,
    read,
    to_recon,
    trim_unscanned,
)

N = 48


def _obj(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phase = rng.standard_normal((N, N)) * 0.3
    return (0.5 + 0.5 * rng.random((N, N))) * np.exp(1j * phase)


def test_png_grey_and_rgb(tmp_path: Path) -> None:
    grey = (np.arange(N * N).reshape(N, N) % 251).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "c.png")
    g, c = read(tmp_path / "g.png"), read(tmp_path / "c.png")
    assert g.kind == c.kind == "image" and g.unit == "grey level"
    assert g.shape == c.shape == (N, N)
    assert np.array_equal(g.data, c.data)


def test_tiff_float_phase(tmp_path: Path) -> None:
    import tifffile

    phase = np.angle(_obj()).astype(np.float32)
    tifffile.imwrite(tmp_path / "phase.tif", phase)
    r = read(tmp_path / "phase.tif")
    assert r.kind == "phase" and r.unit == "rad"
    assert np.allclose(r.data, phase, atol=1e-6)


def test_npy_complex_and_multislice(tmp_path: Path) -> None:
    a, b = _obj(1), _obj(2)
    np.save(tmp_path / "one.npy", a[None].astype(np.complex64))  # pty-chi: (slices, H, W)
    np.save(tmp_path / "two.npy", np.stack([a, b]))
    one, two = read(tmp_path / "one.npy"), read(tmp_path / "two.npy")
    assert one.kind == "complex" and one.shape == (N, N)
    assert np.allclose(two.data, a * b)  # the projection of a multislice object


def test_npz_key_layouts(tmp_path: Path) -> None:
    o = _obj()
    np.savez(tmp_path / "named.npz", object=o, probe=np.ones((8, 8), complex), positions=np.zeros((5, 2)))
    assert np.allclose(read(tmp_path / "named.npz").data, o)
    np.savez(tmp_path / "ap.npz", amplitude=np.abs(o), phase=np.angle(o))
    assert np.allclose(read(tmp_path / "ap.npz").data, o)
    np.savez(tmp_path / "amb.npz", a=o, b=o)
    with pytest.raises(DiagnoseError, match=r"amb\.npz.*--key"):
        read(tmp_path / "amb.npz")
    assert np.allclose(read(tmp_path / "amb.npz", key="b").data, o)
    with pytest.raises(DiagnoseError, match="no array 'c'"):
        read(tmp_path / "amb.npz", key="c")


def test_hdf5_ptychi_layout_and_key(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    o = _obj()
    with h5py.File(tmp_path / "recon.h5", "w") as f:
        f["object"] = o[None].astype(np.complex64)
        f["probe"] = np.ones((1, 1, 16, 16), np.complex64)
        f["positions"] = np.zeros((20, 2))
        f["loss"] = np.linspace(1, 0.1, 30)
    r = read(tmp_path / "recon.h5")
    assert r.kind == "complex" and r.shape == (N, N) and "object" in r.source
    assert np.allclose(r.data, o, atol=1e-6)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["run1/obj"] = o
        f["run2/obj"] = o
    with pytest.raises(DiagnoseError, match=r"two\.h5.*run1/obj.*run2/obj.*--key"):
        read(tmp_path / "two.h5")
    assert read(tmp_path / "two.h5", key="run2/obj").shape == (N, N)
    with pytest.raises(DiagnoseError, match="no dataset 'nope'"):
        read(tmp_path / "two.h5", key="nope")


def test_ptyr_layout(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    o = _obj()
    with h5py.File(tmp_path / "scan.ptyr", "w") as f:
        f["content/obj/SMFG00/data"] = o[None]
        f["content/probe/SMFG00/data"] = np.ones((1, 16, 16), complex)
    r = read(tmp_path / "scan.ptyr")
    assert "content/obj/SMFG00/data" in r.name and np.allclose(r.data, o)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    for name in ("broken.h5", "broken.png", "broken.npy", "broken.tif"):
        (tmp_path / name).write_bytes(b"this is not a reconstruction")
        with pytest.raises(DiagnoseError, match=name.replace(".", r"\.")):
            read(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DiagnoseError, match="unknown file type .txt"):
        read(tmp_path / "notes.txt")
    np.save(tmp_path / "vec.npy", np.zeros(100))
    with pytest.raises(DiagnoseError, match=r"vec\.npy.*expected a 2-D"):
        read(tmp_path / "vec.npy")
    np.save(tmp_path / "nan.npy", np.full((N, N), np.nan))
    with pytest.raises(DiagnoseError, match="NaN"):
        read(tmp_path / "nan.npy")


def test_folder_expands_to_every_reconstruction(tmp_path: Path) -> None:
    np.save(tmp_path / "b.npy", _obj())
    Image.fromarray(np.zeros((N, N), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "readme.txt").write_text("skip me")
    (tmp_path / ".hidden.npy").write_bytes(b"")
    assert [p.name for p in expand([tmp_path])] == ["a.png", "b.npy"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiagnoseError, match="no reconstruction files"):
        expand([tmp_path / "empty"])


def test_unscanned_border_is_trimmed() -> None:
    o = _obj()
    padded = np.ones((N + 20, N + 30), complex)
    padded[7 : 7 + N, 11 : 11 + N] = o
    out, changed = trim_unscanned(padded)
    assert changed and out.shape == (N, N) and np.allclose(out, o)
    phase = np.zeros((N, N))
    phase[10:20, 10:20] = 1.0  # a phase map with flat borders is measured as it is
    assert trim_unscanned(phase)[1] is False


def test_centre_crop() -> None:
    r = to_recon(np.arange(60 * 80, dtype=float).reshape(60, 80), "field")
    c = centre_crop(r, 40)
    assert c.shape == (40, 40) and c.data[0, 0] == r.data[10, 20] and "central 40 px" in c.source
    with pytest.raises(DiagnoseError, match="cannot crop 70 x 70"):
        centre_crop(r, 70)
