"""Samples and datasets on disk.

A dataset is a folder::

    manifest.json              name, version, tasks, split sizes, label counts, content hash
    artifacts/train.jsonl      one sample a line; images beside them in artifacts/images/
    artifacts/test.jsonl
    params/train.jsonl
    params/test.jsonl
    params/test-ood.jsonl      optional further test splits: test-<word> (a held-out instrument)

Every task has ``train`` and ``test``; any number of further test splits named
``test-<word>`` (lower-case letters and digits) may sit beside them. No sample id is in two
splits of a task, and demonstrations come from ``train`` only (:func:`require_train`), so a
further test split is as clean as ``test``.

Loading validates everything and fails with :class:`DatasetError`, which names the file,
the line and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError
from ..files import write_atomic
from ..safeio import check_image_header, loads_json, read_json, read_text
from ..tasks import TASKS, get_task

#: the splits every task has
SPLITS = ("train", "test")
#: a split's name: train, test, or a further test split test-<word>
SPLIT_NAME = re.compile(r"^(?:train|test|test-[a-z0-9]+)$")
MANIFEST = "manifest.json"


def check_split_name(split: str, where: str) -> None:
    """DatasetError unless ``split`` is train, test or test-<word>."""
    if not isinstance(split, str) or not SPLIT_NAME.match(split):
        raise DatasetError(
            f"{where}: split {split!r} is not a split name; use train, test or test-<word> "
            "(lower-case letters and digits, e.g. test-ood)"
        )


def split_order(splits: Iterable[str]) -> list[str]:
    """train, test, then the further test splits by name."""
    return sorted(set(splits), key=lambda sp: (sp != "train", sp != "test", sp))


@dataclass(frozen=True)
class Sample:
    id: str
    split: str
    task: str
    sample_type: str
    text: str
    image: Path | None
    labels: frozenset[str]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def to_record(self, image_root: Path | None = None) -> dict[str, Any]:
        image = None
        if self.image is not None:
            image = str(self.image.relative_to(image_root)) if image_root else str(self.image)
        task = get_task(self.task)
        return {
            "id": self.id,
            "sample_type": self.sample_type,
            "text": self.text,
            "image": image,
            "labels": [label for label in task.labels if label in self.labels],
            "metadata": self.metadata,
        }


@dataclass
class Dataset:
    root: Path
    manifest: dict[str, Any]
    splits: dict[tuple[str, str], list[Sample]]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    def __repr__(self) -> str:
        """One line (the dataclass repr listed every sample: 930,538 characters for sim-v1)."""
        sizes = ", ".join(
            f"{t} {len(self.splits.get((t, 'train'), []))}/{len(self.splits.get((t, 'test'), []))}"
            + "".join(f" +{sp} {len(self.splits[(t, sp)])}" for sp in self.split_names(t)[2:])
            for t in self.tasks
        )
        digest = str(self.manifest.get("content_hash") or "?")[:12]
        return f"Dataset({self.name!r}, train/test: {sizes}, hash {digest}, root={str(self.root)!r})"

    @property
    def tasks(self) -> list[str]:
        return [t for t in TASKS if (t, "train") in self.splits]

    def split_names(self, task: str) -> list[str]:
        """The task's splits: train, test, then any test-<word>."""
        return split_order(sp for t, sp in self.splits if t == task)

    def samples(self, task: str, split: str) -> list[Sample]:
        try:
            return self.splits[(task, split)]
        except KeyError:
            have = f"; its {task} splits: {', '.join(self.split_names(task))}" if task in self.tasks else ""
            raise DatasetError(
                f"{self.root}: dataset {self.name!r} has no {task}/{split} split "
                f"(it has tasks: {', '.join(self.tasks) or 'none'}{have})"
            ) from None


def require_train(samples: Iterable[Sample], purpose: str) -> None:
    """The one guard of the protocol's first rule: demonstrations, fine-tuning examples and
    probe fits come from the train split only, so no test item can leak into what a model
    is shown or learns from (the released scripts' demo pool held test items)."""
    for s in samples:
        if s.split != "train":
            raise DatasetError(
                f"{purpose}: sample {s.id!r} is from split {s.split!r}; "
                "use the train split only (dataset.samples(task, 'train'))"
            )


# --------------------------------------------------------------------------- writing


