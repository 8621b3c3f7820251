"""The report's summary in words: what a reader should take from the tables."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..eval.compare import ALPHA, MIN_N, Comparison
from ..eval.score import ConfigScores
from ..names import FAMILY_ORDER
from ..tasks import get_task
from .format import fmt


def run_warnings(results: list[ConfigScores]) -> list[str]:
    """What a reader must know before any number: a cut test set, failed cells, stale records."""
    lines = []
    limits = sorted({r.meta["limit"] for r in results if isinstance(r.meta.get("limit"), int)})
    if limits:
        lines.append(
            f"**Warning: this run used only the first {', '.join(map(str, limits))} test sample(s) per "
            "task (`limit` in the config)**; its numbers are a smoke test, not the benchmark."
        )
    for r in results:
        if r.failed:
            lines.append(
                f"**Failed cell** `{r.config}`: {r.scores.errors} generation error(s) and "
                f"{r.scores.parse_failures} unparseable repl(ies) of {r.scores.n} "
                f"({r.failure_rate:.0%}); its F1 measures the failures, not the model, and it is "
                "never ranked best."
            )
        if r.stale:
            lines.append(f"`{r.config}`: {r.stale} record(s) made under older settings are left out of its score.")
    return [x for line in lines for x in (line, "")]  # each its own paragraph


def summary_in_words(results: list[ConfigScores], comps: list[Comparison]) -> list[str]:
    lines: list[str] = run_warnings(results)
    for task in sorted({r.task for r in results}):
        rs = sorted([r for r in results if r.task == task and not r.failed], key=lambda r: -r.scores.micro_f1)
        if not rs:
            lines += [f"**{get_task(task).title}**: every cell failed; no result to rank.", ""]
            continue
        best = rs[0]
        lo, hi = best.scores.micro_f1_ci or (float("nan"), float("nan"))
        title = get_task(task).title
        lines.append(
            f"**{title}** ({best.scores.n} test samples): the best cell is `{best.config}` with "
            f"micro-F1 {fmt(best.scores.micro_f1)} (95% CI {fmt(lo)}-{fmt(hi)})."
        )
        fam_best: dict[str, ConfigScores] = {}
        for r in rs:
            fam_best.setdefault(r.meta.get("family", "?"), r)
        parts = [
            f"{fam} {fmt(r.scores.micro_f1)}"
            for fam, r in sorted(
                fam_best.items(), key=lambda kv: FAMILY_ORDER.index(kv[0]) if kv[0] in FAMILY_ORDER else 9
            )
        ]
        lines.append(f"Best micro-F1 per strategy family: {', '.join(parts)}.")
        overlapping = [r for r in rs[1:] if (r.scores.micro_f1_ci or (0, 0))[1] >= lo]
        if overlapping:
            lines.append(
                f"{len(overlapping)} other cell(s) have CIs overlapping the best one's lower bound, "
                "so the ranking at the top is not settled by this test set."
            )
        by_kind: dict[str, list[Comparison]] = defaultdict(list)
        for c in comps:
            if c.task == task:
                by_kind[c.kind].append(c)
        for kind, all_cs in sorted(by_kind.items()):
            mean_diff = sum(c.diff for c in all_cs) / len(all_cs)
            cs = [c for c in all_cs if not c.small]
            if not cs:
                lines.append(
                    f"- {kind}: too few samples for a verdict (n = {min(c.n for c in all_cs)} < {MIN_N} "
                    f"in all {len(all_cs)} paired comparison(s); mean difference {mean_diff:+.3f})."
                )
                continue
            better = sum(1 for c in cs if c.p < ALPHA and c.diff > 0)
            worse = sum(1 for c in cs if c.p < ALPHA and c.diff < 0)
            verdict = (
                "significantly better"
                if better and not worse
                else "significantly worse"
                if worse and not better
                else "mixed"
                if better and worse
                else "not significantly different"
            )
            small = len(all_cs) - len(cs)
            lines.append(
                f"- {kind}: {verdict} (p < {ALPHA} better in {better}, worse in {worse} "
                f"of {len(cs)} paired comparison(s); mean difference {mean_diff:+.3f})"
                + (f"; {small} comparison(s) with n < {MIN_N} give no verdict." if small else ".")
            )
        parse_fail = sum(r.scores.parse_failures for r in rs)
        errors = sum(r.scores.errors for r in rs)
        if parse_fail or errors:
            lines.append(
                f"Unparseable replies: {parse_fail}; generation errors: {errors} (both counted as empty predictions)."
            )
        lines.append("")
    lines.append(
        f"p-values are two-sided paired bootstrap ({ALPHA} threshold, no correction for the number "
        "of comparisons); Cohen's d is the paired effect size of the micro-F1 difference (the "
        "difference over its bootstrap standard error times sqrt(n))."
    )
    lines.append("")
    return lines


def adapter_words(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        i = row["info"]
        if i.get("stopped_by_time_budget"):
            lines.append(
                f"Fine-tuning of the {row['task']} adapter for {row['model']} stopped at its "
                f"{i.get('time_budget_s'):g} s time budget after {fmt(i.get('epochs_done'), 2)} of "
                f"{i.get('epochs_planned')} epochs: its {row['cells']} cell(s) come from a partly trained model, "
                "and their numbers can change with the machine's load (a larger `sft: {time_budget_s: ...}` "
                "trains fully)."
            )
    return lines + ([""] if lines else [])
