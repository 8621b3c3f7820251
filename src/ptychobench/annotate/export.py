"""A Label Studio project from a dataset, a run cell or a folder of reconstructions.

What is written under ``out`` (nothing anywhere else), one folder per task::

    export.json                      what was exported, from where, and how to serve images
    artifacts/label_config.xml       paste into Settings > Labeling Interface (or create via API)
    artifacts/tasks.json             import into the project (tasks, optional pre-annotations)
    artifacts/images/<safe id>.png   the images the tasks show
    params/label_config.xml, params/tasks.json

Images are referenced the way Label Studio serves local files
(``/data/local-files/?d=<path under the document root>``), or under ``image_url_prefix``
when they are hosted elsewhere. A task's data carries the sample id, split and sample
type, so ``annotate import`` gives each label back to its sample; unless ``blind``, it
also carries the dataset's labels, and a run cell's predictions become pre-annotations
(``model_version`` = the cell) so an expert corrects rather than starts from nothing.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..data import Dataset, DatasetError, Sample, load_dataset
from ..data.dataset import SPLIT_NAME
from ..data.dataset import check_image as _check_image
from ..eval.store import STORE_GLOB, read_run
from ..tasks import TASKS, get_task
from .config import DATA_FIELD, choices_result, label_config, task_named
from .errors import AnnotateError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
LOCAL_FILES_URL = "/data/local-files/?d="


def safe_name(text: str) -> str:
    """A file name made of letters, digits, '.', '_' and '-' only: no separators, no '..'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "sample"
    return name[:120]


def unique_safe_names(ids: list[str]) -> dict[str, str]:
    """A distinct safe file name per id ('a/b' and 'a_b' must not overwrite each other)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for sid in ids:
        base = name = safe_name(sid)
        n = 2
        while name.lower() in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name.lower())
        out[sid] = name
    return out


@dataclass
class Source:
    """What to export: samples per task, their labels' origin and any pre-annotations."""

    kind: str  # "dataset", "run" or "images"
    name: str  # the dataset's name (of the run's dataset for a run); the folder's for images
    samples: list[Sample]
    predictions: dict[str, list[str]] = field(default_factory=dict)  # sample id -> labels
    model_version: str | None = None
    prediction_errors: int = 0


@dataclass
class ExportSummary:
    out: Path
    tasks: dict[str, int]  # task -> number of Label Studio tasks written
    predictions: int
    source: dict[str, Any]


# --------------------------------------------------------------------------- sources


def is_run(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".jsonl") or (path.is_dir() and any(path.glob(STORE_GLOB)))


def _run_dataset(run: Path, dataset: str | None) -> Dataset:
    if dataset is None:
        cfg = (run if run.is_dir() else run.parent) / "config.yaml"
        from ..safeio import read_yaml

        loaded = read_yaml(cfg, AnnotateError, "run config") if cfg.is_file() else None
        dataset = loaded.get("dataset") if isinstance(loaded, dict) else None
        if not dataset:
            raise AnnotateError(
                f"{run}: cannot tell which dataset the run used (no 'dataset' in {cfg}); pass --dataset"
            )
    return load_dataset(dataset)


def run_source(run: Path, cell: str | None, dataset: str | None = None) -> Source:
    """The samples of one run cell with its predictions (the cell's test samples)."""
    records = read_run(run)
    cells = sorted({r["config"] for r in records})
    if cell is None:
        raise AnnotateError(f"{run}: a run needs --cell NAME; its cells are: {', '.join(cells)}")
    mine = [r for r in records if r["config"] == cell]
    if not mine:
        raise AnnotateError(f"{run}: no cell {cell!r}; its cells are: {', '.join(cells)}")
    ds = _run_dataset(run, dataset)
    task = mine[0]["task"]
    by_id = {s.id: s for split in ds.split_names(task) for s in ds.samples(task, split)}
    missing = [r["sample_id"] for r in mine if r["sample_id"] not in by_id]
    if missing:
        raise AnnotateError(
            f"{run}: cell {cell!r} has samples {missing[:5]} that dataset {ds.root} "
            "lacks; pass the run's dataset with --dataset"
        )
    preds = {r["sample_id"]: list(r.get("labels") or []) for r in mine if not r.get("error")}
    return Source(
        "run",
        ds.name,
        [by_id[r["sample_id"]] for r in sorted(mine, key=lambda r: r["sample_id"])],
        preds,
        model_version=cell,
        prediction_errors=sum(1 for r in mine if r.get("error")),
    )


def dataset_source(dataset: Dataset, split: str | None) -> Source:
    samples = [
        s
        for t in dataset.tasks
        for sp in ([split] if split else dataset.split_names(t))
        for s in dataset.samples(t, sp)
    ]
    return Source("dataset", dataset.name, samples)