def dataset_files(root: Path) -> list[Path]:
    """The dataset's own files: each task folder's ``*.jsonl`` and everything under its
    ``images/``. Not the manifest (it holds the hash), and nothing else a builder puts
    beside them (``released/``, validation sheets, timing notes), which may be written
    after the manifest: hashing those made a fresh ``generate`` fail ``validate``."""
    files: list[Path] = []
    for task in TASKS:
        folder = root / task
        if not folder.is_dir():
            continue
        files += [p for p in folder.glob("*.jsonl") if p.is_file()]
        images = folder / "images"
        if images.is_dir():
            files += [p for p in images.rglob("*") if p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def content_hash(root: Path) -> str:
    """SHA-256 over :func:`dataset_files` (relative path and content of each), in a fixed
    order, so the same data give the same hash wherever and whenever they were written."""
    root = Path(root)
    h = hashlib.sha256()
    for path in dataset_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_file_name(sample_id: str) -> str:
    """A file name for a sample id that cannot leave its folder: no separators, no ``..``,
    no leading dot, bounded length; an id that had to change gets a short hash of the
    original, so two ids never map to one file."""
    name = _UNSAFE.sub("_", sample_id).lstrip(".")[:80]
    if name != sample_id or not name:
        name = f"{name or 'sample'}-{hashlib.sha256(sample_id.encode()).hexdigest()[:8]}"
    return name


def inside(path: Path, root: Path) -> bool:
    """``path`` (as written, ``..`` resolved lexically) lies within ``root``."""
    p = os.path.normpath(os.path.abspath(path))
    r = os.path.normpath(os.path.abspath(root))
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)


def label_counts(samples: Iterable[Sample], task: str) -> dict[str, int]:
    counts = {label: 0 for label in get_task(task).labels}
    for s in samples:
        for label in s.labels:
            counts[label] += 1
    return counts


def write_dataset(
    out_dir: Path | str,
    name: str,
    version: str,
    samples: Iterable[Sample],
    description: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write samples as a dataset folder; images are copied into ``{task}/images/``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_split: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        check_split_name(s.split, f"write_dataset {out}: sample {s.id!r}")
        by_split.setdefault((s.task, s.split), []).append(s)
    tasks = sorted({t for t, _ in by_split}, key=list(TASKS).index)
    names = {t: split_order([*SPLITS, *(sp for tt, sp in by_split if tt == t)]) for t in tasks}
    before = set(dataset_files(out))
    written: set[Path] = set()
    for task in tasks:
        images = out / task / "images"
        for split in names[task]:
            rows = []
            for s in by_split.get((task, split), []):
                if s.image is not None:
                    images.mkdir(parents=True, exist_ok=True)
                    dest = images / f"{safe_file_name(s.id)}{s.image.suffix.lower() or '.png'}"
                    if Path(s.image).resolve() != dest.resolve():
                        shutil.copyfile(s.image, dest)
                    written.add(dest)
                    s = Sample(s.id, s.split, s.task, s.sample_type, s.text, dest, s.labels, s.metadata)
                rows.append(json.dumps(s.to_record(out / task), ensure_ascii=False, sort_keys=True))
            path = out / task / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, "".join(r + "\n" for r in rows))
            written.add(path)
    for stale in sorted(before - written):  # a rewrite leaves no old split or image to be loaded and hashed
        stale.unlink()
    manifest = {
        "name": name,
        "version": version,
        "description": description,
        "tasks": tasks,
        "splits": {t: {sp: len(by_split.get((t, sp), [])) for sp in names[t]} for t in tasks},
        "label_counts": {t: {sp: label_counts(by_split.get((t, sp), []), t) for sp in names[t]} for t in tasks},
        "content_hash": content_hash(out),
        **(extra or {}),
    }
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return out


# --------------------------------------------------------------------------- loading


def _read_split(path: Path, task: str, split: str, check_images: bool, root: Path | None = None) -> list[Sample]:
    spec = get_task(task)
    allowed = set(spec.labels)
    samples: list[Sample] = []
    seen: set[str] = set()
    root = root if root is not None else path.parent.parent
    text = read_text(path, DatasetError, "split file")
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        rec = loads_json(line, where, DatasetError)
        if not isinstance(rec, dict):
            raise DatasetError(f"{where}: expected a JSON object per line")
        for key in ("id", "labels"):
            if key not in rec:
                raise DatasetError(f"{where}: missing field {key!r}")
        if not isinstance(rec["id"], (str, int)) or isinstance(rec["id"], bool) or str(rec["id"]) == "":
            raise DatasetError(f"{where}: 'id' must be a non-empty string")
        sid = str(rec["id"])
        if sid in seen:
            raise DatasetError(f"{where}: duplicate sample id {sid!r} in {split}; ids must be unique")
        seen.add(sid)
        labels = rec["labels"]
        if not isinstance(labels, list):
            raise DatasetError(f"{where}: 'labels' must be a list")
        if not labels:
            raise DatasetError(
                f"{where}: sample {sid!r} has no labels; every sample has at least one "
                "(an image without artifacts is 'No obvious artifacts', advice without changes is 'L')"
            )
        unknown = [x for x in labels if not isinstance(x, str) or x not in allowed]
        if unknown:
            raise DatasetError(
                f"{where}: sample {sid!r} has unknown label(s) {unknown}; "
                f"the {task} task allows: {', '.join(spec.labels)}"
            )
        image = None
        if spec.modality == "image":
            if not rec.get("image") or not isinstance(rec["image"], str):
                raise DatasetError(f"{where}: sample {sid!r} of the image task has no 'image' path")
            if Path(rec["image"]).is_absolute() or not inside(path.parent / rec["image"], root):
                raise DatasetError(
                    f"{where}: image {rec['image']!r} of sample {sid!r} lies outside the dataset "
                    f"folder {root}; image paths are relative to the split file, inside the dataset"
                )
            image = (path.parent / rec["image"]).resolve()
            if not inside(image, root.resolve()):
                raise DatasetError(
                    f"{where}: image {rec['image']!r} of sample {sid!r} is a link to {image}, outside the "
                    f"dataset folder {root}; copy the file into the dataset instead"
                )
            if check_images:
                check_image(image, where, sid)
        samples.append(
            Sample(
                id=sid,
                split=split,
                task=task,
                sample_type=str(rec.get("sample_type") or "unknown"),
                text=str(rec.get("text") or ""),
                image=image,
                labels=frozenset(labels),
                metadata=_metadata(rec.get("metadata"), where),
            )
        )
    if not samples:
        raise DatasetError(f"{path}: the {task}/{split} split is empty; every split needs samples")
    return samples


