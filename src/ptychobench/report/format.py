"""How numbers and cell names read in every table and sentence of a report."""

from __future__ import annotations

import math


def fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def fmt_p(p: float | None) -> str:
    """A p-value in a table cell: below 0.001 as "< 0.001", never "0.000" (a bootstrap of
    10,000 resamples cannot tell p = 0 from p = 0.0001)."""
    return "< 0.001" if p is not None and p < 0.001 else fmt(p)


def md_safe(line: str) -> str:
    """A line of ``report.md`` with no raw HTML: ``<``, ``>`` and ``&`` from ids and names
    become entities, outside code spans (where Markdown shows text as written)."""

    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    parts = line.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: no code span, all of it is text
        return esc(line)
    return "`".join(esc(p) if i % 2 == 0 else p for i, p in enumerate(parts))


def safe_name(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(s))


def short_config(config: str) -> str:
    return config.split("/", 1)[1] if "/" in config else config


def cell_label(config: str) -> str:
    """A few words for a cell where its full key (``run.grid.Cell.config``) does not fit,
    such as a point in a scatter plot: model, strategy, demos; the seed, the training size
    and the modes only where they are not the defaults (seed0, nall)."""
    parts = config.split("/")
    if len(parts) < 7:
        return short_config(config)
    _, model, strategy, selector, k, seed, size, *modes = parts
    words = [model] if strategy == model else [model, strategy]
    if selector != "-":
        words.append(f"{selector} {k}")
    return " ".join(words + [p for p in (seed, size) if p not in ("seed0", "nall")] + modes)
