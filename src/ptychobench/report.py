"""``ptychobench report RUN_DIR``: tables, plots, paired comparisons and a summary in
words, from the run's stores only (every shard merged). Writes ``report.md`` and a
self-contained ``report.html`` (plots embedded)."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from .evaluate import ConfigScores, score_records
from .metrics import paired_bootstrap
from .store import read_run
from .tasks import get_task

FAMILY_ORDER = ("zero-shot", "icl", "sft", "sft+icl", "baseline")
ALPHA = 0.05


def _fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


@dataclass
class Comparison:
    task: str
    kind: str
    a: str
    b: str
    n: int
    f1_a: float
    f1_b: float
    diff: float
    ci: tuple[float, float]
    p: float
    d: float | None

    @property
    def verdict(self) -> str:
        if self.p >= ALPHA:
            return "no significant difference"
        return "A better" if self.diff > 0 else "B better"


# --------------------------------------------------------------------------- analysis


def _by_config(records: list[dict]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in records:
        out[r["config"]][r["sample_id"]] = r
    return out


def _compare(task: str, kind: str, a: str, b: str, recs: dict[str, dict[str, dict]]) -> Comparison | None:
    ids = sorted(set(recs[a]) & set(recs[b]))
    if len(ids) < 2:
        return None
    t = get_task(task)
    gold = [frozenset(recs[a][i]["gold"]) for i in ids]
    pa = [frozenset(recs[a][i]["labels"]) for i in ids]
    pb = [frozenset(recs[b][i]["labels"]) for i in ids]
    c = paired_bootstrap(gold, pa, pb, t.scored_labels)
    return Comparison(task, kind, a, b, c.n, c.micro_f1_a, c.micro_f1_b, c.diff, c.diff_ci, c.p_value, c.cohens_d)


def paired_comparisons(results: list[ConfigScores], recs: dict[str, dict[str, dict]]) -> list[Comparison]:
    """The comparisons the paper draws, between cells that differ in one factor only."""
    by_key: dict[tuple, ConfigScores] = {}
    for r in results:
        m = r.meta
        by_key[(m.get("task"), m.get("model"), m.get("strategy"), m.get("selector"), m.get("k"),
                m.get("seed"), m.get("train_size"))] = r
    out: list[Comparison] = []

    def add(kind: str, a: ConfigScores | None, b: ConfigScores | None) -> None:
        if a is not None and b is not None:
            c = _compare(a.task, kind, a.config, b.config, recs)
            if c:
                out.append(c)

    for (task, model, strategy, sel, k, seed, n), r in sorted(by_key.items(), key=lambda kv: repr(kv[0])):
        if strategy == "sft+icl":
            add("SFT+ICL vs ICL", r, by_key.get((task, model, "icl", sel, k, seed, n)))
        if strategy in ("icl", "sft+icl") and sel != "random":
            add(f"context-aware ({sel}) vs random", r, by_key.get((task, model, strategy, "random", k, seed, n)))
        if strategy == "sft+icl" and sel == "random":
            add("SFT+random demos vs SFT 0-shot", r, by_key.get((task, model, "sft", None, 0, seed, n)))
        if strategy == "sft":
            base_icl = [x for key, x in by_key.items() if key[:3] == (task, model, "icl") and key[5:] == (seed, n)]
            if base_icl:
                best = max(base_icl, key=lambda x: x.scores.micro_f1)
                add("SFT 0-shot vs best base ICL", r, best)
            zs = [x for key, x in by_key.items() if key[:3] == (task, model, "zero-shot")]
            if zs:
                add("SFT 0-shot vs base 0-shot", r, zs[0])
    # the best model-based cell against the best baseline, per task
    for task in sorted({r.task for r in results}):
        models = [r for r in results if r.task == task and r.meta.get("family") != "baseline"]
        bases = [r for r in results if r.task == task and r.meta.get("family") == "baseline"]
        if models and bases:
            add("best model cell vs best baseline",
                max(models, key=lambda x: x.scores.micro_f1), max(bases, key=lambda x: x.scores.micro_f1))
    return out


def summary_in_words(results: list[ConfigScores], comps: list[Comparison]) -> list[str]:
    lines: list[str] = []
    for task in sorted({r.task for r in results}):
        rs = sorted([r for r in results if r.task == task], key=lambda r: -r.scores.micro_f1)
        best = rs[0]
        lo, hi = best.scores.micro_f1_ci or (float("nan"), float("nan"))
        title = get_task(task).title
        lines.append(f"**{title}** ({best.scores.n} test samples): the best cell is `{best.config}` with "
                     f"micro-F1 {_fmt(best.scores.micro_f1)} (95% CI {_fmt(lo)}-{_fmt(hi)}).")
        fam_best = {}
        for r in rs:
            fam_best.setdefault(r.meta.get("family", "?"), r)
        parts = [f"{fam} {_fmt(r.scores.micro_f1)}" for fam, r in
                 sorted(fam_best.items(), key=lambda kv: FAMILY_ORDER.index(kv[0]) if kv[0] in FAMILY_ORDER else 9)]
        lines.append(f"Best micro-F1 per strategy family: {', '.join(parts)}.")
        overlapping = [r for r in rs[1:] if (r.scores.micro_f1_ci or (0, 0))[1] >= lo]
        if overlapping:
            lines.append(f"{len(overlapping)} other cell(s) have CIs overlapping the best one's lower bound, "
                         "so the ranking at the top is not settled by this test set.")
        by_kind: dict[str, list[Comparison]] = defaultdict(list)
        for c in comps:
            if c.task == task:
                by_kind[c.kind].append(c)
        for kind, cs in sorted(by_kind.items()):
            better = sum(1 for c in cs if c.p < ALPHA and c.diff > 0)
            worse = sum(1 for c in cs if c.p < ALPHA and c.diff < 0)
            mean_diff = sum(c.diff for c in cs) / len(cs)
            verdict = ("significantly better" if better and not worse else
                       "significantly worse" if worse and not better else
                       "mixed" if better and worse else "not significantly different")
            lines.append(f"- {kind}: {verdict} (p < {ALPHA} better in {better}, worse in {worse} "
                         f"of {len(cs)} paired comparison(s); mean difference {mean_diff:+.3f}).")
        parse_fail = sum(r.scores.parse_failures for r in rs)
        errors = sum(r.scores.errors for r in rs)
        if parse_fail or errors:
            lines.append(f"Unparseable replies: {parse_fail}; generation errors: {errors} "
                         "(both counted as empty predictions).")
        lines.append("")
    lines.append(f"p-values are two-sided paired bootstrap ({ALPHA} threshold, no correction for the number "
                 "of comparisons); Cohen's d is the paired effect size of the micro-F1 difference (the "
                 "difference over its bootstrap standard error times sqrt(n)).")
    lines.append("")
    return lines


# --------------------------------------------------------------------------- adapters

ADAPTER_HEAD = ["task", "model", "adapter", "train samples", "steps", "epochs done / planned", "stopped by budget",
                "wall s", "mean train loss", "cells"]


def adapter_rows(results: list[ConfigScores]) -> list[dict[str, Any]]:
    """One row per fine-tuned adapter the run used: how far its training went (recorded
    by the runner; older stores: read from the adapter folder where it still is)."""
    from .strategies.sft import training_summary

    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        path = r.meta.get("adapter")
        if not path:
            continue
        row = rows.get(path)
        if row is None:
            info = r.meta.get("adapter_training") or training_summary(path) or {}
            row = rows[path] = {"task": r.task, "model": r.meta.get("model"), "name": Path(path).name,
                                "info": info, "cells": 0}
        row["cells"] += 1
    return sorted(rows.values(), key=lambda x: (x["task"], str(x["model"]), x["name"]))


def _adapter_cells(row: dict[str, Any]) -> list[str]:
    i = row["info"]
    if not i:
        return [row["task"], str(row["model"]), row["name"], *["?"] * 6, str(row["cells"])]
    budget = i.get("time_budget_s")
    stopped = f"yes ({budget:g} s)" if i.get("stopped_by_time_budget") else "no"
    return [row["task"], str(row["model"]), row["name"], str(i.get("train_samples", "?")), str(i.get("steps", "?")),
            f"{_fmt(i.get('epochs_done'), 2)} / {i.get('epochs_planned', '?')}", stopped,
            _fmt(i.get("wall_time_s"), 0), _fmt(i.get("train_loss"), 3), str(row["cells"])]


def adapter_words(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        i = row["info"]
        if i.get("stopped_by_time_budget"):
            lines.append(
                f"Fine-tuning of the {row['task']} adapter for {row['model']} stopped at its "
                f"{i.get('time_budget_s'):g} s time budget after {_fmt(i.get('epochs_done'), 2)} of "
                f"{i.get('epochs_planned')} epochs: its {row['cells']} cell(s) come from a partly trained model, "
                "and their numbers can change with the machine's load (a larger `sft: {time_budget_s: ...}` "
                "trains fully).")
    return lines + ([""] if lines else [])


# --------------------------------------------------------------------------- plots


def _label_name(task: str, label: str, width: int = 38) -> str:
    """A label as a reader knows it: parameter options by letter and text."""
    from .tasks import PARAM_OPTIONS

    if task != "params" or label not in PARAM_OPTIONS:
        return label
    text = f"{label}. {PARAM_OPTIONS[label]}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _plots(results: list[ConfigScores], out: Path) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    figs: list[tuple[str, Path]] = []
    tasks = sorted({r.task for r in results})
    for task in tasks:
        rs = [r for r in results if r.task == task]
        sizes = sorted({r.meta.get("train_size") for r in rs}, key=lambda n: math.inf if n == "all" else n)
        full = [r for r in rs if r.meta.get("train_size") == sizes[-1]]
        # micro-F1 against k, base and SFT side by side
        for model in sorted({r.meta.get("model") for r in full if r.meta.get("family") != "baseline"}):
            mr = [r for r in full if r.meta.get("model") == model]
            has_sft = any(r.meta.get("strategy") in ("sft", "sft+icl") for r in mr)
            all_k = sorted({int(r.meta.get("k") or 0) for r in mr})
            fig, axes = plt.subplots(1, 2 if has_sft else 1, figsize=(10 if has_sft else 5.5, 4), sharey=True,
                                     sharex=True, squeeze=False)
            for ax, (title, k0, icl) in zip(axes[0], [("base model", "zero-shot", "icl"), ("fine-tuned (SFT)", "sft", "sft+icl")]):
                zero = [r for r in mr if r.meta.get("strategy") == k0]
                selectors = sorted({r.meta.get("selector") for r in mr if r.meta.get("strategy") == icl})
                for sel in selectors or [None]:
                    pts = _mean_by_k(zero + [r for r in mr if r.meta.get("strategy") == icl and r.meta.get("selector") == sel])
                    if not pts:
                        continue
                    ks, f, lo, hi = zip(*pts)
                    ax.errorbar(ks, f, yerr=[np.subtract(f, lo), np.subtract(hi, f)], marker="o", capsize=3,
                                label=sel or k0)
                ax.set_title(f"{model}: {title}")
                ax.set_xticks(all_k)  # the same k axis in both panels, also where one has k=0 only
                ax.set_xlim(all_k[0] - 0.5, all_k[-1] + 0.5)
                ax.set_xlabel("demonstrations k")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
            axes[0][0].set_ylabel("micro-F1 (95% CI)")
            axes[0][0].set_ylim(0, 1)
            fig.suptitle(f"{get_task(task).title}: micro-F1 against k")
            figs.append(_save(fig, out / f"k_curve_{task}_{_safe(model)}.png", f"{get_task(task).title}, {model}: micro-F1 against k, base and fine-tuned"))
        # per-label and per-sample-type heatmaps
        top = sorted(full, key=lambda r: -r.scores.micro_f1)[:25]
        for kind, getter in (("per-label F1", lambda r: r.scores.per_label_f1),
                             ("per-sample-type micro-F1", lambda r: r.scores.per_type_micro_f1)):
            cols = list(getter(top[0]).keys()) if top else []
            for r in top:
                cols += [c for c in getter(r) if c not in cols]
            caption = f"{get_task(task).title}: {kind} (best {len(top)} cells)"
            if kind == "per-label F1" and top:
                # a label no test sample has cannot be found, only falsely predicted: its F1 is 0 by
                # convention and says nothing, so it is named in the caption instead of drawn
                support = top[0].scores.per_label_support
                absent = [c for c in cols if support.get(c, 1) == 0]
                cols = [c for c in cols if c not in absent]
                if absent:
                    caption += f"; not in the test set, left out: {', '.join(absent)}"
            if not cols:
                continue
            m = np.array([[getter(r).get(c, np.nan) for c in cols] for r in top])
            names = [_label_name(task, c) for c in cols]
            rows = [_short(r.config) for r in top]
            if len(cols) > 12:  # many labels: one row per label, so their names can be read
                m, names, rows = m.T, rows, names
            fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names) + 4), 0.32 * len(rows) + 2.2))
            im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
            ax.set_yticks(range(len(rows)), rows, fontsize=7)
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    if not np.isnan(m[i, j]):
                        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if m[i, j] < 0.5 else "black")
            fig.colorbar(im, ax=ax, fraction=0.03)
            ax.set_title(f"{get_task(task).title}: {kind}")
            figs.append(_save(fig, out / f"{'labels' if 'label' in kind else 'types'}_{task}.png", caption))
        # learning curve
        if len(sizes) > 1:
            fig, ax = plt.subplots(figsize=(6.5, 4))
            series: dict[str, list] = defaultdict(list)
            for r in rs:
                m_ = r.meta
                if m_.get("strategy") == "zero-shot":
                    continue
                name = f"{m_.get('model')} {m_.get('strategy')}" + (f" {m_.get('selector')} k{m_.get('k')}" if m_.get("selector") else "")
                series[name].append((int(m_.get("n_train", 0)), r.scores.micro_f1))
            for name, pts in sorted(series.items()):
                pts.sort()
                ax.plot(*zip(*pts), marker="o", label=name)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("labelled training examples")
            ax.set_ylabel("micro-F1")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            ax.set_title(f"{get_task(task).title}: learning curve")
            figs.append(_save(fig, out / f"learning_curve_{task}.png", f"{get_task(task).title}: micro-F1 against training-set size"))
    return figs


def _save(fig, path: Path, caption: str) -> tuple[str, Path]:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return caption, path


def _mean_by_k(rs: list[ConfigScores]) -> list[tuple]:
    by_k: dict[int, list[ConfigScores]] = defaultdict(list)
    for r in rs:
        by_k[int(r.meta.get("k", 0))].append(r)
    pts = []
    for k in sorted(by_k):
        xs = by_k[k]
        f = sum(x.scores.micro_f1 for x in xs) / len(xs)
        lo = sum((x.scores.micro_f1_ci or (f, f))[0] for x in xs) / len(xs)
        hi = sum((x.scores.micro_f1_ci or (f, f))[1] for x in xs) / len(xs)
        pts.append((k, f, min(lo, f), max(hi, f)))
    return pts


def _safe(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(s))


def _short(config: str) -> str:
    return config.split("/", 1)[1] if "/" in config else config


# --------------------------------------------------------------------------- writing


def _main_rows(results: list[ConfigScores]) -> list[dict[str, Any]]:
    rows = []
    for task in sorted({r.task for r in results}):
        rs = [r for r in results if r.task == task]
        best = max(rs, key=lambda r: r.scores.micro_f1)
        for r in sorted(rs, key=lambda r: (FAMILY_ORDER.index(r.meta.get("family", "baseline"))
                                           if r.meta.get("family") in FAMILY_ORDER else 9,
                                           str(r.meta.get("model")), str(r.meta.get("selector")),
                                           r.meta.get("k", 0), r.meta.get("seed", 0), str(r.meta.get("train_size")))):
            m, s = r.meta, r.scores
            lo, hi = s.micro_f1_ci or (float("nan"), float("nan"))
            rows.append({
                "task": task, "model": m.get("model"), "strategy": m.get("strategy"),
                "selector": m.get("selector") or "", "k": m.get("k", 0), "seed": m.get("seed", 0),
                "n_train": m.get("n_train", m.get("train_size")), "n": s.n, "micro_f1": s.micro_f1, "ci": (lo, hi),
                "macro_f1": s.macro_f1, "exact": s.exact_match, "parse_fail": s.parse_failures,
                "errors": s.errors, "best": r is best, "config": r.config,
            })
    return rows


HEAD = ["task", "model", "strategy", "selector", "k", "seed", "n train", "n test", "micro-F1", "95% CI",
        "macro-F1", "exact", "parse fail", "errors"]


def _row_cells(row: dict[str, Any]) -> list[str]:
    star = " ★" if row["best"] else ""
    return [row["task"], str(row["model"]), row["strategy"], row["selector"], str(row["k"]), str(row["seed"]),
            str(row["n_train"]), str(row["n"]), f"{row['micro_f1']:.3f}{star}",
            f"[{_fmt(row['ci'][0])}, {_fmt(row['ci'][1])}]", f"{row['macro_f1']:.3f}", f"{row['exact']:.3f}",
            str(row["parse_fail"]), str(row["errors"])]


COMP_HEAD = ["task", "comparison", "A", "B", "n", "F1 A", "F1 B", "A-B", "95% CI of A-B", "p", "Cohen's d", "verdict"]


def _comp_cells(c: Comparison) -> list[str]:
    return [c.task, c.kind, _short(c.a), _short(c.b), str(c.n), _fmt(c.f1_a), _fmt(c.f1_b), f"{c.diff:+.3f}",
            f"[{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]", _fmt(c.p), _fmt(c.d, 2), c.verdict]


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = [[x.replace("|", "\\|") for x in r] for r in rows]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in esc])


def _html_table(head: list[str], rows: list[list[str]], best: list[bool] | None = None) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        cls = ' class="best"' if best and best[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>")
    return "\n".join(out + ["</tbody></table>"])


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:nth-child(-n+4){text-align:left}tr.best td{background:#fff4c2;font-weight:600}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}figure{margin:1.5em 0}figcaption{font-size:13px;color:#555}
.summary p,.summary li{font-size:15px;line-height:1.5}"""


