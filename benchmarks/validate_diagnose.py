"""Validate ``ptychobench diagnose`` against the truth it never sees.

Two comparisons, both on data whose truth is known but withheld from ``diagnose``, each on
one or more splits (``--split test --split test-ood``: the held-out instrument):

1. A dataset's artifact split (default: ``sim-v2``; images only): the detector's labels on
   the split's images (rendered through the one viewer, exactly as a user's image is)
   against the dataset's measured labels, F1 per label; and the no-reference measurements
   of the grey-level images against the truth-based metrics in each sample's metadata
   (Spearman correlation per measurement).
2. One or more simulation builds (``ptychobench generate`` output folders; their
   ``.work/<unit>.npy`` hold the complex reconstructions): ``diagnose`` on the complex
   object over the field the viewer shows (``sim.pipeline.field``), labels against
   ``sim.labels.artifact_labels`` and each measurement against its truth-based
   counterpart. Which units belong to which split is read from the build's assembled
   dataset (its ``artifacts/*.jsonl``); a build not yet assembled has no test/train
   division, so there ``test`` means every main-instrument unit (``expNNNN``) and
   ``test-ood`` every held-out-instrument unit (``oodNNNN``).

The detector is fitted on the TRAIN split of ``--train-dataset`` (default: ``--dataset``),
so no evaluated image was seen in training.

Example (the table in docs/diagnose.md):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/validate_diagnose.py \
        --dataset /work/builds/sim-v2 --split test --split test-ood \
        --build /work/builds/sim-v2 --json runs/validate_diagnose.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from ptychobench.diagnose.detector import get_detector, render
from ptychobench.diagnose.io import Recon, to_recon
from ptychobench.diagnose.measure import measure
from ptychobench.eval.metrics import score
from ptychobench.tasks import ARTIFACTS

#: splits a validation may run on: the test split and the held-out instrument's
SPLITS = ("test", "test-ood")

#: (diagnose measurement, sim-v2 truth-based metric, what the truth-based metric is).
#: A pair is kept only where both sides measure the same quantity; sim-v2's blur_px,
#: contrast, corr_fit, lines, halo and distortion_px have no truth-free counterpart in
#: ``diagnose.measure`` (resolution needs two half-data reconstructions: the FRC check).
PAIRS = [
    ("ramp", "ramp_rad", "linear phase of recon vs truth, rad end to end"),
    ("ramp_rel", "ramp", "that ramp over the specimen's displayed range"),
    ("vortices", "vortices", "phase vortices of recon over the fitted specimen, amplitude not negligible"),
    ("grid_peak", "grid_peak", "error field's strongest scan-lattice peak over its neighbourhood (raster scans)"),
    ("grid_amp", "grid", "error field's scan-lattice RMS / displayed range (raster scans)"),
    ("background_rel", "background", "low-frequency error-field RMS / displayed range"),
    ("noise_rel", "noise", "excess fine-scale power / displayed range"),
    ("phase_range", "specimen_display_rad", "the ramp-free recon's displayed phase window, rad"),
]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def correlations(rows: list[dict]) -> list[dict]:
    """Spearman (and Pearson) correlation of each diagnose measurement with its truth-based
    metric, over the rows where both exist (grid: raster scans only). A pair with fewer
    than 5 rows is left out; one with a constant side gets ``None`` and a note."""
    out = []
    for mine, truth, meaning in PAIRS:
        pts = [
            (r["measured"][mine], r["metrics"][truth])
            for r in rows
            if _finite(r["measured"].get(mine))
            and _finite(r["metrics"].get(truth))
            and (not mine.startswith("grid") or r["scan"] == "raster")
        ]
        if len(pts) < 5:
            continue
        x, y = np.array(pts, dtype=float).T
        row = {"measurement": mine, "truth": truth, "meaning": meaning, "n": len(pts)}
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            out.append(row | {"spearman": None, "p": None, "pearson": None, "note": "constant"})
            continue
        rho, p = stats.spearmanr(x, y)
        out.append(
            row
            | {
                "spearman": round(float(rho), 3),
                "p": float(p),
                "pearson": round(float(np.corrcoef(x, y)[0, 1]), 3),
            }
        )
    return out


def label_scores(gold: list[frozenset], pred: list[frozenset], n_resamples: int = 2000) -> dict:
    """Micro/macro F1 (with a bootstrap CI) and F1 per scored label."""
    s = score(gold, pred, ARTIFACTS.scored_labels, ci=True, n_resamples=n_resamples)
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


def detect_and_score(
    detector: str,
    train_dataset: str | None,
    arrays: list[np.ndarray],
    gold: list[frozenset],
    measured: list[dict] | None = None,
) -> tuple[str, dict | None]:
    """The detector's labels on ``arrays`` (through the viewer) scored against ``gold``;
    detector ``none`` skips the labels (measurements only: no training split needed)."""
    if detector == "none":
        return "none", None
    det = get_detector(detector, None, train_dataset)
    found = det.detect([render(a) for a in arrays])
    pred = [frozenset(d.labels) for d in found]
    scores = label_scores(gold, pred)
    if measured is not None:  # the labels diagnose prints: the detector's, after the decisive measurements
        from ptychobench.diagnose.evidence import reconcile

        after = [frozenset(reconcile(d.labels, d.probabilities, d.thresholds, m)[0]) for d, m in zip(found, measured)]
        scores["after_measurements"] = label_scores(gold, after)
    return getattr(det, "name", detector), scores


def check_splits(splits: list[str]) -> list[str]:
    """The requested splits, in order, without repeats (default: test); an unknown one
    stops the run with one line."""
    out = list(dict.fromkeys(splits or ["test"]))
    bad = [s for s in out if s not in SPLITS]
    if bad:
        raise SystemExit(f"--split {bad[0]!r}: unknown; expected one of {', '.join(SPLITS)}")
    return out


def _field_and_step(meta: dict, image_px: int, field_px: int) -> float | None:
    """The scan step in image pixels: the step (object px, in the metadata) times the
    image's pixels per object pixel of the field it shows (sim-v2: 256 px for 128)."""
    from ptychobench.sim.defects import Experiment

    inst = meta.get("instrument") or {}
    if meta.get("experiment"):
        field_px = Experiment.from_dict(meta["experiment"]).geometry.roi
    step = inst.get("step_px")
    return step * image_px / field_px if step else None


