"""Where datasets live: the ones shipped in the package and the user's own.

A dataset argument is a folder path or a name; names are looked up among the shipped
datasets (``ptychobench/datasets/``) and then in ``$PTYCHOBENCH_HOME/datasets``
(default ``~/.local/share/ptychobench/datasets``), where ``import`` and ``generate`` can
put datasets for later use by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from ..paths import user_datasets_dir

SHIPPED_DIR = Path(__file__).parent.parent / "datasets"
DEFAULT_DATASET = "sim-v2"


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    path: Path
    source: str  # "shipped" or "user"
    manifest: dict


def list_datasets() -> list[DatasetEntry]:
    entries = []
    for source, folder in (("shipped", SHIPPED_DIR), ("user", user_datasets_dir())):
        if not folder.is_dir():
            continue
        for d in sorted(folder.iterdir()):
            m = d / "manifest.json"
            if m.is_file():
                try:
                    manifest = json.loads(m.read_text())
                except json.JSONDecodeError:
                    manifest = {"name": d.name, "error": "manifest is not valid JSON"}
                entries.append(DatasetEntry(d.name, d, source, manifest))
    return entries


def resolve_dataset(name_or_path: Path | str) -> Path:
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p.resolve()
    for folder in (SHIPPED_DIR, user_datasets_dir()):
        if (folder / str(name_or_path)).is_dir():
            return (folder / str(name_or_path)).resolve()
    known = ", ".join(e.name for e in list_datasets()) or "none"
    raise DatasetError(f"{name_or_path}: no such dataset folder or name (known datasets: {known})")
