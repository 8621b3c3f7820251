"""Validate ``ptychobench diagnose`` against the truth it never sees.

Two comparisons, both on data whose truth is known but withheld from ``diagnose``:

1. A dataset's artifact TEST split (default: the shipped ``sim-v1``; images only): the
   detector's labels on the test images (rendered through the one viewer, exactly as a
   user's image is) against the dataset's measured labels, F1 per label; and the
   no-reference measurements of the grey-level images against the truth-based metrics in
   each sample's metadata (Spearman correlation per measurement).
2. One or more simulation builds (``ptychobench generate`` output folders; their
   ``.work/exp-*.npy`` hold the complex reconstructions): ``diagnose`` on the complex
   object over the labelled field, labels against ``labels_from_metrics`` and each
   measurement against its truth-based counterpart.

Example (the table in docs/diagnose.md):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/validate_diagnose.py \
        --dataset sim-v1 --build runs/full40 --build runs/quick36 --json runs/validate_diagnose.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from ptychobench.diagnose.detector import get_detector, render
from ptychobench.diagnose.io import Recon, to_recon
from ptychobench.diagnose.measure import measure
from ptychobench.metrics import score
from ptychobench.tasks import ARTIFACTS

#: (diagnose measurement, truth-based metric, what the truth-based metric is)
PAIRS = [
    ("ramp", "ramp_rad", "linear phase of recon vs truth, rad end to end"),
    ("ramp_rel", "ramp_rel", "that ramp over the truth's phase range"),
    ("vortices", "residues", "phase residues beyond the truth's"),
    ("grid_peak", "grid_peak", "residual's scan-lattice peak ratio (raster scans)"),
    ("grid_amp", "grid", "residual's scan-lattice amplitude / truth contrast (raster scans)"),
    ("background_rel", "background", "low-frequency residual / truth contrast"),
    ("noise_rel", "noise", "excess high-frequency power / truth contrast"),
    ("phase_range", "phase_spread", "contrast x truth phase range: the recon's own spread"),
]


def _truth_value(metrics: dict, key: str) -> float:
    if key == "phase_spread":
        return float(metrics["contrast"] * metrics["truth_phase_range"])
    return float(metrics[key])


def correlations(rows: list[dict]) -> list[dict]:
    """Spearman (and Pearson) correlation of each diagnose measurement with its truth-based
    metric, over the rows where both exist (grid: raster scans only)."""
    out = []
    for mine, truth, meaning in PAIRS:
        pts = [
            (r["measured"][mine], _truth_value(r["metrics"], truth))
            for r in rows
            if r["measured"].get(mine) is not None and (not mine.startswith("grid") or r["scan"] == "raster")
        ]
        if len(pts) < 5:
            continue
        x, y = np.array(pts).T
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            out.append(
                {
                    "measurement": mine,
                    "truth": truth,
                    "meaning": meaning,
                    "n": len(pts),
                    "spearman": None,
                    "pearson": None,
                    "note": "constant",
                }
            )
            continue
        rho, p = stats.spearmanr(x, y)
        out.append(
            {
                "measurement": mine,
                "truth": truth,
                "meaning": meaning,
                "n": len(pts),
                "spearman": round(float(rho), 3),
                "p": float(p),
                "pearson": round(float(np.corrcoef(x, y)[0, 1]), 3),
            }
        )
    return out


def label_scores(gold: list[frozenset], pred: list[frozenset]) -> dict:
    s = score(gold, pred, ARTIFACTS.scored_labels, ci=True, n_resamples=2000)
    return {
        "n": s.n,
        "micro_f1": round(s.micro_f1, 3),
        "micro_f1_ci": [round(v, 3) for v in s.micro_f1_ci],
        "macro_f1": round(s.macro_f1, 3),
        "exact_match": round(s.exact_match, 3),
        "per_label": {
            lab: {
                "f1": round(s.per_label_f1[lab], 3),
                "support": s.per_label_support[lab],
                "predicted": int(sum(lab in p for p in pred)),
            }
            for lab in ARTIFACTS.scored_labels
        },
    }


def validate_dataset(name: str, detector: str, field_px: int = 64) -> dict:
    """The dataset's test images through the detector and the measurements."""
    from PIL import Image

    from ptychobench.data import load_dataset

    ds = load_dataset(name)
    test = ds.samples("artifacts", "test")
    arrays, rows = [], []
    for s in test:
        with Image.open(s.image) as im:
            grey = np.asarray(im.convert("L"))
        arrays.append(grey)
        meta = s.metadata
        inst = meta.get("instrument") or {}
        # an image shows the reconstructed field (sim-v1: 64 px) at its own size: the scan
        # step, in object pixels in the metadata, scales with it
        factor = grey.shape[0] / (meta.get("roi") or field_px)
        step = inst.get("step_px") * factor if inst.get("step_px") else None
        m, _ = measure(to_recon(grey, s.id), scan_step=step)
        rows.append(
            {
                "id": s.id,
                "scan": meta.get("scan"),
                "metrics": meta.get("metrics") or {},
                "measured": {k: v.value for k, v in m.items()},
            }
        )
    det = get_detector(detector, None, name)
    pred = [frozenset(d.labels) for d in det.detect([render(a) for a in arrays])]
    gold = [s.labels for s in test]
    return {
        "source": f"{name} test split (images)",
        "detector": det.name if hasattr(det, "name") else detector,
        "labels": label_scores(gold, pred),
        "correlations": correlations([r for r in rows if r["metrics"]]),
    }