def _metadata(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: 'metadata' must be a JSON object")
    return value


def check_image(image: Path, where: str, sid: str) -> None:
    """The image exists, its header claims a sane size (no decompression bomb) and it verifies."""
    if not image.is_file():
        raise DatasetError(f"{where}: image of sample {sid!r} not found: {image}")
    check_image_header(image, where, DatasetError, f"image of sample {sid!r}")
    try:
        with Image.open(image) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:  # PIL raises SyntaxError on a bad PNG
        raise DatasetError(f"{where}: image of sample {sid!r} is unreadable ({image}): {e}") from None


def load_dataset(path: Path | str, check_images: bool = True) -> Dataset:
    """Load and validate a dataset folder (or a known dataset name, see registry)."""
    from .registry import resolve_dataset

    root = resolve_dataset(path)
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        raise DatasetError(f"{manifest_path}: no manifest; is {root} a ptychobench dataset?")
    manifest = read_json(manifest_path, DatasetError, "manifest")
    if not isinstance(manifest, dict):
        raise DatasetError(f"{manifest_path}: expected a JSON object")
    for key in ("name", "tasks"):
        if key not in manifest:
            raise DatasetError(f"{manifest_path}: missing field {key!r}")
    if not isinstance(manifest["name"], str) or not isinstance(manifest["tasks"], list):
        raise DatasetError(f"{manifest_path}: 'name' must be a string and 'tasks' a list")
    if not manifest["tasks"]:
        raise DatasetError(f"{manifest_path}: 'tasks' is empty; a dataset has at least one task")
    splits: dict[tuple[str, str], list[Sample]] = {}
    for task in manifest["tasks"]:
        if not isinstance(task, str) or task not in TASKS:
            raise DatasetError(f"{manifest_path}: unknown task {task!r}; known: {', '.join(TASKS)}")
        for split in SPLITS:
            p = root / task / f"{split}.jsonl"
            if not p.is_file():
                raise DatasetError(f"{p}: missing; a dataset needs train and test for every task")
        for p in sorted((root / task).glob("*.jsonl")):
            check_split_name(p.stem, str(p))
        for split in split_order(p.stem for p in (root / task).glob("*.jsonl")):
            splits[(task, split)] = _read_split(root / task / f"{split}.jsonl", task, split, check_images, root)
        _check_disjoint(root / task, {sp: splits[(t, sp)] for t, sp in splits if t == task})
    return Dataset(root=root, manifest=manifest, splits=splits)


def cross_task_leaks(dataset: Dataset) -> list[tuple[str, str, str]]:
    """Sample ids in a test split of one task and the train split of another, as
    (id, "task/test split", "task/train"). Where a dataset's tasks share ids for one
    experiment (sim datasets: ``expNNNN``), such an experiment's measured labels can be
    learnt from one task's training text and scored in the other's test (issue 11). Not an
    error at load (sim-v1 has them and stays loadable); ``validate`` says so."""
    train = {t: {s.id for s in dataset.samples(t, "train")} for t in dataset.tasks}
    leaks = []
    for task in dataset.tasks:
        for split in dataset.split_names(task)[1:]:
            for other in dataset.tasks:
                if other == task:
                    continue
                for sid in sorted({s.id for s in dataset.samples(task, split)} & train[other]):
                    leaks.append((sid, f"{task}/{split}", f"{other}/train"))
    return leaks


def _check_disjoint(folder: Path, by_split: dict[str, list[Sample]]) -> None:
    """No sample id in two splits of a task (train against every test split, and the test
    splits against each other): a leaked sample would be scored on what a model was shown."""
    names = split_order(by_split)
    for i, a in enumerate(names):
        ids = {s.id for s in by_split[a]}
        for b in names[i + 1 :]:
            both = ids & {s.id for s in by_split[b]}
            if both:
                raise DatasetError(
                    f"{folder}: sample(s) {sorted(both)[:5]} are in both {a} and {b}; a sample belongs to one split"
                )
