"""Paired comparisons between cells that differ in one factor: the comparisons the paper
draws (SFT+ICL vs ICL, context-aware vs random demos, ...), each a paired bootstrap over
the test samples both cells answered."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..tasks import get_task
from .metrics import paired_bootstrap
from .score import ConfigScores, current_settings

ALPHA = 0.05
#: below this many paired samples a p-value is reported but no verdict is drawn from it: a
#: 4-sample comparison "significant at p = 0.016" says more about the bootstrap than the models
MIN_N = 20


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
    #: the authors' definitions (eval.metrics): d = mean/std of the bootstrap differences
    d_authors: float | None = None
    p_authors: float | None = None
    diff_mean: float | None = None
    diff_std: float | None = None

    @property
    def small(self) -> bool:
        return self.n < MIN_N

    @property
    def verdict(self) -> str:
        if self.small:
            return f"too few samples for a verdict (n = {self.n} < {MIN_N})"
        if self.p >= ALPHA:
            return "no significant difference"
        return "A better" if self.diff > 0 else "B better"


def by_config(records: list[dict]) -> dict[str, dict[str, dict]]:
    """Each cell's records by sample id, under the cell's newest settings only (as scored)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["config"]].append(r)
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for config, recs in groups.items():
        for r in current_settings(recs)[0]:
            out[config][r["sample_id"]] = r
    return out


def compare_cells(task: str, kind: str, a: str, b: str, recs: dict[str, dict[str, dict]]) -> Comparison | None:
    ids = sorted(set(recs[a]) & set(recs[b]))
    if len(ids) < 2:
        return None
    t = get_task(task)
    gold = [frozenset(recs[a][i]["gold"]) for i in ids]
    pa = [frozenset(recs[a][i]["labels"]) for i in ids]
    pb = [frozenset(recs[b][i]["labels"]) for i in ids]
    c = paired_bootstrap(gold, pa, pb, t.scored_labels)
    return Comparison(
        task,
        kind,
        a,
        b,
        c.n,
        c.micro_f1_a,
        c.micro_f1_b,
        c.diff,
        c.diff_ci,
        c.p_value,
        c.cohens_d,
        c.cohens_d_authors,
        c.p_value_authors,
        c.diff_boot_mean,
        c.diff_boot_std,
    )


def paired_comparisons(results: list[ConfigScores], recs: dict[str, dict[str, dict]]) -> list[Comparison]:
    """The comparisons the paper draws, between cells that differ in one factor only."""
    by_key: dict[tuple, ConfigScores] = {}
    for r in results:
        m = r.meta
        by_key[
            (
                m.get("task"),
                m.get("model"),
                m.get("strategy"),
                m.get("selector"),
                m.get("k"),
                m.get("seed"),
                m.get("train_size"),
            )
        ] = r
    out: list[Comparison] = []

    def add(kind: str, a: ConfigScores | None, b: ConfigScores | None) -> None:
        if a is not None and b is not None:
            c = compare_cells(a.task, kind, a.config, b.config, recs)
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
        ok = [r for r in results if r.task == task and not r.failed]
        models = [r for r in ok if r.meta.get("family") != "baseline"]
        bases = [r for r in ok if r.meta.get("family") == "baseline"]
        if models and bases:
            add(
                "best model cell vs best baseline",
                max(models, key=lambda x: x.scores.micro_f1),
                max(bases, key=lambda x: x.scores.micro_f1),
            )
    return out