def validate_build(build: Path, detector: str, dataset: str | None) -> dict:
    """Every finished experiment of a build: the complex reconstruction over the labelled
    field, diagnosed without the truth."""
    from ptychobench.sim.build import BuildConfig, experiment_for
    from ptychobench.sim.instruments import INSTRUMENTS
    from ptychobench.sim.measure import (
        centre_crop,
        labels_from_metrics,
        project,
        upsample,
    )

    cfg_key = json.loads((build / ".work" / "config.json").read_text())
    cfg = BuildConfig(**{k: v for k, v in cfg_key.items() if k != "scale"})
    rows, crops, gold = [], [], []
    for i in range(cfg.n_visual):
        js = build / ".work" / f"exp-{i:04d}.json"
        npy = js.with_suffix(".npy")
        if not (js.is_file() and npy.is_file()):
            continue
        rec = json.loads(js.read_text())
        exp = experiment_for(cfg, i)
        obj = np.load(npy)
        crop = centre_crop(upsample(project(obj), rec.get("bin_factor", 1)), exp.geometry.roi)
        step = INSTRUMENTS[exp.instrument].step_px
        m, _ = measure(to_recon(crop, f"exp{i:04d}"), scan_step=step)
        rows.append(
            {
                "id": f"exp{i:04d}",
                "scan": exp.scan,
                "metrics": rec["metrics"],
                "measured": {k: v.value for k, v in m.items()},
            }
        )
        crops.append(crop)
        gold.append(labels_from_metrics(rec["metrics"]))
    if not rows:
        raise SystemExit(f"{build}: no finished experiments in .work/")
    det = get_detector(detector, None, dataset)
    pred = [frozenset(d.labels) for d in det.detect([render(c) for c in crops])]
    return {
        "source": f"build {build.name} ({cfg.scale}, seed {cfg.seed}, {len(rows)} experiments, complex objects)",
        "detector": det.name,
        "labels": label_scores(gold, pred),
        "correlations": correlations(rows),
    }


def _truth_frc_resolution(recon: np.ndarray, truth: np.ndarray, roi: int) -> float:
    """Resolution of a reconstruction against the truth: the finest period (px) at which the
    FRC of the registered pair is still at least 0.5. The last such ring rather than the
    first crossing: slow errors (a background, a ramp) can pull the lowest rings down
    while the detail is right."""
    from ptychobench.diagnose.measure import frc
    from ptychobench.sim.measure import register

    r, t, _ = register(recon, truth, roi)
    # as Recon directly: a simulated truth may hold whole lines of exactly 1 + 0j, which
    # the reader would take for pty-chi's unscanned border
    curve = frc(Recon("recon", r, "complex"), Recon("truth", t, "complex"))
    above = [f for f, c in zip(curve.frequency, curve.frc) if c >= 0.5]
    return 1.0 / max(above) if above else float(roi)


