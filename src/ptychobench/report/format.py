"""How numbers and cell names read in every table and sentence of a report."""

from __future__ import annotations

import math


def fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def safe_name(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(s))


def short_config(config: str) -> str:
    return config.split("/", 1)[1] if "/" in config else config
