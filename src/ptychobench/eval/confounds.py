"""The confound check of a built dataset: does the sample type alone predict the labels?

Issue 11 asks that a ``type-only`` predictor (each type's best label set, fit on train) not
beat the best constant label set by more than 0.03 micro-F1; sim-v1's artifact labels
failed it (+0.067). This section is computed here, above both the baselines and the
simulator, and handed to the build's validation report (``sim.build.build(sections=...)``),
so the simulator does not reach up into the strategies.
"""

from __future__ import annotations

from sklearn.metrics import f1_score

from ..strategies.type_only import best_constant_set, fit_predict_type_only
from ..tasks import get_task
from .metrics import binarize

CONFOUND_MARGIN = 0.03  # issue 11: type-only may beat the best constant set by at most this


def confound_section(samples: list) -> list[str]:
    """Does the sample type alone predict the labels? The ``type-only`` baseline against
    the best constant label set, both fit on train, micro-F1 on each test split (scored
    as the runner scores: over the task's label space, "No obvious artifacts" unscored)."""
    out = [
        "## Confounds: what the sample type alone predicts",
        "",
        f"Micro-F1 on each test split of the `type-only` baseline and of the best constant label set, "
        f"both fit on train. Target: type-only at most {CONFOUND_MARGIN:g} above the constant.",
        "",
        "| task | split | n | best constant set (fit on train) | constant | type-only | difference | within target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in ("artifacts", "params"):
        spec = get_task(task)
        scored = list(spec.scored_labels)
        train = [x for x in samples if x.task == task and x.split == "train"]
        const, _ = best_constant_set([x.labels for x in train], scored)
        for split in sorted({x.split for x in samples if x.task == task} - {"train"}):
            test = [x for x in samples if x.task == task and x.split == split]
            if not train or not test:
                continue
            gold = binarize([x.labels for x in test], scored)

            def f1(pred: list, gold=gold) -> float:
                return float(f1_score(gold, binarize(pred, scored), average="micro", zero_division=0))

            c = f1([const] * len(test))
            t = f1(fit_predict_type_only(task, train, test))
            out.append(
                f"| {task} | {split} | {len(test)} | {', '.join(sorted(const)) or '(none)'} | {c:.3f} | {t:.3f} "
                f"| {t - c:+.3f} | {'yes' if t - c <= CONFOUND_MARGIN else '**no**'} |"
            )
    return out + [""]