def validate_frc(build: Path, n: int) -> dict:
    """Half-data FRC (diagnose) against the truth-based resolution, on ``n`` experiments of
    a build: each scan is split into its even and odd positions, both halves are
    reconstructed with the experiment's own parameters, and ``diagnose`` sees only them."""
    from ptychobench.sim.build import BuildConfig, experiment_for
    from ptychobench.sim.defects import acquire, prepare
    from ptychobench.sim.measure import centre_crop, project, upsample
    from ptychobench.sim.recon import reconstruct

    cfg_key = json.loads((build / ".work" / "config.json").read_text())
    cfg = BuildConfig(**{k: v for k, v in cfg_key.items() if k != "scale"})
    rows = []
    for i in range(min(n, cfg.n_visual)):
        npy = build / ".work" / f"exp-{i:04d}.npy"
        js = npy.with_suffix(".json")
        if not npy.is_file():
            continue
        rec = json.loads(js.read_text())
        exp = experiment_for(cfg, i)
        acq = acquire(exp)
        pats, pos, probe0, factor = prepare(acq, exp.params)
        g = exp.geometry
        halves = []
        for part in (slice(0, None, 2), slice(1, None, 2)):
            res = reconstruct(
                pats[part],
                pos[part],
                probe0,
                g.n_obj // factor,
                exp.params,
                acq.wavelength_m,
                acq.pixel_m * factor,
                acq.slice_spacing_m,
                seed=exp.seed % (2**31),
            )
            halves.append(centre_crop(upsample(project(res.obj), factor), g.roi))
        from ptychobench.diagnose.measure import frc

        half = frc(to_recon(halves[0], "half A"), to_recon(halves[1], "half B")).resolution_px
        full = upsample(project(np.load(npy)), rec.get("bin_factor", 1))
        truth = _truth_frc_resolution(full, project(acq.true_object), g.roi)
        rows.append(
            {
                "id": f"exp{i:04d}",
                "frc_half_bit_px": round(half, 2),
                "truth_frc_0.5_px": round(truth, 2),
                "blur_px": rec["metrics"]["blur_px"],
                "corr": rec["metrics"]["corr"],
            }
        )
    x = np.array([r["frc_half_bit_px"] for r in rows])
    out = {"source": f"build {build.name}: half-data FRC on {len(rows)} experiments", "rows": rows}
    for key in ("truth_frc_0.5_px", "blur_px", "corr"):
        y = np.array([r[key] for r in rows])
        rho = stats.spearmanr(x, y)[0] if np.ptp(x) and np.ptp(y) else None
        out[f"spearman_vs_{key}"] = None if rho is None else round(float(rho), 3)
    return out


def markdown(results: list[dict]) -> str:
    lines = []
    for r in results:
        if "rows" in r:  # the FRC check
            lines += [
                f"#### {r['source']}",
                "",
                (
                    "| experiment | half-data FRC, half-bit (px) | truth FRC 0.5 (px) | blur sigma vs truth (px) |"
                    " correlation with truth |"
                ),
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {x['id']} | {x['frc_half_bit_px']} | {x['truth_frc_0.5_px']} | {x['blur_px']} | {x['corr']:.2f} |"
                for x in r["rows"]
            ]
            lines += [
                "",
                (
                    "Spearman of the half-data resolution with the truth-based resolution: "
                    f"{r['spearman_vs_truth_frc_0.5_px']}; with the blur sigma: {r['spearman_vs_blur_px']}; "
                    f"with the correlation with the truth: {r['spearman_vs_corr']}."
                ),
                "",
            ]
            continue
        lab = r["labels"]
        lines += [
            f"#### {r['source']}",
            "",
            (
                f"Detector: {r['detector']}. Micro-F1 {lab['micro_f1']} "
                f"(95% CI {lab['micro_f1_ci'][0]}-{lab['micro_f1_ci'][1]}), macro-F1 {lab['macro_f1']}, "
                f"exact label-set match {lab['exact_match']}, n = {lab['n']}."
            ),
            "",
            "| label | F1 | true | predicted |",
            "|---|---|---|---|",
        ]
        for name, v in lab["per_label"].items():
            lines.append(f"| {name} | {v['f1']} | {v['support']} | {v['predicted']} |")
        lines += ["", "| diagnose measurement | truth-based metric | n | Spearman | Pearson |", "|---|---|---|---|---|"]
        for c in r["correlations"]:
            sp = "n/a" if c["spearman"] is None else f"{c['spearman']:+.2f}"
            pe = "n/a" if c["pearson"] is None else f"{c['pearson']:+.2f}"
            lines.append(f"| {c['measurement']} | {c['truth']} ({c['meaning']}) | {c['n']} | {sp} | {pe} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="sim-v1", help="dataset whose test split to check ('' to skip)")
    ap.add_argument("--build", action="append", default=[], type=Path, help="simulation build folder(s)")
    ap.add_argument("--detector", default="vision-probe")
    ap.add_argument(
        "--field-px",
        type=int,
        default=64,
        help="reconstructed field shown by the dataset's images, object px (sim-v1: 64)",
    )
    ap.add_argument("--train-dataset", default=None, help="dataset the detector is fitted on (default one)")
    ap.add_argument("--frc-build", type=Path, default=None, help="build whose experiments get half-data FRC")
    ap.add_argument("--frc-n", type=int, default=12, help="experiments for the FRC check")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = []
    if args.dataset:
        results.append(validate_dataset(args.dataset, args.detector, args.field_px))
    for b in args.build:
        results.append(validate_build(b, args.detector, args.train_dataset))
    if args.frc_build:
        results.append(validate_frc(args.frc_build, args.frc_n))
    print(markdown(results))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
