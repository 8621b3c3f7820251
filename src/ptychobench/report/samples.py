"""The per-sample browser's data: every test sample once, every cell's answer to it.

A reader who doubts a number wants to see the samples behind it: the image or text the
model saw, the gold labels, what each cell replied and parsed, which demonstrations it
was shown. This module gathers that from the store and the run's dataset into one JSON
object (images as small embedded thumbnails, each sample and demo once) so the HTML page
stays a single file that opens offline. When the dataset cannot be found (moved, or the
report is written on another machine) the page still works and says so, showing ids.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..data.dataset import Dataset, Sample, content_hash, load_dataset
from ..errors import DatasetError
from ..safeio import check_image_header, read_yaml
from ..tasks import get_task
from .format import short_config

THUMB_PX = 96
#: the largest side a sample's picture is embedded at (its full size for the datasets shipped)
FULL_PX = 512
#: replies longer than this are cut in the page (the store keeps them whole)
MAX_REPLY = 600
MAX_TEXT = 1500


def sample_f1(gold: list[str], pred: list[str], scored: tuple[str, ...]) -> float:
    """F1 of one sample over the scored labels; an empty gold and an empty prediction agree
    (1.0), as in scikit-learn's ``average='samples'`` with ``zero_division=1``."""
    g, p = set(gold) & set(scored), set(pred) & set(scored)
    if not g and not p:
        return 1.0
    return 2 * len(g & p) / (len(g) + len(p))


def thumbnail(path: Path, px: int = THUMB_PX) -> str | None:
    """A data URI of a small JPEG of the image (None when it cannot be read): reconstructions
    are noisy, so PNG would not shrink them; at this size JPEG keeps what a reader checks."""
    import numpy as np
    from PIL import Image

    try:
        check_image_header(path, "thumbnail", DatasetError)
        with Image.open(path) as opened:
            im: Image.Image = opened
            if im.mode in ("I", "I;16", "I;16B", "F"):  # 16-bit or float: scaled to 8 bits, not clipped
                a = np.asarray(im, dtype=np.float64)
                lo, hi = np.nanmin(a), np.nanmax(a)
                im = Image.fromarray(np.uint8(np.clip((a - lo) / ((hi - lo) or 1) * 255, 0, 255)))
            im = im.convert("L" if im.mode == "L" else "RGB")
            im.thumbnail((px, px))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except (OSError, DatasetError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def find_dataset(
    run_dir: Path, records: list[dict[str, Any]], dataset: Path | str | None = None
) -> tuple[Dataset | None, str]:
    """The dataset the run's records were made on, and a sentence for the page.

    Tried in order: ``dataset`` (given by the caller), the run's ``config.yaml``, the name
    the records carry. One is taken only when its content hash equals the records' hash,
    so the page never shows images that are not the ones the models saw."""
    comp = (
        next((r.get("components", {}).get("dataset") for r in records if r.get("components", {}).get("dataset")), None)
        or {}
    )
    want_hash, name = comp.get("content_hash"), comp.get("name")
    tries: list[Path | str] = [dataset] if dataset else []
    cfg = run_dir / "config.yaml"
    if cfg.is_file():
        try:
            given = (read_yaml(cfg, DatasetError) or {}).get("dataset")
        except (DatasetError, AttributeError):
            given = None
        if isinstance(given, str):
            tries += [given] if Path(given).is_absolute() else [given, run_dir.parent / given]
    if name:
        tries.append(name)
    mismatch = None
    for t in tries:
        try:
            ds = load_dataset(t, check_images=False)
        except (DatasetError, OSError, ValueError):
            continue
        if want_hash and want_hash not in (ds.manifest.get("content_hash"), content_hash(ds.root)):
            mismatch = ds.root
            continue
        return ds, f"Images and texts from the dataset at {ds.root}."
    if mismatch is not None:
        return None, (
            f"The dataset found at {mismatch} is not the one this run used (its content hash "
            "differs), so samples are shown by id only."
        )
    what = f"dataset {name!r}" if name else "the run's dataset"
    return None, (
        f"The {what} is not available on this machine, so samples are shown by id only "
        "(`ptychobench report RUN --dataset PATH` shows its images and texts)."
    )


def browser_data(records: list[dict[str, Any]], ds: Dataset | None, note: str) -> dict[str, Any]:
    """The JSON the page's script renders: cells, samples, demos and one row per record."""
    cells = sorted({r["config"] for r in records})
    cell_index = {c: i for i, c in enumerate(cells)}
    lookup: dict[tuple[str, str], Sample] = {}
    if ds is not None:
        for (task, _split), samples in ds.splits.items():
            for known in samples:
                lookup[(task, known.id)] = known
    by_sample: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_sample[(r["task"], r["sample_id"])].append(r)
    demos: dict[str, dict[str, Any]] = {}
    samples_out = []
    for (task, sid), recs in sorted(by_sample.items()):
        t = get_task(task)
        s: Sample | None = lookup.get((task, sid))
        rows = []
        for r in sorted(recs, key=lambda x: cell_index[x["config"]]):
            for d in r.get("demos", []):
                key = f"{task}/{d}"
                if key not in demos:
                    demos[key] = _demo(lookup.get((task, d)), d)
            rows.append(
                {
                    "c": cell_index[r["config"]],
                    "reply": _cut(r.get("reply") or "", MAX_REPLY),
                    "labels": list(r.get("labels", [])),
                    "ok": bool(r.get("parse_ok", True)),
                    "err": _cut(r["error"], 300) if r.get("error") else None,
                    "demos": [f"{task}/{d}" for d in r.get("demos", [])],
                    "f1": round(sample_f1(r["gold"], r.get("labels", []), t.scored_labels), 3),
                    "right": set(r["gold"]) & set(t.scored_labels) == set(r.get("labels", [])) & set(t.scored_labels),
                }
            )
        samples_out.append(
            {
                "id": sid,
                "task": task,
                "type": recs[0].get("sample_type", "unknown"),
                "gold": list(recs[0]["gold"]),
                # full size up to FULL_PX (shown at 96 px; a click enlarges it)
                "img": thumbnail(s.image, FULL_PX) if s is not None and s.image is not None else None,
                "text": _cut(s.text, MAX_TEXT) if s is not None else None,
                "rows": rows,
            }
        )
    return {
        "note": note,
        "cells": [{"name": short_config(c), "config": c, "task": c.split("/", 1)[0]} for c in cells],
        "samples": samples_out,
        "demos": demos,
        "labels": {t: list(get_task(t).labels) for t in sorted({r["task"] for r in records})},
        "types": sorted({s["type"] for s in samples_out}),
    }


def _demo(s: Sample | None, sid: str) -> dict[str, Any]:
    if s is None:
        return {"id": sid}
    return {
        "id": sid,
        "gold": sorted(s.labels),
        "img": thumbnail(s.image, 48) if s.image is not None else None,
        "text": _cut(s.text, 300) if s.image is None else None,
    }


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
