"""The report's figures (matplotlib, Agg): micro-F1 against k for base and fine-tuned
models, per-label and per-sample-type heatmaps, the learning curve."""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from pathlib import Path
from typing import Callable, ParamSpec, TypeVar

from ..eval.score import ConfigScores
from ..tasks import PARAM_OPTIONS, get_task
from .format import safe_name, short_config

P = ParamSpec("P")
R = TypeVar("R")


def _label_name(task: str, label: str, width: int = 38) -> str:
    """A label as a reader knows it: parameter options by letter and text."""
    if task != "params" or label not in PARAM_OPTIONS:
        return label
    text = f"{label}. {PARAM_OPTIONS[label]}"
    return text if len(text) <= width else text[: width - 1] + "…"


def plain_text(fn: Callable[P, R]) -> Callable[P, R]:
    """Draw every string as written: a config name or sample type such as
    ``$\\undefinedmacro{$`` is text, not mathtext (it crashed the report)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return fn(*args, **kwargs)

    return wrapper


@plain_text
def make_plots(results: list[ConfigScores], out: Path) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    figs: list[tuple[str, Path]] = []
    tasks = sorted({r.task for r in results})
    for task in tasks:
        rs = [r for r in results if r.task == task]
        sizes = sorted({r.meta.get("train_size") for r in rs}, key=lambda n: math.inf if n == "all" else float(n or 0))
        full = [r for r in rs if r.meta.get("train_size") == sizes[-1]]
        # micro-F1 against k, base and SFT side by side
        for model in sorted({str(r.meta.get("model")) for r in full if r.meta.get("family") != "baseline"}):
            mr = [r for r in full if r.meta.get("model") == model]
            all_k = sorted({int(r.meta.get("k") or 0) for r in mr})
            # a panel only where it has cells (an SFT-only model drew an empty "base model" panel)
            panels = [
                p
                for p in (("base model", "zero-shot", "icl"), ("fine-tuned (SFT)", "sft", "sft+icl"))
                if any(r.meta.get("strategy") in p[1:] for r in mr)
            ]
            if not panels:
                continue
            fig, axes = plt.subplots(
                1, len(panels), figsize=(5 * len(panels) + 0.5, 4), sharey=True, sharex=True, squeeze=False
            )
            for ax, (title, k0, icl) in zip(axes[0], panels):
                zero = [r for r in mr if r.meta.get("strategy") == k0]
                selectors: list[str | None] = sorted(
                    {r.meta.get("selector") for r in mr if r.meta.get("strategy") == icl}, key=str
                )
                for sel in selectors or [None]:
                    pts = _mean_by_k(
                        zero + [r for r in mr if r.meta.get("strategy") == icl and r.meta.get("selector") == sel]
                    )
                    if not pts:
                        continue
                    ks, f, lo, hi = zip(*pts)
                    ax.errorbar(
                        ks, f, yerr=[np.subtract(f, lo), np.subtract(hi, f)], marker="o", capsize=3, label=sel or k0
                    )
                ax.set_title(f"{model}: {title}")
                ax.set_xticks(all_k)  # the same k axis in both panels, also where one has k=0 only
                ax.set_xlim(all_k[0] - 0.5, all_k[-1] + 0.5)
                ax.set_xlabel("demonstrations k")
                ax.grid(alpha=0.3)
            _baseline_lines(axes[0], [r for r in full if r.meta.get("family") == "baseline"])
            axes[0][0].set_ylabel("micro-F1 (95% CI)")
            axes[0][0].set_ylim(0, 1)
            fig.suptitle(f"{get_task(task).title}: micro-F1 against k")
            figs.append(
                _save(
                    fig,
                    out / f"k_curve_{task}_{safe_name(model)}.png",
                    f"{get_task(task).title}, {model}: micro-F1 against k, base and fine-tuned; dashed: baselines",
                )
            )
        # per-label and per-sample-type heatmaps
        top = sorted(full, key=lambda r: -r.scores.micro_f1)[:25]
        for kind, getter in (
            ("per-label F1", lambda r: r.scores.per_label_f1),
            ("per-sample-type micro-F1", lambda r: r.scores.per_type_micro_f1),
        ):
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
            # n behind every value: a label's support (test samples that have it) or a type's count
            count = (lambda r: r.scores.per_label_support) if "label" in kind else (lambda r: r.scores.per_type_n)
            n = np.array([[count(r).get(c, 0) for c in cols] for r in top])
            names = [f"{_label_name(task, c)} (n={count(top[0]).get(c, 0)})" for c in cols]
            rows = [short_config(r.config) for r in top]
            if len(cols) > 12:  # many labels: one row per label, so their names can be read
                m, n, names, rows = m.T, n.T, rows, names
            # cells big enough for 9-pt numbers at the report's width (they were 5.5 pt)
            fig, ax = plt.subplots(figsize=(max(7, 0.95 * len(names) + 4.5), 0.55 * len(rows) + 2.8))
            im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=9)
            ax.set_yticks(range(len(rows)), rows, fontsize=9)
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    if not np.isnan(m[i, j]):
                        ax.text(
                            j,
                            i,
                            f"{m[i, j]:.2f}\nn={n[i, j]}",
                            ha="center",
                            va="center",
                            fontsize=8.5,
                            linespacing=1.0,
                            color="white" if m[i, j] < 0.5 else "black",
                        )
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
                name = f"{m_.get('model')} {m_.get('strategy')}"
                if m_.get("selector"):
                    name += f" {m_.get('selector')} k{m_.get('k')}"
                series[name].append((int(m_.get("n_train", 0)), r.scores.micro_f1))
            for name, pts in sorted(series.items()):
                pts.sort()
                ax.plot(*zip(*pts), marker="o", label=name)
            ax.set_xscale("log", base=2)
            # the sizes themselves as plain tick labels: the log axis's own labels are mathtext
            # ("$\\mathdefault{2^{3}}$"), drawn as raw text under plain_text
            ticks = sorted({x for pts in series.values() for x, _ in pts})
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("labelled training examples")
            ax.set_ylabel("micro-F1")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            ax.set_title(f"{get_task(task).title}: learning curve")
            figs.append(
                _save(
                    fig,
                    out / f"learning_curve_{task}.png",
                    f"{get_task(task).title}: micro-F1 against training-set size",
                )
            )
    return figs


def _baseline_lines(axes, baselines: list[ConfigScores]) -> None:
    """Each baseline's micro-F1 as a dashed horizontal line on every panel, so a curve is
    read against what a model-free method reaches on the same test set."""
    styles = ["--", ":", "-.", (0, (5, 1))]
    for ax in axes:
        for i, b in enumerate(sorted(baselines, key=lambda r: -r.scores.micro_f1)):
            ax.axhline(
                b.scores.micro_f1,
                color="0.35",
                lw=1.2,
                ls=styles[i % len(styles)],
                label=f"{b.meta.get('model')} (baseline) {b.scores.micro_f1:.2f}",
            )
        ax.legend(fontsize=7)


@plain_text
def forest_plot(results: list[ConfigScores], out: Path) -> tuple[str, Path] | None:
    """Every cell's micro-F1 with its 95% CI, one panel per task, best first; the best
    baseline as a dashed reference line. The one picture of a run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r.task for r in results})
    if not tasks:
        return None
    out.mkdir(parents=True, exist_ok=True)
    heights = [len([r for r in results if r.task == t]) for t in tasks]
    fig, axes = plt.subplots(
        len(tasks),
        1,
        figsize=(8, 0.3 * sum(heights) + 1.3 * len(tasks) + 0.4),
        gridspec_kw={"height_ratios": [h + 2 for h in heights]},
        squeeze=False,
    )
    for ax, task in zip(axes[:, 0], tasks):
        rs = sorted([r for r in results if r.task == task], key=lambda r: r.scores.micro_f1)
        for i, r in enumerate(rs):
            f = r.scores.micro_f1
            lo, hi = r.scores.micro_f1_ci or (f, f)
            base = r.meta.get("family") == "baseline"
            ax.errorbar(
                [f],
                [i],
                xerr=[[max(f - lo, 0)], [max(hi - f, 0)]],
                fmt="s" if base else "o",
                color="0.4" if base else "C0",
                capsize=2.5,
                ms=5,
            )
        names = []
        for r in rs:
            bad = r.scores.errors + r.scores.parse_failures
            names.append(short_config(r.config) + (f"  [{bad}/{r.scores.n} failed]" if bad else ""))
        ax.set_yticks(range(len(rs)), names, fontsize=7)
        bases = [r for r in rs if r.meta.get("family") == "baseline"]
        if bases:
            b = max(bases, key=lambda r: r.scores.micro_f1)
            ax.axvline(
                b.scores.micro_f1,
                color="C3",
                ls="--",
                lw=1.2,
                label=f"best baseline: {b.meta.get('model')} {b.scores.micro_f1:.2f}",
            )
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(-0.7, len(rs) - 0.3)
        ax.grid(axis="x", alpha=0.3)
        n = max((r.scores.n for r in rs), default=0)
        ax.set_title(f"{get_task(task).title} (n = {n} test samples)", fontsize=10)
    axes[-1, 0].set_xlabel("micro-F1 with 95% bootstrap CI (squares: baselines)")
    return _save(
        fig,
        out / "forest.png",
        "Every cell's micro-F1 with its 95% CI; dashed: the best baseline; "
        "[x/n failed]: x of the n test samples got an unparseable reply or a generation error",
    )


def _save(fig, path: Path, caption: str) -> tuple[str, Path]:
    import io

    import matplotlib.pyplot as plt

    from ..files import write_atomic

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
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