def validate_dataset(name: str, split: str, detector: str, train_dataset: str | None, field_px: int = 128) -> dict:
    """The dataset's split images through the detector and the measurements."""
    from PIL import Image

    from ptychobench.data import load_dataset

    ds = load_dataset(name)
    if split not in ds.split_names("artifacts"):
        raise SystemExit(f"{ds.root}: no artifacts split {split!r}; it has {', '.join(ds.split_names('artifacts'))}")
    samples = ds.samples("artifacts", split)
    arrays, rows, measured = [], [], []
    for s in samples:
        with Image.open(s.image) as im:
            grey = np.asarray(im.convert("L"))
        arrays.append(grey)
        meta = s.metadata
        step = _field_and_step(meta, grey.shape[0], field_px)
        m, _ = measure(to_recon(grey, s.id), scan_step=step)
        measured.append(m)
        rows.append(
            {
                "id": s.id,
                "scan": meta.get("scan"),
                "metrics": meta.get("metrics") or {},
                "measured": {k: v.value for k, v in m.items()},
            }
        )
    det_name, labels = detect_and_score(detector, train_dataset or name, arrays, [s.labels for s in samples], measured)
    return {
        "source": f"{ds.name} {split} split (images)",
        "split": split,
        "detector": det_name,
        "labels": labels,
        "correlations": correlations([r for r in rows if r["metrics"]]),
    }


def _build_config(build: Path):
    from ptychobench.sim.build import BuildConfig

    path = build / ".work" / "config.json"
    try:
        key = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: missing; is {build} a 'ptychobench generate' output folder?") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}: not valid JSON ({e.msg})") from None
    return BuildConfig(**{k: v for k, v in key.items() if k != "scale"})


def build_units(build: Path, units: list[str], split: str) -> tuple[list[str], str]:
    """The image-task units of ``build`` in ``split`` and how that was decided: by the
    assembled dataset's split files when there are some, else by unit kind (``ood`` units
    are the held-out instrument; every ``exp`` unit stands in for ``test``)."""
    jsonl = build / "artifacts" / f"{split}.jsonl"
    if (build / "manifest.json").is_file() and jsonl.is_file():
        ids = set()
        for line in jsonl.read_text().splitlines():
            if line.strip():
                ids.add(json.loads(line)["id"])
        return [u for u in units if u in ids], f"{split} split of the assembled dataset"
    kind = "ood" if split == "test-ood" else "exp"
    chosen = [u for u in units if u.rstrip("0123456789") == kind]
    how = "held-out instrument units" if kind == "ood" else "all main-instrument units (build not assembled)"
    return chosen, how


