"""Validation report of a built dataset: label counts, defect-label co-occurrence, the
measured option gains, timings, and one contact sheet (PNG montage) per label."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
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


SPLIT_ORDER = ("train", "test", "test-ood")
# physics checks: defect -> the option a ptychographer would reach for
EXPECTED_OPTION = {
    "partial_coherence": "J",
    "position_jitter": "G",
    "position_affine": "G",
    "orientation": "Q",
    "off_centre": "M",
    "thick_sample": "W",
    "few_iterations": "K",
    "strong_regularization": "P",
    "poisson_noise_model": "U",
    "spurious_opr": "S",
}


def _splits(samples: list) -> list[str]:
    present = {s.split for s in samples}
    return [sp for sp in SPLIT_ORDER if sp in present] + sorted(present - set(SPLIT_ORDER))


def _rules_section() -> list[str]:
    from .labels import LABELLING_VERSION, THRESHOLDS, rules

    lines = [f"## Labelling rules (version {LABELLING_VERSION})", ""]
    lines += [
        "Each artifact label is a threshold on one measurement of the reconstruction against the truth, "
        "expressed where it matters as a fraction of the viewer's displayed grey range, plus floors "
        "that keep labels to what can be seen (all in `sim/labels.py`, copied into the manifest).",
        "",
        "| label | measurement | rule |",
        "|---|---|---|",
    ]
    for lab, (key, op, thr) in THRESHOLDS.items():
        lines.append(f"| {lab} | `{key}` | {op} {thr:g} |")
    fl = rules()["floors"]
    lines += ["", "Floors: " + ", ".join(f"`{k}` = {v:g}" for k, v in fl.items()) + ".", ""]
    return lines


def _labeller_section(rules: dict, gray: dict) -> list[str]:
    """sim-v3: how the labels were made, and what the gray zone left out (issue 24)."""
    lab = rules["labeller"]
    cv = lab["cross_validated"]
    zones = {tuple(z) for z in rules["gray_zone"].values()}
    zone = ", ".join(f"[{lo:.4f}, {hi:.4f})" for lo, hi in sorted(zones))
    lines = [f"## Labelling (version {rules['labelling_version']}): a labeller fitted to blind raters", ""]
    lines += [
        f"Each artifact label is the decision of `{lab['file']}` (sha256 `{lab['sha256'][:12]}`), per-label "
        f"logistic models fitted to the majority of a calibration panel of {lab['trained_on'].get('n', '?')} images "
        f"({lab['trained_on'].get('dataset', '?')}, seeds disjoint from this build) rated by blind "
        "vision-language-model agents, not ptychographers; `ptychobench annotate` (Label Studio) is how "
        "human experts replace these ratings. Inputs: the rendered image's measurements and embedding, and "
        "its residuals against the truth (`labelling/labeller.py`). A label holds when its probability is at "
        "least the gray zone's upper cut-off. The labeller labels the image task only: it was fitted on "
        "images of that task's field, so the parameter task's texts (a smaller field) state the artifacts "
        "measured by sim-v2's thresholds (labelling "
        f"{rules['text_task_visible_artifacts']['labelling_version']}, in the manifest under "
        "`text_task_visible_artifacts`).",
        "",
        f"Cross-validated agreement with the panel (out of fold, {cv.get('n')} images): micro-F1 "
        f"{cv.get('micro_f1')}; on the {cv.get('sure_n')} images outside the gray zone {cv.get('sure_micro_f1')}.",
        "",
        "## Gray zone",
        "",
        f"An image whose probability for any label lies in {zone} (cut-offs chosen on the calibration panel "
        "only) is left out of every split; the build ran further experiments of the same pool so the "
        f"splits keep their sizes. Images judged: {gray['judged']}; left out: {gray['left_out']} "
        f"({gray['left_out_main']} main pool, {gray['left_out_ood']} test-ood pool).",
        "",
        "| label | images left out unsure of it |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in gray["per_label"].items()] or ["| (none) | 0 |"]
    lines += ["", "An image unsure of two labels counts in both rows.", ""]
    return lines


def _defect_table(samples: list, labels: list[str], headers: list[str]) -> list[str]:
    """Percentage of the samples with each injected defect that carry each label."""
    lines = ["| defect | n | " + " | ".join(headers) + " |", "|---" * (len(headers) + 2) + "|"]
    by_def: dict[str, list] = defaultdict(list)
    for s in samples:
        for d in list(s.metadata["defects"]) or ["(none)"]:
            by_def[d].append(s.labels)
    for d in sorted(by_def):
        ls = by_def[d]
        cells = [f"{100 * sum(lab in x for x in ls) / len(ls):.0f}" for lab in labels]
        lines.append(f"| {d} | {len(ls)} | " + " | ".join(cells) + " |")
    return lines


def _defect_label_table(vis: list) -> list[str]:
    short = [
        lab.replace(" artifacts", "")
        .replace("Non-uniform background", "Background")
        .replace("No obvious", "None")
        .replace("No clear structure", "No structure")
        for lab in ARTIFACT_LABELS
    ]
    return _defect_table(vis, list(ARTIFACT_LABELS), short)


def _defect_option_table(txt: list) -> list[str]:
    return _defect_table(txt, list(PARAM_OPTIONS), list(PARAM_OPTIONS))


def _physics_checks(txt: list) -> list[str]:
    lines = [
        "| defect | expected option | experiments | option a label | tried | screened out | not verified | why not |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d, k in EXPECTED_OPTION.items():
        ex = [s for s in txt if d in s.metadata["defects"]]
        if not ex:
            lines.append(f"| {d} | {k} | 0 | - | - | - | - | no text sample with this defect |")
            continue
        dec = [s.metadata.get("option_decisions", {}).get(k) for s in ex]
        lab = sum(k in s.labels for s in ex)
        tried = sum(x is not None for x in dec)
        scr = sum(x == "screened out" for x in dec)
        nv = sum(x == "not verified" for x in dec)
        why = []
        if tried < len(ex):
            why.append(f"not applicable to {len(ex) - tried} (already on, or no effect on these parameters)")
        if scr:
            why.append(f"{scr} gained under half the margin on the first repeat")
        if nv:
            why.append(f"{nv} gained, but not beyond margin, spread and p")
        lines.append(
            f"| {d} | {k} | {len(ex)} | {lab} ({100 * lab / len(ex):.0f}%) | {tried} | {scr} | {nv} | "
            + ("; ".join(why) or "-")
            + " |"
        )
    return lines


def _failed_section(failed: list[dict], n_ok: int) -> list[str]:
    """Experiments whose reconstruction failed: counted and named, replaced by the next
    experiment of their pool, never silently dropped."""
    out = ["## Failed reconstructions", ""]
    if not failed:
        return out + [f"None: all {n_ok} experiments reconstructed.", ""]
    out.append(
        f"{len(failed)} of {n_ok + len(failed)} experiments failed to reconstruct and were replaced "
        "by the next experiment of their pool:"
    )
    out.append("")
    for r in failed:
        d = ", ".join(r["experiment"].get("defects", [])) or "none"
        out.append(f"- {r['unit']} (defects: {d}): {r['failed']}")
    return out + [""]


def write_report(
    out: Path,
    cfg,
    recs: list[dict],
    samples: list,
    build_seconds: float | None,
    failed: list[dict] | None = None,
    sections: Sequence[Callable[[list], list[str]]] = (),
    labeller_rules: dict | None = None,
    gray: dict | None = None,
) -> None:
    """``validation.md`` (and ``timing.md``, contact sheets). ``labeller_rules`` and
    ``gray``: a sim-v3 build's labelling rules and gray-zone counts, reported in place of
    sim-v2's thresholds."""
    from .labels import GAIN_MARGIN, MAX_P, MIN_ABS_GAIN, N_SEEDS, SPREAD_FACTOR

    vis = [s for s in samples if s.task == "artifacts"]
    txt = [s for s in samples if s.task == "params"]
    vsplits, tsplits = _splits(vis), _splits(txt)
    lines = [f"# Validation report: {cfg.name}", ""]
    lines += [f"Build configuration: `{json.dumps(cfg.key(), sort_keys=True)}`", ""]
    lines += _labeller_section(labeller_rules, gray or {}) if labeller_rules else _rules_section()

    lines += ["## Artifact labels per split", ""]
    lines += ["| label | " + " | ".join(vsplits) + " |", "|---" * (len(vsplits) + 1) + "|"]
    for lab in ARTIFACT_LABELS:
        lines.append(
            f"| {lab} | "
            + " | ".join(str(sum(lab in s.labels and s.split == sp for s in vis)) for sp in vsplits)
            + " |"
        )
    lines += ["", "Images: " + ", ".join(f"{sum(s.split == sp for s in vis)} {sp}" for sp in vsplits) + ".", ""]
    lines += [
        "Splits are by experiment: an experiment in any test split is in no training split of either task; "
        "`test-ood` holds every experiment of the held-out instrument (mll-nanoprobe), which no training split has.",
        "",
    ]

    lines += _failed_section(failed or [], len(recs))
    for section in sections:  # from higher layers (baselines, scoring): see sim.build.build
        lines += section(samples)
    lines += [
        "## Perturbation matrix",
        "",
        "`python benchmarks/perturbation_matrix.py --out DIR` regenerates it; the CI test "
        "`tests/test_perturb.py` checks it on one seed; docs/dataset.md says why the missed rows miss.",
        "",
    ]
    if not cfg.quick:  # numpy only, but two minutes: not for the test-sized build
        from .perturb import markdown, matrix

        table = markdown(matrix(seeds=2))
        (out / "perturbation.md").write_text(table)
        lines += table.split("\n", 1)[1].strip().splitlines() + [""]  # without its own title
    else:
        lines += ["Not computed for a `--quick` build.", ""]
    lines += [
        "## Defect -> label (physics check of the image task)",
        "",
        "Rows: injected defect (an experiment may carry two); cells: percentage of the experiments "
        "with that defect whose reconstruction carries the label; n: count.",
        "",
    ]
    lines += _defect_label_table(vis)

    lines += [
        "",
        "## Parameter-recommendation labels (verified by repeated reconstructions)",
        "",
        f"An option is a label when, applied to the same data, it lowers the error against the truth "
        f"by at least {100 * GAIN_MARGIN:.0f}% and {MIN_ABS_GAIN:g} absolute on average over {N_SEEDS} "
        f"paired repeats, by more than {SPREAD_FACTOR:g} times the seed-to-seed spread, with a one-sided "
        f"paired t-test p < {MAX_P:g}; mutually exclusive options are never both labels. "
        '"No changes needed" (L): no option is verified and the reconstruction shows no artifacts.',
        "",
        "| option | " + " | ".join(tsplits) + " | tried | screened out | verified | mean gain when a label |",
        "|---" * (len(tsplits) + 5) + "|",
    ]
    decisions: dict[str, Counter] = defaultdict(Counter)
    gain_when = defaultdict(list)
    for s in txt:
        for k, d in s.metadata.get("option_decisions", {}).items():
            decisions[k][d] += 1
        for k, g in s.metadata["option_gains"].items():
            if g is not None and k in s.labels:
                gain_when[k].append(g)
    for k, name in PARAM_OPTIONS.items():
        counts = " | ".join(str(sum(k in s.labels and s.split == sp for s in txt)) for sp in tsplits)
        c = decisions[k]
        mg = f"{100 * np.mean(gain_when[k]):.0f}%" if gain_when[k] else "-"
        lines.append(f"| {k} {name} | {counts} | {sum(c.values())} | {c['screened out']} | {c['verified']} | {mg} |")
    spreads = [s.metadata["seed_spread"] for s in txt if s.metadata.get("seed_spread") is not None]
    if spreads:
        lines += [
            "",
            f"Seed-to-seed spread of the current parameters' error (relative std over {N_SEEDS} repeats): "
            f"median {100 * np.median(spreads):.2f}%, 90th percentile {100 * np.percentile(spreads, 90):.2f}%, "
            f"max {100 * max(spreads):.2f}% (n = {len(spreads)}).",
        ]
    lines += ["", "### Defect -> option", ""] + _defect_option_table(txt)
    lines += ["", "### Physics checks", ""] + _physics_checks(txt)
    n_lab = [len(s.labels) for s in txt]
    if n_lab:
        lines += [
            "",
            "Text samples: "
            + ", ".join(f"{sum(s.split == sp for s in txt)} {sp}" for sp in tsplits)
            + f"; labels per sample: mean {np.mean(n_lab):.2f}, max {max(n_lab)}.",
            "",
        ]

    # timings vary from run to run: they go to their own file so that everything else a
    # build writes is byte-identical for a seed
    work = out / ".work"
    unit, recon, n_trial = [], [], []
    for p in sorted(work.glob("timing-*.json")):
        t = json.loads(p.read_text())
        unit.append(t["unit_seconds"])
        recon.append(t["recon_seconds"])
        n_trial.append(t.get("n_trial_reconstructions", 0))
    if unit:
        tl = [
            "# Build timings (CPU, one thread per worker process)",
            "",
            f"- reconstruction (LSQML, current parameters): mean {np.mean(recon):.2f} s, "
            f"median {np.median(recon):.2f} s over {len(recon)}",
            f"- option-trial reconstructions: {sum(n_trial)} in all",
            f"- all work units: {sum(unit) / 60:.1f} CPU-minutes",
        ]
        if build_seconds is not None:
            tl.append(
                f"- wall time of the last `generate` call: {build_seconds / 60:.1f} min "
                "(a resumed build reports only its own part)"
            )
        (out / "timing.md").write_text("\n".join(tl) + "\n")
        lines += ["Build timings: [timing.md](timing.md).", ""]

    lines += [
        "## Contact sheets",
        "",
        "Up to 24 examples per label, captioned with sample id and the label's measurement; and 24 random "
        '"No obvious artifacts" images.',
        "",
    ]
    from .labels import THRESHOLDS

    for lab in ARTIFACT_LABELS:
        ex = [s for s in vis if lab in s.labels]
        if lab == "No obvious artifacts":
            rng = np.random.default_rng(5)
            ex = [ex[i] for i in sorted(rng.permutation(len(ex))[:24])] if ex else []
        ex = ex[:24]
        if not ex:
            continue
        key = THRESHOLDS.get(lab, ("error", "", 0))[0]
        caps = [
            f"{s.id} p={s.metadata['labeller_probabilities'][lab]:.2f}"  # sim-v3: the labeller's probability
            if lab in s.metadata.get("labeller_probabilities", {})
            else f"{s.id} {key[:6]}={s.metadata['metrics'][key]:.2f}"
            for s in ex
        ]
        dest = out / "validation" / f"{_slug(lab)}.png"
        contact_sheet([s.image for s in ex], caps, dest, size=192)
        lines.append(f"- {lab}: [validation/{dest.name}](validation/{dest.name})")
    review = out / "review" / "validation-review.md"
    if review.is_file():  # inlined, headings one level down: the review is part of the validation
        text = review.read_text(encoding="utf-8").replace("\n## ", "\n### ").removeprefix("# ")
        lines += ["", "## " + text.strip(), "", "Source: [review/validation-review.md](review/validation-review.md)."]
    (out / "validation.md").write_text("\n".join(lines) + "\n")
