"""The report's "Paper findings" (issue 27): complementarity and contextual interference
from a small synthetic run's records, with paired bootstrap p-values whose verdicts follow
the data: a clear effect agrees or disagrees with the paper, noise is undecided, a missing
cell is named with the config that measures it."""

from __future__ import annotations

import random
from pathlib import Path

from ptychobench.eval.compare import by_config
from ptychobench.eval.record import PredictionRecord
from ptychobench.eval.score import score_records
from ptychobench.report.findings import paper_findings
from ptychobench.report.write import write_report
from ptychobench.tasks import get_task

N = 60


def records(task: str, cells: dict[tuple[str, str | None, int], float], seed: int = 0) -> list[dict]:
    """One record per test sample per cell of a fake fine-tuned model: right with the
    cell's probability, else a wrong label. ``cells``: (strategy, selector, k) -> p(right)."""
    t = get_task(task)
    scored = list(t.scored_labels)
    rng = random.Random(seed)
    golds = [[scored[i % len(scored)]] for i in range(N)]
    out = []
    for (strategy, sel, k), p in cells.items():
        for i, gold in enumerate(golds):
            wrong = [scored[(i + 1) % len(scored)]]
            labels = gold if rng.random() < p else wrong
            meta = {"task": task, "model": "fake", "strategy": strategy, "selector": sel, "k": k}
            meta.update(seed=0, train_size="all", family=strategy, prompt="ours", parse="tolerant", split="test")
            config = f"{task}/fake/{strategy}/{sel or '-'}/k{k}/seed0/nall"
            out.append(PredictionRecord(config, f"s{i:03d}", task, gold=gold, labels=labels, meta=meta).to_dict())
    return out


def findings_of(recs: list[dict]) -> dict[str, object]:
    return {f.name: f for f in paper_findings(score_records(recs, ci=False), by_config(recs))}


def test_a_clear_complementarity_and_interference_agree_with_the_paper():
    recs = records("artifacts", {("sft", None, 0): 0.5, ("sft+icl", "knn", 1): 0.95, ("sft+icl", "random", 1): 0.1})
    f = findings_of(recs)
    comp = f["complementarity: SFT + 1 knn demo(s) vs SFT"]
    assert comp.comparison.p < 0.01 and comp.comparison.diff > 0.3
    assert comp.verdict.startswith("agrees with the paper, sure")
    for name in ("interference: SFT vs SFT + 1 random demo(s)", "interference: SFT + 1 knn vs 1 random demo(s)"):
        assert f[name].comparison.p < 0.01
        assert f[name].verdict.startswith("agrees")


def test_the_opposite_effect_disagrees_and_noise_is_undecided():
    recs = records("artifacts", {("sft", None, 0): 0.9, ("sft+icl", "knn", 1): 0.2, ("sft+icl", "random", 1): 0.9})
    f = findings_of(recs)
    assert f["complementarity: SFT + 1 knn demo(s) vs SFT"].verdict.startswith("disagrees")
    noise = f["interference: SFT vs SFT + 1 random demo(s)"]  # the same skill both sides
    assert noise.comparison.p >= 0.05
    assert noise.verdict.startswith("undecided") and "`paper`" in noise.verdict


def test_text_task_complementarity_is_no_claim_and_a_missing_random_cell_is_named():
    recs = records("params", {("sft", None, 0): 0.3, ("sft+icl", "knn", 1): 0.9})
    f = findings_of(recs)
    comp = f["complementarity: SFT + 1 knn demo(s) vs SFT"]
    assert comp.expect == 0 and "no claim" in comp.verdict
    missing = f["interference"]
    assert missing.comparison is None
    assert "no SFT + random-demo cell of fake" in missing.verdict and "`paper`" in missing.verdict


def test_a_collapsed_sft_cell_is_flagged_beside_the_verdict():
    recs = records("artifacts", {("sft", None, 0): 0.5, ("sft+icl", "knn", 1): 0.95})
    plain = findings_of(recs)["complementarity: SFT + 1 knn demo(s) vs SFT"]
    assert plain.collapsed is None and "collapse" not in plain.verdict
    for r in recs:  # the default's tiny-vlm SFT before issue 27: one answer for every image
        if r["meta"]["strategy"] == "sft":
            r["labels"] = ["No obvious artifacts"]
    flagged = findings_of(recs)["complementarity: SFT + 1 knn demo(s) vs SFT"]
    assert flagged.collapsed == ("artifacts/fake/sft/-/k0/seed0/nall", 1.0)
    assert flagged.verdict.startswith("agrees") and "gives one answer to 100% of the samples" in flagged.verdict


def test_the_report_shows_the_findings_with_p_values(tmp_path: Path):
    recs = records("artifacts", {("sft", None, 0): 0.5, ("sft+icl", "knn", 1): 0.95, ("sft+icl", "random", 1): 0.1})
    from ptychobench.eval.store import PredictionStore

    store = PredictionStore(tmp_path / "predictions.jsonl")
    for r in recs:
        store.append(PredictionRecord(**r))
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    section = md.split("## Paper findings", 1)[1].split("## Paired comparisons", 1)[0]
    assert "complementarity: SFT + 1 knn demo(s) vs SFT" in section
    assert "agrees with the paper" in section and "| &lt; 0.001 |" in section  # the p-value column, never 0.000
    assert "Paper findings</h2>" in (tmp_path / "report.html").read_text()


def test_the_payoff_comparisons_write_a_tiny_p_value_as_below_0_001_never_0_000():
    from ptychobench.report.payoff import payoff_comparisons

    rows = payoff_comparisons(
        {"comparisons": [{"a": "x", "b": "ref: gold", "n": 44, "gain_diff": -0.21, "ci": [-0.29, -0.13], "p": 0.0}]}
    )
    assert rows[0][-1] == "< 0.001"


def test_the_default_grid_holds_every_pair_both_findings_need(monkeypatch):
    """The default measures both findings on both tasks (issue 27): each fine-tuned model has
    its 0-shot cell, a knn-demo cell and a random-demo cell of the same k, seed and size, on
    any CPU (the random cells are not among those a float32 CPU leaves out)."""
    from ptychobench.models import precision
    from ptychobench.run.config import load_config
    from ptychobench.run.grid import expand

    for dtype in ("bfloat16", "float32"):
        monkeypatch.setattr("ptychobench.models.hf.pick_device", lambda device="auto": "cpu")
        probe = {"format": 1, "capability": "x", "cpu": "test", "torch": "x", "float32_ms": 1.0}
        probe |= {"bfloat16_ms": 1.0, "ratio": 1.0, "measured": "now", "dtype": dtype}
        monkeypatch.setattr(precision, "cpu_dtype_probe", lambda p=probe: p)
        cells = expand(load_config("default"))
        for task, model in (("params", "smollm2-135m"), ("artifacts", "tiny-vlm")):
            ours = [c for c in cells if (c.task, c.model) == (task, model)]
            mine = {(c.strategy, c.selector, c.k, c.seed, c.train_size) for c in ours}
            seeds_sizes = {(c[3], c[4]) for c in mine}
            assert seeds_sizes, (task, dtype)
            for seed, size in seeds_sizes:
                assert any(m[0] == "sft" and m[2:] == (0, seed, size) for m in mine), (task, dtype)
                for selector in ("knn", "random"):
                    assert ("sft+icl", selector, 1, seed, size) in mine, (task, selector, dtype)