def validate_build(build: Path, split: str, detector: str, train_dataset: str | None) -> dict:
    """Every finished experiment of a build in ``split``: the complex reconstruction over
    the viewer's field, diagnosed without the truth."""
    from ptychobench.sim.build import experiment_for, image_units
    from ptychobench.sim.defects import instrument_for
    from ptychobench.sim.labels import artifact_labels
    from ptychobench.sim.pipeline import field

    cfg = _build_config(build)
    units, how = build_units(build, image_units(cfg, build / ".work"), split)
    rows, crops, gold = [], [], []
    for unit in units:
        js = build / ".work" / f"{unit}.json"
        npy = js.with_suffix(".npy")
        if not (js.is_file() and npy.is_file()):
            continue
        rec = json.loads(js.read_text())
        if rec.get("failed"):  # the reconstruction diverged: no image, no labels (counted by the build)
            continue
        exp = experiment_for(cfg, unit)
        crop = field(np.load(npy), exp, rec.get("bin_factor", 1))
        m, _ = measure(to_recon(crop, unit), scan_step=instrument_for(exp).step_px)
        rows.append(
            {"id": unit, "scan": exp.scan, "metrics": rec["metrics"], "measured": {k: v.value for k, v in m.items()}}
        )
        crops.append(crop)
        gold.append(artifact_labels(rec["metrics"]))
    if not rows:
        raise SystemExit(f"{build}: no finished {split} experiments in .work/ ({how})")
    det_name, labels = detect_and_score(detector, train_dataset, crops, gold)
    return {
        "source": f"build {build.name} {split}: {how} ({cfg.scale}, seed {cfg.seed}, {len(rows)} complex objects)",
        "split": split,
        "detector": det_name,
        "labels": labels,
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
    """Half-data FRC (diagnose) against the truth-based resolution, on the first ``n``
    main-instrument experiments of a build: each scan is split into its even and odd
    positions, both halves are reconstructed with the experiment's own parameters, and
    ``diagnose`` sees only them."""
    from ptychobench.diagnose.measure import frc
    from ptychobench.sim.build import experiment_for, image_units
    from ptychobench.sim.defects import acquire, prepare
    from ptychobench.sim.measure import project, upsample
    from ptychobench.sim.pipeline import field, recon_seed
    from ptychobench.sim.recon import reconstruct

    cfg = _build_config(build)
    rows = []
    for unit in [u for u in image_units(cfg, build / ".work") if u.startswith("exp")][:n]:
        npy = build / ".work" / f"{unit}.npy"
        if not npy.is_file():
            continue
        rec = json.loads(npy.with_suffix(".json").read_text())
        exp = experiment_for(cfg, unit)
        acq = acquire(exp)
        pats, pos, probe0, binning = prepare(acq, exp.params)
        factor = int(binning)
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
                seed=recon_seed(exp),
            )
            halves.append(field(res.obj, exp, factor))
        half = frc(to_recon(halves[0], "half A"), to_recon(halves[1], "half B")).resolution_px
        full = upsample(project(np.load(npy)), rec.get("bin_factor", 1))
        truth = _truth_frc_resolution(full, project(acq.true_object), g.roi)
        rows.append(
            {
                "id": unit,
                "frc_half_bit_px": round(half, 2),
                "truth_frc_0.5_px": round(truth, 2),
                "blur_px": rec["metrics"]["blur_px"],
                "corr": rec["metrics"]["corr"],
            }
        )
    x = np.array([r["frc_half_bit_px"] for r in rows])
    out: dict = {"source": f"build {build.name}: half-data FRC on {len(rows)} experiments", "rows": rows}
    for key in ("truth_frc_0.5_px", "blur_px", "corr"):
        y = np.array([r[key] for r in rows])
        rho = stats.spearmanr(x, y)[0] if len(rows) > 2 and np.ptp(x) and np.ptp(y) else None
        out[f"spearman_vs_{key}"] = None if rho is None else round(float(rho), 3)
    return out