def images_source(folder: Path) -> Source:
    """A user's own reconstructions: every image file under ``folder``, unlabelled."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise AnnotateError(
            f"{folder}: neither a dataset, a run, nor a folder with images ({', '.join(IMAGE_SUFFIXES)})"
        )
    samples = []
    for p in files:
        rel = p.relative_to(folder).with_suffix("").as_posix()
        _check_image(p, str(p), rel)
        samples.append(Sample(rel, "", "artifacts", "unknown", "", p, frozenset(), {}))
    return Source("images", folder.name, samples)


def resolve_source(src: str, cell: str | None = None, dataset: str | None = None, split: str | None = None) -> Source:
    path = Path(src).expanduser()
    if is_run(path):
        source = run_source(path, cell, dataset)
        if split:
            source.samples = [s for s in source.samples if s.split == split]
        return source
    if cell:
        raise AnnotateError(f"{src}: --cell needs a run folder (with {STORE_GLOB}); this is not one")
    try:
        return dataset_source(load_dataset(src), split)
    except DatasetError as e:
        if path.is_dir() and not (path / "manifest.json").exists():
            return images_source(path)
        raise e


# --------------------------------------------------------------------------- writing


def _image_url(rel: str, image_url_prefix: str | None) -> str:
    if image_url_prefix:
        return f"{image_url_prefix.rstrip('/')}/{quote(rel)}"
    return LOCAL_FILES_URL + quote(rel, safe="/")


def export_project(
    src: str,
    out: Path | str,
    *,
    cell: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    blind: bool = False,
    task: str | None = None,
    document_root: Path | str | None = None,
    image_url_prefix: str | None = None,
) -> ExportSummary:
    """Write the Label Studio project(s) for ``src`` under ``out`` (see the module doc)."""
    if split is not None and not SPLIT_NAME.match(split):
        raise AnnotateError(f"--split {split!r}: choose train, test or a further test split test-<word>")
    if task is not None:
        task_named(task, "--task")
    out = Path(out).resolve()
    root = Path(document_root).resolve() if document_root else out
    if not out.is_relative_to(root):
        raise AnnotateError(
            f"--document-root {root} must contain --out {out}: Label Studio serves "
            "local files only from under its document root"
        )
    source = resolve_source(src, cell, dataset, split)
    by_task: dict[str, list[Sample]] = {}
    for s in source.samples:
        if task is None or s.task == task:
            by_task.setdefault(s.task, []).append(s)
    if not by_task:
        raise AnnotateError(f"{src}: nothing to export (task {task or 'any'}, split {split or 'any'})")
    if sample is not None:
        if sample < 1:
            raise AnnotateError(f"--sample {sample}: must be a positive number of samples")
        rng = random.Random(seed)
        by_task = {
            t: sorted(rng.sample(ss, min(sample, len(ss))), key=lambda s: (s.split, s.id)) for t, ss in by_task.items()
        }
    counts: dict[str, int] = {}
    n_pred = 0
    for task_name in [t for t in TASKS if t in by_task]:
        folder = out / task_name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "label_config.xml").write_text(label_config(task_name), encoding="utf-8")
        names = unique_safe_names([s.id for s in by_task[task_name]])
        tasks = []
        for s in by_task[task_name]:
            data: dict[str, Any] = {"ptychobench_id": s.id, "ptychobench_task": task_name}
            if not blind:  # the type alone predicts labels (micro-F1 0.27 on sim-v2): a blind rater never sees it
                data["sample_type"] = s.sample_type
            if s.split:
                data["split"] = s.split
            if source.kind != "images":
                data["dataset"] = source.name
            if source.model_version:
                data["run_cell"] = source.model_version
            if get_task(task_name).modality == "image":
                assert s.image is not None
                dest = folder / "images" / f"{names[s.id]}{s.image.suffix.lower() or '.png'}"
                dest.parent.mkdir(exist_ok=True)
                shutil.copyfile(s.image, dest)
                data[DATA_FIELD[task_name]] = _image_url(dest.relative_to(root).as_posix(), image_url_prefix)
                data["image_file"] = dest.name
            else:
                data[DATA_FIELD[task_name]] = s.text
            if not blind and source.kind != "images":
                data["dataset_labels"] = [x for x in get_task(task_name).labels if x in s.labels]
            record: dict[str, Any] = {"data": data}
            if not blind and s.id in source.predictions:
                record["predictions"] = [
                    {
                        "model_version": source.model_version,
                        "result": choices_result(task_name, source.predictions[s.id]),
                    }
                ]
                n_pred += 1
            tasks.append(record)
        (folder / "tasks.json").write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        counts[task_name] = len(tasks)
    info = {
        "source": str(src),
        "kind": source.kind,
        "name": source.name,
        "cell": cell,
        "blind": blind,
        "split": split,
        "sample": sample,
        "seed": seed,
        "tasks": counts,
        "pre_annotations": n_pred,
        "prediction_errors": source.prediction_errors,
        "images": (
            {"url_prefix": image_url_prefix}
            if image_url_prefix
            else {"served_as": "local files", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root)}
        ),
    }
    (out / "export.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return ExportSummary(out, counts, n_pred, info)
