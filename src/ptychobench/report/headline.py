"""The top of the report: what was run on what (dataset and its hash, config, versions,
date, machine) and the comparisons said in plain sentences with their intervals.

A reader should be able to quote the headline without reading a table: which data, which
code, and by how much one way of adapting a model beat another, with the uncertainty.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from ..eval.compare import ALPHA, Comparison
from ..eval.score import ConfigScores
from .format import fmt

#: below this many paired test samples a difference is reported but never called a win
MIN_N = 20
PACKAGES = ("ptychobench", "numpy", "scikit-learn", "torch", "transformers", "peft", "trl")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def machine() -> str:
    """The machine the report is written on, in words (a GPU only when torch is already loaded:
    importing it just to name the machine would cost seconds)."""
    parts = [f"{platform.system()} {platform.machine()}", f"{os.cpu_count()} CPU cores"]
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                parts.append(", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
        except Exception:  # a broken driver must not stop a report
            pass
    return ", ".join(parts)


def run_machine_words(m: dict[str, Any]) -> str:
    """The last run's model machine in words: its CPU capability and what ``dtype: auto``
    chose there, with the probe's times (``models.precision``)."""
    if m.get("device") != "cpu":
        return f"{m.get('device')}"
    p = m.get("probe") or {}
    return (
        f"CPU ({p.get('cpu', '?')}), torch CPU capability {m.get('cpu_capability', '?')}; dtype auto chose "
        f"{m.get('dtype_auto', '?')} (probe: bfloat16 {p.get('bfloat16_ms', '?')} ms vs float32 "
        f"{p.get('float32_ms', '?')} ms)"
    )


def facts(run_dir: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's identity for the headline: dataset(s), limit, config text(s), versions, dates."""
    datasets: dict[tuple, int] = {}
    for r in records:
        d = r.get("components", {}).get("dataset") or {}
        key = (d.get("name", "?"), d.get("content_hash") or "?", d.get("limit"), d.get("split") or "test")
        datasets[key] = datasets.get(key, 0) + 1
    configs = {
        p.name: p.read_text(encoding="utf-8", errors="replace")
        for p in sorted([*run_dir.glob("config*.yaml"), *run_dir.glob("configs/config*.yaml")])
        if p.is_file()
    }
    finished = []
    run_machine = None
    left_out: list[str] = []
    runs = run_dir / "runs.jsonl"
    if runs.is_file():
        for line in runs.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                finished.append(entry.get("finished"))
                run_machine = entry.get("machine") or run_machine
                left_out = [str(x) for x in entry.get("left_out") or []]  # the last run's
            except (json.JSONDecodeError, AttributeError):
                continue
    return {
        "datasets": [
            {"name": n, "hash": h, "limit": lim, "split": sp, "records": c} for (n, h, lim, sp), c in datasets.items()
        ],
        "configs": configs,
        "versions": versions(),
        "machine": machine(),
        "run_machine": run_machine if isinstance(run_machine, dict) else None,
        "left_out": left_out,
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "finished": [f for f in finished if f],
    }


def fact_lines(f: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts as (what, value) pairs, the same in Markdown and HTML."""
    ds = "; ".join(
        f"{d['name']} (content hash {d['hash'][:16]}…)"
        if len(d["hash"]) > 16
        else f"{d['name']} (content hash {d['hash']})"
        for d in f["datasets"]
    )
    out = [("dataset", ds or "unknown")]
    splits = sorted({d.get("split") or "test" for d in f["datasets"]})
    if splits != ["test"]:
        out.append(("scored on", ", ".join(f"the {sp} split" for sp in splits) + " (`split` in the config)"))
    limits = sorted({d["limit"] for d in f["datasets"] if d["limit"]})
    if limits:
        out.append(
            (
                "test samples",
                f"cut to the first {', '.join(map(str, limits))} per task (`limit` in the "
                "config): numbers are for this subset, not the whole test split",
            )
        )
    out.append(("config", ", ".join(f["configs"]) or "no config file in the run folder"))
    out.append(("versions", ", ".join(f"{k} {v}" for k, v in f["versions"].items())))
    if f["finished"]:
        out.append(
            (
                "run finished",
                f["finished"][-1]
                + (f" ({len(f['finished'])} runs into this folder)" if len(f["finished"]) > 1 else ""),
            )
        )
    rm = f.get("run_machine")
    if rm:
        out.append(("models ran on", run_machine_words(rm)))
    for why in f.get("left_out") or []:
        out.append(("left out on this machine", why))
    out.append(("report written", f"{f['written']} on {f['machine']}"))
    return out


def cell_phrase(meta: dict[str, Any]) -> str:
    """A cell as a sentence names it: "fine-tuned smollm2-135m with 1 knn demo", "base
    smollm2-135m zero-shot" ("base" tells the model without an adapter from the fine-tuned one)."""
    model, strategy, sel = meta.get("model", "?"), meta.get("strategy"), meta.get("selector")
    k = int(meta.get("k") or 0)
    demos = f" with {k} {sel} demo{'s' if k != 1 else ''}" if k and sel else ""
    if meta.get("family") == "baseline":
        return f"the {model} baseline"
    if strategy == "zero-shot":
        return f"base {model} zero-shot"
    if strategy == "sft":
        return f"fine-tuned {model}"
    if strategy == "sft+icl":
        return f"fine-tuned {model}{demos}"
    return f"base {model}{demos}"


def comparison_sentence(c: Comparison, meta_a: dict[str, Any], meta_b: dict[str, Any]) -> str:
    """One comparison in words, with the difference of micro-F1 and its 95% CI:
    "fine-tuned m beats base m zero-shot by 0.16 [0.07, 0.25] (p = 0.002, n = 44)"."""
    a, b = cell_phrase(meta_a), cell_phrase(meta_b)
    lo, hi = c.ci
    stats = f"{'p < 0.001' if c.p < 0.001 else f'p = {fmt(c.p)}'}, n = {c.n}"
    if c.p < ALPHA and c.n >= MIN_N:
        if c.diff > 0:
            return f"{a} beats {b} by {c.diff:.2f} [{lo:.2f}, {hi:.2f}] ({stats})."
        return f"{a} falls behind {b} by {-c.diff:.2f} [{-hi:.2f}, {-lo:.2f}] ({stats})."
    if c.p < ALPHA:
        return (
            f"{a} and {b} differ by {c.diff:+.2f} [{lo:+.2f}, {hi:+.2f}] ({stats}), but {c.n} test samples "
            f"are too few to call it (fewer than {MIN_N})."
        )
    return f"{a} and {b} are not distinguishable: difference {c.diff:+.2f} [{lo:+.2f}, {hi:+.2f}] ({stats})."


def comparison_sentences(results: list[ConfigScores], comps: list[Comparison]) -> dict[str, list[str]]:
    """Per task, every paired comparison as a sentence, the headline one (best model cell
    against best baseline) first."""
    meta = {r.config: r.meta for r in results}
    out: dict[str, list[str]] = {}
    for c in sorted(comps, key=lambda c: (c.task, c.kind != "best model cell vs best baseline", c.kind)):
        s = comparison_sentence(c, meta.get(c.a, {}), meta.get(c.b, {}))
        if s.startswith(("fine-tuned", "the ", "base ")):  # model names keep their case
            s = s[0].upper() + s[1:]
        out.setdefault(c.task, []).append(s)
    return out