def _frc_markdown(r: dict) -> list[str]:
    lines = [
        f"#### {r['source']}",
        "",
        "| experiment | half-data FRC, half-bit (px) | truth FRC 0.5 (px) | blur sigma vs truth (px)"
        " | correlation with truth |",
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
    return lines


def markdown(results: list[dict]) -> str:
    """The results as the Markdown tables of docs/diagnose.md."""
    lines: list[str] = []
    for r in results:
        if "rows" in r:  # the FRC check
            lines += _frc_markdown(r)
            continue
        lab = r["labels"]
        lines += [f"#### {r['source']}", ""]
        if lab is None:
            lines.append("Labels not scored (detector none): measurements only.")
        else:
            lines += [
                (
                    f"Detector: {r['detector']}. Micro-F1 {lab['micro_f1']} "
                    f"(95% CI {lab['micro_f1_ci'][0]}-{lab['micro_f1_ci'][1]}), macro-F1 {lab['macro_f1']}, "
                    f"exact label-set match {lab['exact_match']}, n = {lab['n']}."
                ),
                "",
            ]
            after = lab.get("after_measurements")
            if after:
                lines += [
                    (
                        f"After the decisive measurements (the labels diagnose prints): micro-F1 {after['micro_f1']} "
                        f"(95% CI {after['micro_f1_ci'][0]}-{after['micro_f1_ci'][1]}), macro-F1 {after['macro_f1']}, "
                        f"exact match {after['exact_match']}."
                    ),
                    "",
                    "| label | F1 | true | predicted | F1 after measurements | predicted after |",
                    "|---|---|---|---|---|---|",
                ]
                for name, v in lab["per_label"].items():
                    a = after["per_label"][name]
                    lines.append(
                        f"| {name} | {v['f1']} | {v['support']} | {v['predicted']} | {a['f1']} | {a['predicted']} |"
                    )
            else:
                lines += ["| label | F1 | true | predicted |", "|---|---|---|---|"]
                for name, v in lab["per_label"].items():
                    lines.append(f"| {name} | {v['f1']} | {v['support']} | {v['predicted']} |")
        lines += ["", "| diagnose measurement | truth-based metric | n | Spearman | Pearson |", "|---|---|---|---|---|"]
        for c in r["correlations"]:
            sp = "n/a" if c["spearman"] is None else f"{c['spearman']:+.2f}"
            pe = "n/a" if c["pearson"] is None else f"{c['pearson']:+.2f}"
            lines.append(f"| {c['measurement']} | {c['truth']} ({c['meaning']}) | {c['n']} | {sp} | {pe} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--dataset", default="sim-v2", help="dataset (name or folder) whose splits to check ('' to skip)")
    ap.add_argument(
        "--split",
        action="append",
        default=[],
        choices=SPLITS,
        help="split to check, repeatable (default: test); test-ood is the held-out instrument",
    )
    ap.add_argument("--build", action="append", default=[], type=Path, help="simulation build folder(s)")
    ap.add_argument(
        "--detector", default="vision-probe", help="detector to score ('none': measurements only, no labels)"
    )
    ap.add_argument(
        "--field-px",
        type=int,
        default=128,
        help="field shown by the dataset's images, object px, where the metadata lacks the experiment",
    )
    ap.add_argument(
        "--train-dataset",
        default=None,
        help="dataset whose TRAIN split the detector is fitted on (default: --dataset, else the default one)",
    )
    ap.add_argument("--frc-build", type=Path, default=None, help="build whose experiments get half-data FRC")
    ap.add_argument("--frc-n", type=int, default=12, help="experiments for the FRC check")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    args.split = check_splits(args.split)
    return args


def run(args: argparse.Namespace) -> list[dict]:
    train = args.train_dataset or args.dataset or None
    results = []
    for split in args.split:
        if args.dataset:
            results.append(validate_dataset(args.dataset, split, args.detector, train, args.field_px))
        for b in args.build:
            results.append(validate_build(b, split, args.detector, train))
    if args.frc_build:
        results.append(validate_frc(args.frc_build, args.frc_n))
    return results


def main(argv: list[str] | None = None) -> None:
    from ptychobench.errors import PtychoBenchError

    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        results = run(args)
    except PtychoBenchError as e:
        sys.exit(f"error: {e}")
    print(markdown(results))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
