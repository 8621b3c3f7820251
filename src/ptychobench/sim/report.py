"""Validation report of a built dataset: label counts, defect-label co-occurrence, the
measured option gains, timings, and one contact sheet (PNG montage) per label."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..tasks import ARTIFACT_LABELS, PARAM_OPTIONS


def _slug(label: str) -> str:
    return label.lower().replace(" ", "-")


def contact_sheet(paths: list[Path], captions: list[str], dest: Path, cols: int = 6, size: int = 144) -> None:
    rows = max(1, -(-len(paths) // cols))
    cap = 12
    sheet = Image.new("L", (cols * (size + 4), rows * (size + cap + 4)), 255)
    draw = ImageDraw.Draw(sheet)
    for k, (p, c) in enumerate(zip(paths, captions)):
        x, y = (k % cols) * (size + 4), (k // cols) * (size + cap + 4)
        with Image.open(p) as im:
            sheet.paste(im.convert("L").resize((size, size)), (x, y + cap))
        draw.text((x + 1, y), c[:28], fill=0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(dest, optimize=True)


def write_report(out: Path, cfg, recs: list[dict], samples: list, build_seconds: float | None) -> None:
    from .labels import GAIN_MARGIN, MIN_ABS_GAIN
    from .measure import BELOW, THRESHOLDS

    vis = [s for s in samples if s.task == "artifacts"]
    txt = [s for s in samples if s.task == "params"]
    lines = [f"# Validation report: {cfg.name}", ""]
    lines += [f"Build configuration: `{json.dumps(cfg.key(), sort_keys=True)}`", ""]

    lines += ["## Artifact labels per split", "", "| label | train | test | threshold |", "|---|---|---|---|"]
    for lab in ARTIFACT_LABELS:
        tr = sum(lab in s.labels for s in vis if s.split == "train")
        te = sum(lab in s.labels for s in vis if s.split == "test")
        thr = ""
        if lab in THRESHOLDS:
            key, v = THRESHOLDS[lab]
            thr = f"`{key}` {'<' if lab in BELOW else '>='} {v:g}"
        lines.append(f"| {lab} | {tr} | {te} | {thr} |")
    n_tr = sum(s.split == "train" for s in vis)
    n_te = sum(s.split == "test" for s in vis)
    inst_te = sum(len(s.labels - {"No obvious artifacts"}) for s in vis if s.split == "test")
    lines += ["", f"Images: {n_tr} train / {n_te} test; artifact instances in test: {inst_te}.", ""]

    # defect -> label co-occurrence
    lines += [
        "## How often each injected defect produces each label",
        "",
        "Rows: injected defect (an experiment may carry two); cells: percentage of the "
        "experiments with that defect whose reconstruction carries the label; n: count.",
        "",
    ]
    short = [
        lab.replace(" artifacts", "")
        .replace("Non-uniform background", "Background")
        .replace("No obvious", "None")
        .replace("No clear structure", "No structure")
        for lab in ARTIFACT_LABELS
    ]
    lines += ["| defect | n | " + " | ".join(short) + " |", "|---" * (len(short) + 2) + "|"]
    by_def: dict[str, list] = defaultdict(list)
    for s in vis:
        ds = list(s.metadata["defects"]) or ["(none)"]
        for d in ds:
            by_def[d].append(s.labels)
    for d in sorted(by_def):
        ls = by_def[d]
        cells = [f"{100 * sum(lab in x for x in ls) / len(ls):.0f}" for lab in ARTIFACT_LABELS]
        lines.append(f"| {d} | {len(ls)} | " + " | ".join(cells) + " |")

    # option labels
    lines += [
        "",
        "## Parameter-recommendation labels (outcome-verified)",
        "",
        f"An option is a label when, applied to the same data, it lowers the reconstruction "
        f"error against the truth by at least {100 * GAIN_MARGIN:.0f}% (and by at least "
        f'{MIN_ABS_GAIN:g} absolute). "No changes needed" (L): no option does and the '
        "reconstruction shows no artifacts.",
        "",
        "| option | train | test | tried | mean gain when a label |",
        "|---|---|---|---|---|",
    ]
    tried: Counter[str] = Counter()
    gain_when = defaultdict(list)
    for s in txt:
        for k, g in s.metadata["option_gains"].items():
            tried[k] += 1
            if g is None:
                continue
            if k in s.labels:
                gain_when[k].append(g)
    for k, name in PARAM_OPTIONS.items():
        tr = sum(k in s.labels for s in txt if s.split == "train")
        te = sum(k in s.labels for s in txt if s.split == "test")
        mg = f"{100 * np.mean(gain_when[k]):.0f}%" if gain_when[k] else "-"
        lines.append(f"| {k} {name} | {tr} | {te} | {tried[k]} | {mg} |")
    n_lab = [len(s.labels) for s in txt]
    if n_lab:
        lines += [
            "",
            f"Text samples: {sum(s.split == 'train' for s in txt)} train / "
            f"{sum(s.split == 'test' for s in txt)} test; labels per sample: mean "
            f"{np.mean(n_lab):.2f}, max {max(n_lab)}.",
            "",
        ]

    # timings vary from run to run: they go to their own file so that everything else a
    # build writes is byte-identical for a seed
    work = out / ".work"
    unit, recon, trial = [], [], []
    for p in sorted(work.glob("timing-*.json")):
        t = json.loads(p.read_text())
        unit.append(t["unit_seconds"])
        recon.append(t["recon_seconds"])
        trial += t.get("trial_seconds", [])
    if unit:
        tl = [
            "# Build timings (CPU, one thread per worker process)",
            "",
            f"- reconstruction (LSQML, current parameters): mean {np.mean(recon):.2f} s, "
            f"median {np.median(recon):.2f} s over {len(recon)}",
            f"- option trial (all candidates of one option): mean {np.mean(trial):.2f} s over {len(trial)}"
            if trial
            else "- no option trials",
            f"- all work units: {sum(unit) / 60:.1f} CPU-minutes",
        ]
        if build_seconds is not None:
            tl.append(
                f"- wall time of the last `generate` call: {build_seconds / 60:.1f} min "
                "(a resumed build reports only its own part)"
            )
        (out / "timing.md").write_text("\n".join(tl) + "\n")
        lines += ["Build timings: [timing.md](timing.md).", ""]

    # contact sheets
    lines += [
        "## Contact sheets",
        "",
        "Up to 24 examples per label (train and test), captioned with sample id and the label's metric value.",
        "",
    ]
    for lab in ARTIFACT_LABELS:
        ex = [s for s in vis if lab in s.labels][:24]
        if not ex:
            continue
        key = THRESHOLDS.get(lab, ("error", 0))[0]
        caps = [f"{s.id} {key[:6]}={s.metadata['metrics'][key]:.2f}" for s in ex]
        dest = out / "validation" / f"{_slug(lab)}.png"
        contact_sheet([s.image for s in ex], caps, dest)
        lines.append(f"- {lab}: [validation/{dest.name}](validation/{dest.name})")
    (out / "validation.md").write_text("\n".join(lines) + "\n")
