"""The figures of docs/diagnose.md's P25 section, from a ``reconstruct --apply`` folder.

    PYTHONPATH=src python benchmarks/p25_figures.py runs/p25 docs/images ["V (declined by diagnose)"]

``runs/p25/current`` and ``runs/p25/advised`` are ``ptychobench reconstruct`` folders
(object.h5, half1.h5, half2.h5); writes ``p25-field.png`` (the whole object as pty-chi
keeps it, the field diagnose finds and renders, the amplitude), ``p25-frc.png`` (the
half-data FRC with the first-crossing and the near-field rule) and ``p25-advice.png``
(current against advised: phase and data-fit loss; the optional third argument names the
advised run in the figure).
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ptychobench.diagnose.io import read  # noqa: E402
from ptychobench.diagnose.measure import frc  # noqa: E402
from ptychobench.sim.render import render_phase  # noqa: E402


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path) as f:
        return f["object"][()], f["loss"][()]


def field_figure(run: Path, out: Path) -> None:
    obj, _ = _load(run / "object.h5")
    r = read(run / "object.h5")
    fig, ax = plt.subplots(1, 3, figsize=(10.5, 3.8))
    ax[0].imshow(np.angle(obj), cmap="gray")
    ax[0].set_title(
        f"phase as pty-chi keeps it\n{obj.shape[0]} x {obj.shape[1]} px, border {obj[0, 0]:.4g}", fontsize=9
    )
    ax[1].imshow(render_phase(r.data), cmap="gray")
    ax[1].set_title(f"what diagnose sees\n{r.shape[0]} x {r.shape[1]} px lit field, rendered", fontsize=9)
    ax[2].imshow(np.abs(r.data), cmap="gray")
    ax[2].set_title("amplitude of the lit field", fontsize=9)
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "p25-field.png", dpi=80)
    plt.close(fig)


def frc_figure(run: Path, out: Path) -> None:
    a, b = read(run / "half1.h5"), read(run / "half2.h5")
    n0, n1 = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    a.data, b.data = a.data[:n0, :n1], b.data[:n0, :n1]
    far, near = frc(a, b), frc(a, b, near_field=True)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(far.frequency, far.frc, label="FRC of the two half-data reconstructions")
    ax.plot(far.frequency, far.threshold, "k--", lw=1, label="half-bit threshold")
    ax.axvline(far.crossing or 0.5, color="tab:red", lw=1, label=f"first crossing: {far.resolution_px:.1f} px")
    ax.axvline(near.crossing or 0.5, color="tab:green", lw=1, label=f"near-field rule: {near.resolution_px:.1f} px")
    if near.gap:
        ax.axvspan(near.gap[0], near.gap[1], color="0.85", label="low-frequency gap skipped")
    ax.set_xlabel("spatial frequency (cycles / pixel)")
    ax.set_ylim(-0.2, 1.02)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "p25-frc.png", dpi=80)
    plt.close(fig)


def advice_figure(root: Path, out: Path, advised: str = "advised parameters") -> None:
    fig, ax = plt.subplots(1, 3, figsize=(10.5, 3.6))
    for i, name in enumerate(("current", "advised")):
        r = read(root / name / "object.h5")
        title = "current parameters" if name == "current" else advised
        ax[i].imshow(render_phase(r.data), cmap="gray")
        ax[i].set_title(title, fontsize=9)
        ax[i].set_xticks([])
        ax[i].set_yticks([])
        style = {"current": {"lw": 4, "alpha": 0.5}, "advised": {"lw": 1.5}}[name]
        ax[2].semilogy(_load(root / name / "object.h5")[1], label=title, **style)
    ax[2].set_xlabel("epoch")
    ax[2].set_title("data-fit loss (LSQML)", fontsize=9)
    ax[2].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "p25-advice.png", dpi=80)
    plt.close(fig)


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    field_figure(root / "current", out)
    frc_figure(root / "current", out)
    if (root / "advised" / "object.h5").is_file():
        advice_figure(root, out, *sys.argv[3:4])


if __name__ == "__main__":
    main()
