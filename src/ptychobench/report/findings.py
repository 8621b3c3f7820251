"""The paper's two findings about adaptation, measured on a run (issue 27).

- **Complementarity**: on the vision task, a fine-tuned model given context-aware demos
  beats the same model at 0-shot (SFT and ICL add up). The paper claims it for the vision
  task only; on the text task its best cell is ICL on the large base model.
- **Contextual interference**: a fine-tuned model given random demos does worse than with
  context-aware demos (and than at 0-shot), on both tasks.

Each finding is a paired bootstrap (``eval.compare.compare_cells``) between two cells of
the same model, seed and training size that differ in the one factor, with a verdict on
whether the run agrees with the paper and how sure it is. A run without the cells a
finding needs says so and names the config that measures it; a difference the run cannot
tell from noise names the config that has the samples to decide it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..eval.compare import ALPHA, MIN_N, Comparison, compare_cells
from ..eval.score import ConfigScores
from ..tasks import get_task
from .format import fmt, fmt_p, short_config

#: demo selectors that look at the query (the paper's "context-aware" demos)
CONTEXT_AWARE = ("knn", "knn-diverse", "sample-type")
#: the config that decides what a small run cannot: SFT with random, sample-type and knn
#: demos at k 1-7, three seeds, the paper's models (GPUs). `learning-curve` has no SFT +
#: demo cells, so it cannot; it shows how SFT and the probes move with the training size.
DECIDING_CONFIGS = "the `paper` config (SFT with random, sample-type and knn demos, k 1-7, 3 seeds)"
#: a cell giving one answer to this share of its samples or more has collapsed (the default's
#: tiny-vlm SFT said "No obvious artifacts" to all 79 images): a finding drawn from it is flagged
COLLAPSED = 0.9
HEAD = ["task", "finding", "paper says", "A", "B", "n", "F1 A", "F1 B", "A-B [95% CI]", "p", "our run"]


@dataclass
class Finding:
    task: str
    name: str
    #: what the paper found, in words, and the sign of A - B it expects (+1, or 0: no claim)
    paper: str
    expect: int
    comparison: Comparison | None
    #: why there is no comparison (a cell the run lacks), else ""
    missing: str = ""
    #: a cell of the pair that gives one answer to nearly every sample, and that share
    collapsed: tuple[str, float] | None = None

    @property
    def verdict(self) -> str:
        """Agree / disagree / undecided, and how sure: from the p-value and the sign."""
        c = self.comparison
        if c is None:
            return f"not measured: {self.missing}; {DECIDING_CONFIGS} measures it"
        if c.small:
            return f"too few samples to decide (n = {c.n} < {MIN_N}); {DECIDING_CONFIGS} decides it"
        if c.p >= ALPHA:
            return (
                f"undecided: A - B = {c.diff:+.3f} could be noise (p = {fmt(c.p)}); this run is too small to "
                f"tell, {DECIDING_CONFIGS} decides it"
            ) + self.collapse_note
        sure = "sure (p < 0.01)" if c.p < 0.01 else f"fairly sure (p = {fmt(c.p)} < {ALPHA})"
        if not self.expect:
            return f"{'A' if c.diff > 0 else 'B'} better, {sure}; the paper makes no claim here" + self.collapse_note
        agrees = (c.diff > 0) == (self.expect > 0)
        return f"{'agrees' if agrees else 'disagrees'} with the paper, {sure}" + self.collapse_note

    @property
    def collapse_note(self) -> str:
        if not self.collapsed:
            return ""
        cell, share = self.collapsed
        return (
            f"; but {short_config(cell)} gives one answer to {share:.0%} of the samples, so the "
            "difference measures that collapse, not the finding"
        )

    def cells(self) -> list[str]:
        c = self.comparison
        if c is None:
            return [get_task(self.task).title, self.name, self.paper, "", "", "", "", "", "", "", self.verdict]
        return [
            get_task(self.task).title,
            self.name,
            self.paper,
            short_config(c.a),
            short_config(c.b),
            str(c.n),
            fmt(c.f1_a),
            fmt(c.f1_b),
            f"{c.diff:+.3f} [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]",
            fmt_p(c.p),
            self.verdict,
        ]


def _key(r: ConfigScores) -> tuple:
    """(task, model, strategy, selector, k, and what else must match: seed, training size,
    prompt and parse modes, split)."""
    m = r.meta
    rest = tuple(m.get(x) for x in ("seed", "train_size", "prompt", "parse", "split"))
    return (r.task, m.get("model"), m.get("strategy"), m.get("selector"), m.get("k"), rest)


def top_share(records: dict[str, dict]) -> float:
    """The share of a cell's samples given its most frequent answer (label set)."""
    answers = Counter(tuple(r["labels"]) for r in records.values())
    return answers.most_common(1)[0][1] / len(records) if records else 0.0


