"""Measured data: the shipped PETRA III P25 near-field scan, its geometry, a short pty-chi
reconstruction of it (20 epochs, under a minute) that diagnose reads with its unlit border
trimmed, the near-field FRC, and the CLI's errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from ptychobench import realdata
from ptychobench.cli import app
from ptychobench.sim.cxi import read_cxi


def test_shipped_scan_and_its_licence() -> None:
    path = realdata.SHIPPED["p25"]
    assert path.stat().st_size < 2_000_000
    licence = (path.parent / "LICENSE-DATA.md").read_text()
    for needed in ("CC BY 4.0", "10.5281/zenodo.17899482", "Samadi", "Guizar-Sicairos", "What was changed"):
        assert needed in licence
    m = read_cxi(path)
    assert m.near_field and m.patterns.shape == (200, 100, 100)
    assert m.magnification == pytest.approx(307.85, abs=0.01)
    assert m.propagation_m == pytest.approx(3.638e-3, abs=1e-6)
    assert m.pixel_m == pytest.approx(178.66e-9, abs=0.01e-9)
    pos = m.positions_px
    assert np.allclose((pos.max(0) + pos.min(0)) / 2, 0) and 100 < np.ptp(pos, axis=0).max() < 120
    half = m.subset(np.arange(0, 200, 2))
    assert half.object_shape() == m.object_shape()  # halves share the whole scan's frame
    assert np.allclose(half.positions_px, pos[::2])


def test_far_field_geometry_without_attributes(tmp_path: Path) -> None:
    src = realdata.SHIPPED["p25"]
    m = read_cxi(src, near_field=False)
    assert m.propagation_m is None
    assert m.pixel_m == pytest.approx(m.wavelength_m * m.distance_m / (100 * m.detector_pixel_m))


def test_short_reconstruction_diagnosed_with_border_trimmed(tmp_path: Path) -> None:
    """20 LSQML epochs on the shipped scan: the data error falls, and diagnose finds the
    lit field inside pty-chi's rescaled, constant border."""
    from ptychobench.diagnose.io import read
    from ptychobench.sim.recon import ReconParams

    out = tmp_path / "p25"
    summary = realdata.run("p25", out, ReconParams(n_epochs=20, n_probe_modes=1), with_halves=False)
    with h5py.File(out / "object.h5") as f:
        obj, loss = f["object"][()], f["loss"][()]
    assert loss[-1] < 0.5 * loss[0] and summary["final_loss"] == pytest.approx(loss[-1])
    corner = obj[0, 0]
    assert corner.imag == 0 and corner.real != 1  # pty-chi rescaled the unlit buffer
    r = read(out / "object.h5")
    assert "unscanned border trimmed" in r.source
    assert r.shape[0] < obj.shape[0] and r.shape[1] < obj.shape[1]
    assert not np.any(np.all(r.data == corner, axis=1))
    params = (out / "params.yaml").read_text()
    assert "near_field: true" in params and "n_positions: 200" in params


def test_near_field_frc_skips_the_low_frequency_gap() -> None:
    """Two halves that disagree at the lowest frequencies and agree beyond: the far-field
    rule stops in the gap, the near-field rule at the end of the agreement."""
    from ptychobench.diagnose.io import to_recon
    from ptychobench.diagnose.measure import frc

    rng = np.random.default_rng(0)
    n = 128
    common = rng.standard_normal((n, n))
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    low = np.hypot(fy, fx) < 0.04

    def part(seed: int) -> np.ndarray:
        own = np.random.default_rng(seed).standard_normal((n, n))
        spec = np.where(low, np.fft.fft2(own) * 20, np.fft.fft2(common))
        return np.exp(1j * 0.3 * np.real(np.fft.ifft2(spec)))

    a, b = to_recon(part(1), "a"), to_recon(part(2), "b")
    far, near = frc(a, b), frc(a, b, near_field=True)
    assert far.resolution_px > 20
    assert near.resolution_px < 3 and near.gap is not None


def _one_line(r) -> str:
    return " ".join(r.output.split())


def test_reconstruct_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["reconstruct", str(tmp_path / "missing.cxi")])
    assert r.exit_code == 2 and "no such CXI file" in _one_line(r) and "Traceback" not in r.output
    bad = tmp_path / "bad.cxi"
    with h5py.File(bad, "w") as f:
        f["entry_1/instrument_1/detector_1/data"] = np.zeros((3, 8, 8))
    r = runner.invoke(app, ["reconstruct", str(bad)])
    assert r.exit_code == 2 and "not a CXI ptychography file" in _one_line(r)
    r = runner.invoke(app, ["reconstruct", "p25", "--apply", "Z9"])
    assert r.exit_code == 2 and "unknown option letter" in _one_line(r)
    r = runner.invoke(app, ["reconstruct", "p25", "--epochs", "0"])
    assert r.exit_code == 2 and "--epochs 0" in _one_line(r)


def test_advice_payoff_refuses_advice_that_changes_nothing(tmp_path: Path) -> None:
    from ptychobench.errors import DatasetError
    from ptychobench.sim.recon import ReconParams

    with pytest.raises(DatasetError, match="changes nothing"):
        realdata.advice_payoff("p25", tmp_path, ReconParams(n_epochs=2), ["L"])
