"""The tables the paper reports, from a run's scores, laid out as the paper lays them out.

- One ICL table per task: a row per model x (base or fine-tuned) x demo selector, a column
  per k (k = 0 is the zero-shot or SFT 0-shot cell), each entry the bootstrap mean ± std of
  micro-F1 as the paper prints them.
- One scores table per task with the numbers both protocols compute, side by side: micro
  and macro precision/recall/F1 over the fixed label space (ours), macro-F1 over the labels
  present in the test set, micro-F1 counting "No obvious artifacts" as a class (the
  authors' bootstrap scorer), the authors' inference-script micro/macro-F1 (their strict
  parse of the stored reply, binarised over the strings seen), and the number the paper
  prints: their bootstrap scorer's parse, all 12 labels, bootstrap mean ± std.
- Per-sample-type micro-F1 with its n, for the best cell of each model and family.
- The paired comparisons with the authors' Cohen's d (mean / std of the bootstrap
  differences) beside ours.

Several seeds: an entry is the mean over the seeds of each seed's bootstrap mean (and of
its std); the table says how many seeds it averages.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean
from typing import Any, Iterable, Sequence

from ..eval.compare import Comparison
from ..eval.metrics import binarize, bootstrap_stats, released_scores
from ..eval.score import ConfigScores
from ..tasks import NO_ARTIFACTS, get_task
from .format import fmt, fmt_p, short_config
from .tables import html_table, md_table

SELECTOR_NAMES = {"random": "random (RFS)", "sample-type": "sample-type (SSFS)", "knn": "knn"}


def _mean_std(rs: Sequence[ConfigScores]) -> str:
    means = [r.scores.micro_f1_boot_mean for r in rs if r.scores.micro_f1_boot_mean is not None]
    stds = [r.scores.micro_f1_boot_std for r in rs if r.scores.micro_f1_boot_std is not None]
    if not means:
        return fmt(mean(r.scores.micro_f1 for r in rs)) if rs else ""
    return f"{mean(means):.3f} ± {mean(stds):.3f}"


def icl_rows(results: Sequence[ConfigScores], task: str) -> tuple[list[str], list[list[str]]]:
    """Model x family x selector rows, k columns (the paper's ICL tables)."""
    cells: dict[tuple[str, str, str], dict[int, list[ConfigScores]]] = defaultdict(lambda: defaultdict(list))
    zero: dict[tuple[str, str], list[ConfigScores]] = defaultdict(list)
    for r in results:
        m = r.meta
        if r.task != task or m.get("family") == "baseline":
            continue
        fam = "SFT" if m.get("strategy") in ("sft", "sft+icl") else "base"
        if m.get("k", 0) == 0:
            zero[(str(m.get("model")), fam)].append(r)
        else:
            cells[(str(m.get("model")), fam, str(m.get("selector")))][int(m["k"])].append(r)
    ks = sorted({0} | {k for by_k in cells.values() for k in by_k})
    rows = []
    keys = sorted(set(cells) | {(mo, fam, "-") for mo, fam in zero if not any(key[:2] == (mo, fam) for key in cells)})
    for model, fam, sel in keys:
        by_k = cells.get((model, fam, sel), {})
        seeds = {r.meta.get("seed") for rs in by_k.values() for r in rs} | {
            r.meta.get("seed") for r in zero.get((model, fam), [])
        }
        rows.append(
            [model, fam, SELECTOR_NAMES.get(sel, sel), str(len(seeds))]
            + [_mean_std(zero.get((model, fam), [])) if k == 0 else _mean_std(by_k.get(k, [])) for k in ks]
        )
    return ["model", "", "selector", "seeds", *(f"k={k}" for k in ks)], rows


def reparsed_released(task_name: str, recs: Iterable[dict[str, Any]]) -> dict[str, float] | None:
    """The authors' inference-script metrics for one cell from its stored records: their
    strict parse of each reply (gold: the stored labels), "No obvious artifacts" dropped."""
    task = get_task(task_name)
    gold, pred = [], []
    for r in recs:
        gold.append([x for x in r["gold"] if x != NO_ARTIFACTS])
        if r.get("reply") or r.get("error"):
            parsed = task.parse_strict(r.get("reply") or "")
            pred.append([x for x in task.labels if x in parsed.labels and x != NO_ARTIFACTS] + list(parsed.extra))
        else:  # a baseline's record: labels, no reply
            pred.append([x for x in r["labels"] if x != NO_ARTIFACTS])
    return released_scores(gold, pred) if gold else None


def reparsed_bootstrap(task_name: str, recs: Iterable[dict[str, Any]], seed: int = 0) -> tuple[float, float] | None:
    """The number the paper reports for one cell: the authors' bootstrap scorer's parse of
    each stored reply, micro-F1 over the whole label space ("No obvious artifacts" a class),
    bootstrap mean and std (our resamples, not theirs)."""
    task = get_task(task_name)
    recs = list(recs)
    if not recs:
        return None
    gold = [frozenset(r["gold"]) for r in recs]
    pred = [
        task.parse_bootstrap(r.get("reply") or "").labels
        if (r.get("reply") or r.get("error"))
        else frozenset(r["labels"])
        for r in recs
    ]
    labels = list(task.labels)
    _, _, m, sd = bootstrap_stats(binarize(gold, labels), binarize(pred, labels), seed=seed)
    return m, sd


SCORES_HEAD = [
    "cell",
    "n",
    "micro P",
    "micro R",
    "micro-F1",
    "boot mean ± std",
    "macro P",
    "macro R",
    "macro-F1",
    "macro-F1 (present labels)",
    "micro-F1 incl. no-artifacts",
    "theirs: micro-F1",
    "theirs: macro-F1",
    "theirs: bootstrap scorer mean ± std",
]


def scores_rows(results: Sequence[ConfigScores], recs: dict[str, dict[str, dict]], task: str) -> list[list[str]]:
    rows = []
    for r in sorted((r for r in results if r.task == task), key=lambda r: r.config):
        s = r.scores
        theirs = reparsed_released(task, recs.get(r.config, {}).values())
        boot_theirs = reparsed_bootstrap(task, recs.get(r.config, {}).values())
        boot = f"{s.micro_f1_boot_mean:.3f} ± {s.micro_f1_boot_std:.3f}" if s.micro_f1_boot_mean is not None else "n/a"
        rows.append(
            [
                short_config(r.config),
                str(s.n),
                fmt(s.micro_precision),
                fmt(s.micro_recall),
                fmt(s.micro_f1),
                boot,
                fmt(s.macro_precision),
                fmt(s.macro_recall),
                fmt(s.macro_f1),
                f"{fmt(s.macro_f1_present)} ({s.present_labels})",
                fmt(s.micro_f1_with_none) if s.micro_f1_with_none is not None else "—",
                fmt(theirs["micro_f1"]) if theirs else "n/a",
                fmt(theirs["macro_f1"]) if theirs else "n/a",
                f"{boot_theirs[0]:.3f} ± {boot_theirs[1]:.3f}" if boot_theirs else "n/a",
            ]
        )
    return rows


def per_type_rows(results: Sequence[ConfigScores], task: str) -> tuple[list[str], list[list[str]]]:
    """Micro-F1 per sample type (with n) for the best cell of each model and family."""
    best: dict[tuple[str, str], ConfigScores] = {}
    for r in results:
        if r.task != task:
            continue
        key = (str(r.meta.get("model")), str(r.meta.get("family")))
        if key not in best or r.scores.micro_f1 > best[key].scores.micro_f1:
            best[key] = r
    chosen = [best[k] for k in sorted(best)]
    types = sorted({t for r in chosen for t in r.scores.per_type_n})
    head = ["sample type", "n", *(short_config(r.config) for r in chosen)]
    rows = []
    for t in types:
        n = max(r.scores.per_type_n.get(t, 0) for r in chosen)
        rows.append([t, str(n), *(fmt(r.scores.per_type_micro_f1.get(t)) for r in chosen)])
    return head, rows


COMP_HEAD = [
    "comparison",
    "A",
    "B",
    "A-B",
    "boot mean ± std of A-B",
    "p (ours)",
    "p (theirs)",
    "Cohen's d (ours, d_z)",
    "Cohen's d (theirs: mean/std)",
]


def comparison_rows(comps: Sequence[Comparison], task: str) -> list[list[str]]:
    return [
        [
            c.kind,
            short_config(c.a),
            short_config(c.b),
            f"{c.diff:+.3f}",
            f"{c.diff_mean:+.3f} ± {c.diff_std:.3f}" if c.diff_mean is not None else "n/a",
            fmt_p(c.p),
            fmt(c.p_authors),
            fmt(c.d, 2),
            fmt(c.d_authors, 2),
        ]
        for c in comps
        if c.task == task
    ]


def paper_sections(
    results: Sequence[ConfigScores], recs: dict[str, dict[str, dict]], comps: Sequence[Comparison]
) -> tuple[list[str], list[str]]:
    """(Markdown lines, HTML fragments) of the paper's tables, one set per task."""
    md = [
        "## The paper's tables",
        "",
        "Laid out as the paper lays out its results (docs/paper.md explains every difference between our "
        "protocol and the authors'). Entries are the bootstrap mean ± std of micro-F1 (10,000 resamples); "
        "with several seeds, the mean over seeds of each.",
        "",
    ]
    out_html = [
        "<h2>The paper's tables</h2><p>Bootstrap mean ± std of micro-F1 (10,000 resamples); with several "
        "seeds, the mean over seeds of each. docs/paper.md lists every protocol difference.</p>"
    ]
    for task in sorted({r.task for r in results}):
        title = get_task(task).title
        icl_head, icl = icl_rows(results, task)
        type_head, types = per_type_rows(results, task)
        comp = comparison_rows(comps, task)
        sections = [
            (f"{title}: in-context learning (model x selector x k)", icl_head, icl),
            (f"{title}: scores under both protocols", SCORES_HEAD, scores_rows(results, recs, task)),
            (f"{title}: micro-F1 per sample type (best cell per model and family)", type_head, types),
            (f"{title}: paired comparisons with both effect sizes", COMP_HEAD, comp),
        ]
        for caption, head, rows in sections:
            if not rows:
                continue
            md += [f"### {caption}", "", md_table(head, rows), ""]
            out_html += [f"<h3>{caption}</h3>", html_table(head, rows)]
    return md, out_html