def write_report(run_dir: Path | str, seed: int = 0) -> dict[str, Path]:
    run_dir = Path(run_dir)
    records = read_run(run_dir)
    results = score_records(records, seed=seed)
    recs = _by_config(records)
    comps = paired_comparisons(results, recs)
    adapters = adapter_rows(results)
    words = summary_in_words(results, comps) + adapter_words(adapters)
    figs = _plots(results, run_dir / "report_files")
    rows = _main_rows(results)
    adapter_table = [_adapter_cells(a) for a in adapters]

    (run_dir / "scores.json").write_text(json.dumps(
        [{"config": r.config, "task": r.task, "meta": r.meta, **r.scores.as_dict()} for r in results], indent=1))
    md = ["# PtychoBench report", "", f"Run folder: `{run_dir}`; {len(records)} stored predictions in "
          f"{len(results)} cells (every shard's store merged).", "", "## Summary", "", *words,
          "## Main table", "", "micro-F1 with a 95% percentile bootstrap CI (10,000 resamples over test samples); "
          "★ marks the best row per task. Parse failures and errors count as empty predictions.", "",
          _md_table(HEAD, [_row_cells(r) for r in rows]), "", "## Paired comparisons", "",
          _md_table(COMP_HEAD, [_comp_cells(c) for c in comps]) if comps else "(no pairs of cells to compare)", "",
          *(["## Fine-tuned adapters", "", _md_table(ADAPTER_HEAD, adapter_table), ""] if adapters else []),
          "## Plots", ""]
    for caption, p in figs:
        md += [f"![{caption}]({p.relative_to(run_dir)})", "", f"*{caption}*", ""]
    md_path = run_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")

    def para(line: str) -> str:
        text = html.escape(line)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        return f"<li>{text[2:]}</li>" if line.startswith("- ") else (f"<p>{text}</p>" if line else "")

    body = ["<h1>PtychoBench report</h1>", f"<p>Run folder: <code>{html.escape(str(run_dir))}</code>; "
            f"{len(records)} stored predictions in {len(results)} cells.</p>",
            "<h2>Summary</h2><div class='summary'>", *(para(x) for x in words), "</div>",
            "<h2>Main table</h2><p>micro-F1 with a 95% percentile bootstrap CI (10,000 resamples over test "
            "samples); the highlighted row is the best per task.</p>",
            _html_table(HEAD, [_row_cells(r) for r in rows], [r["best"] for r in rows]),
            "<h2>Paired comparisons</h2>",
            _html_table(COMP_HEAD, [_comp_cells(c) for c in comps]) if comps else "<p>(none)</p>",
            *(["<h2>Fine-tuned adapters</h2>", _html_table(ADAPTER_HEAD, adapter_table)] if adapters else []),
            "<h2>Plots</h2>"]
    for caption, p in figs:
        data = base64.b64encode(p.read_bytes()).decode()
        body.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    html_path = run_dir / "report.html"
    html_path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>PtychoBench report</title>"
                         f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    return {"md": md_path, "html": html_path, "scores": run_dir / "scores.json"}


def report_command(
    run_dir: Path = typer.Argument(..., help="Run folder; every predictions*.jsonl in it (all shards) is merged."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Write report.md and a self-contained report.html for a run (tables, plots, statistics).

    Example: ptychobench report runs/default
    """
    from rich.console import Console

    paths = write_report(run_dir, seed=seed)
    Console().print(f"report: [bold]{paths['html'].resolve()}[/] (and {paths['md'].name}, {paths['scores'].name})")
