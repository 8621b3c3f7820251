"""A dataset at a glance, for the commands that write or check one."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table


def dataset_table(manifest: dict, root: Path) -> Table:
    """A dataset's splits and label counts as a table (import, validate, annotate import)."""
    table = Table(title=f"{manifest['name']} ({root})")
    table.add_column("task")
    table.add_column("split")
    table.add_column("samples", justify="right")
    table.add_column("labels (count)")
    for task, splits in manifest.get("splits", {}).items():
        for split, n in splits.items():
            counts = manifest.get("label_counts", {}).get(task, {}).get(split, {})
            table.add_row(task, split, str(n), ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    return table
