"""The payoff section of the report: what following each cell's parameter advice did to
the reconstruction (``payoff.json``, written by ``ptychobench payoff`` or by ``run`` on a
simulated dataset), and a plot of micro-F1 against payoff per cell: do labels and physics
agree? The report only reads the file; computing it needs the simulator (layer 9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .format import fmt_p
from .plots import plain_text

PAYOFF_HEAD = [
    "cell",
    "n",
    "micro-F1",
    "error change [95% CI]",
    "improved",
    "harmed",
    "payoff (of oracle)",
    "contradictory",
    "not applicable",
]


def read_payoff(run_dir: Path) -> dict[str, Any] | None:
    p = Path(run_dir) / "payoff.json"
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "cells" in data else None


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.1f}%"


def payoff_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in result["cells"] + result["references"]:
        rows.append(
            [
                r["config"],
                str(r["n"]),
                "-" if r.get("micro_f1") is None else f"{r['micro_f1']:.3f}",
                f"{_pct(r['mean_change'])} [{_pct(r['ci_lo'])}, {_pct(r['ci_hi'])}]",
                f"{100 * r['improved']:.0f}%",
                f"{100 * r['harmed']:.0f}%",
                "-" if r["payoff"] is None else f"{r['payoff']:.2f}",
                str(r["contradictory"]),
                str(r["not_applicable"]),
            ]
        )
    return rows


PAYOFF_COMP_HEAD = ["A", "B", "n", "gain A - B", "95% CI", "p"]


def payoff_comparisons(result: dict[str, Any]) -> list[list[str]]:
    """Paired bootstrap comparisons of the cells' gains (and each cell against the gold labels)."""
    return [
        [
            c["a"],
            c["b"],
            str(c["n"]),
            _pct(c["gain_diff"]),
            f"[{_pct(c['ci'][0])}, {_pct(c['ci'][1])}]",
            fmt_p(c["p"]),
        ]
        for c in result.get("comparisons", [])
    ]


def payoff_note(result: dict[str, Any]) -> str:
    return (
        f"Advice applied jointly in pty-chi and reconstructed ({result['seeds']} seed(s) per parameter set); "
        "error change = mean relative change of the truth error against the current parameters (negative is "
        f"better), improved/harmed = beyond the dataset's noise margin ({100 * result['gain_margin']:.0f}%); "
        "payoff = total gain as a fraction of the oracle's (best verified single option). Contradictory pairs "
        "are applied as neither; options that do not apply are skipped."
    )


@plain_text
def payoff_plot(result: dict[str, Any], out: Path) -> tuple[str, Path] | None:
    """micro-F1 (labels) against payoff (physics), one point per cell."""
    pts = [(c["micro_f1"], c["payoff"], c["config"]) for c in result["cells"] if c.get("micro_f1") is not None]
    pts = [p for p in pts if p[1] is not None]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .format import cell_label
    from .plots import _save

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for f1, pay, name in pts:
        ax.scatter(f1, pay)
        ax.annotate(cell_label(name), (f1, pay), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for ref in result["references"]:
        if ref["payoff"] is not None:
            ax.axhline(ref["payoff"], ls=":", lw=1, color="grey")
            ax.text(ax.get_xlim()[0], ref["payoff"], ref["config"].replace("ref: ", ""), fontsize=7, va="bottom")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("micro-F1 (labels)")
    ax.set_ylabel("payoff (fraction of the oracle's gain)")
    out.mkdir(parents=True, exist_ok=True)
    return _save(fig, out / "payoff_vs_f1.png", "micro-F1 against payoff per parameter-task cell")