def _collapsed(recs: dict[str, dict[str, dict]], *configs: str) -> tuple[str, float] | None:
    shares = [(c, top_share(recs.get(c, {}))) for c in configs]
    worst = max(shares, key=lambda x: x[1])
    return worst if worst[1] >= COLLAPSED else None


def paper_findings(results: list[ConfigScores], recs: dict[str, dict[str, dict]]) -> list[Finding]:
    """Complementarity and interference for every fine-tuned model of the run (one row per
    SFT + demos cell and its partner), or one row per finding saying what the run lacks."""
    cells = {_key(r): r for r in results if not r.failed}
    out: list[Finding] = []
    for key in sorted(cells, key=repr):
        task, model, strategy, _, _, rest = key
        if strategy != "sft":
            continue
        sft = cells[key]
        demos = {(k[3], k[4]): cells[k] for k in cells if k[:3] == (task, model, "sft+icl") and k[5] == rest}
        vision = get_task(task).modality == "image"
        paper_c = (
            "complementary: SFT + context-aware demos is the best vision cell"
            if vision
            else "no claim (the best text cell is ICL on the large base model)"
        )
        aware = sorted((sk for sk in demos if sk[0] in CONTEXT_AWARE), key=repr)
        if not aware:
            out.append(
                Finding(task, "complementarity", paper_c, int(vision), None, f"no SFT + knn-demo cell of {model}")
            )
        for sel, k in aware:
            pair = (demos[(sel, k)].config, sft.config)
            c = compare_cells(task, "complementarity", *pair, recs)
            name = f"complementarity: SFT + {k} {sel} demo(s) vs SFT"
            out.append(Finding(task, name, paper_c, int(vision), c, collapsed=_collapsed(recs, *pair)))
        paper_i = "contextual interference: random demos hurt a fine-tuned model"
        randoms = sorted((sk for sk in demos if sk[0] == "random"), key=repr)
        if not randoms:
            out.append(Finding(task, "interference", paper_i, 1, None, f"no SFT + random-demo cell of {model}"))
        for _, k in randoms:
            rnd = demos[("random", k)].config
            c = compare_cells(task, "interference", sft.config, rnd, recs)
            name = f"interference: SFT vs SFT + {k} random demo(s)"
            out.append(Finding(task, name, paper_i, 1, c, collapsed=_collapsed(recs, sft.config, rnd)))
            for sel, k2 in aware:
                if k2 == k:
                    pair = (demos[(sel, k)].config, rnd)
                    c = compare_cells(task, "interference", *pair, recs)
                    name = f"interference: SFT + {k} {sel} vs {k} random demo(s)"
                    out.append(Finding(task, name, paper_i, 1, c, collapsed=_collapsed(recs, *pair)))
    return out


def findings_intro() -> str:
    return (
        "The paper's findings on adaptation, each a paired bootstrap (10,000 resamples over the test "
        f"samples both cells answered; p two-sided; a verdict needs p < {ALPHA} and n >= {MIN_N}). "
        "'agrees' means the difference has the paper's sign and is unlikely to be noise."
    )
