"""Import and export the authors' released chat-JSON format.

A released split file (``train.json`` / ``test.json``) is a JSON list of records::

    {"messages": [{"role": "user", "content": [{"type": "text", "text": Q},
                                               {"type": "image", "image_path": P}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "<answer>..</answer>"}]}],
     "metadata": {"sample_type": ..., "sample_id": ..., ...}}

Image paths carry foreign prefixes (``/data/upload/...``); only the file name is used and
looked up under ``--images``. The task of a file is the artifact task when its records
carry images and the parameter task otherwise. A folder may hold the two split files
directly or one sub-folder per task.

What is kept, so that the ``released`` prompt mode (``Task.render``) can send the authors'
exact prompt and an export gives back byte-identical messages:
``metadata["released_text"]`` (the user's text verbatim), ``metadata["released_answer"]``
(the assistant's answer string verbatim: its label order and spelling), and
``metadata["released_image_path"]`` (the image path as written, foreign prefix included);
a record whose turns are not the documented ``[text, image]`` / ``[text]`` shape also keeps
``metadata["released_messages"]`` whole. Our own prompt (the default) uses ``Sample.text``:
for the parameter task the user's text without the lettered option list (the task states
it once in its system turn); for the artifact task the question is an instruction the task
restates, so ``Sample.text`` is empty.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..safeio import read_json
from ..tasks import PARAM_OPTIONS, TASKS, Task, get_task, label_key, option_letters
from .dataset import SPLIT_NAME, SPLITS, Dataset, Sample, check_image, load_dataset, write_dataset
from .images import ImageIndex

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_OPTION_LINE = re.compile(r"^\s*\(?([A-X])[.):]\s+(.+?)\s*$")


def strict_labels(task: Task, answer: str, where: str) -> frozenset[str]:
    """Labels of a gold answer; every item must name a label of the task exactly."""
    m = _ANSWER.search(answer or "")
    if not m:
        raise DatasetError(f"{where}: the assistant turn has no <answer>...</answer>: {answer[:80]!r}")
    items = [x.strip() for x in re.split(r"[,;]", m.group(1).strip().strip("[]")) if x.strip()]
    by_key = {label_key(label): label for label in task.labels}
    labels = set()
    for item in items:
        if task.name == "params":
            letters = option_letters(label_key(item), allow_letter_runs=False)
            if len(letters) != 1:
                raise DatasetError(f"{where}: unknown option {item!r}; options are letters A..X")
            labels |= letters
        elif label_key(item) in by_key:
            labels.add(by_key[label_key(item)])
        else:
            raise DatasetError(
                f"{where}: unknown label {item!r}; the {task.name} task allows: {', '.join(task.labels)}"
            )
    return frozenset(labels)


def strip_option_list(text: str) -> str:
    """The user's text without the lettered option block of the parameter task."""
    keep = []
    for line in text.splitlines():
        m = _OPTION_LINE.match(line)
        if m and label_key(m.group(2)) == label_key(PARAM_OPTIONS[m.group(1)]):
            continue
        keep.append(line)
    return "\n".join(keep).strip()


def _parts(turn: dict, where: str) -> tuple[str, list[str]]:
    content = turn.get("content")
    if isinstance(content, list) and not all(isinstance(p, dict) for p in content):
        raise DatasetError(f"{where}: each part of 'content' must be a JSON object")
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise DatasetError(f"{where}: 'content' must be a list of parts or a string")
    texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    if not all(isinstance(t, str) for t in texts):
        raise DatasetError(f"{where}: a text part's 'text' must be a string")
    images = [
        p.get("image_path") or p.get("image") or p.get("path")
        for p in content
        if isinstance(p, dict) and p.get("type") == "image"
    ]
    if not all(isinstance(i, str) for i in images if i):
        raise DatasetError(f"{where}: an image part's path must be a string")
    return "\n".join(texts), [str(i) for i in images if i]


def _read_released_file(path: Path, split: str, images: ImageIndex | None, task_name: str | None) -> list[Sample]:
    records = read_json(path, DatasetError, "released split file")
    if not isinstance(records, list) or not records:
        raise DatasetError(f"{path}: expected a non-empty JSON list of records")
    samples: list[Sample] = []
    ids: set[str] = set()
    for i, rec in enumerate(records):
        where = f"{path} record {i}"
        msgs = rec.get("messages") if isinstance(rec, dict) else None
        if not isinstance(msgs, list) or len(msgs) < 2 or not all(isinstance(m, dict) for m in msgs):
            raise DatasetError(f"{where}: expected 'messages', a list of turn objects (a user and an assistant turn)")
        user = next((m for m in msgs if m.get("role") == "user"), None)
        assistant = next((m for m in reversed(msgs) if m.get("role") == "assistant"), None)
        if user is None or assistant is None:
            raise DatasetError(f"{where}: needs one user and one assistant turn")
        text, image_refs = _parts(user, where)
        answer, _ = _parts(assistant, where)
        task = get_task(task_name or ("artifacts" if image_refs else "params"))
        labels = strict_labels(task, answer, where)
        if not isinstance(rec.get("metadata") or {}, dict):
            raise DatasetError(f"{where}: 'metadata' must be a JSON object")
        meta: dict[str, Any] = dict(rec.get("metadata") or {})
        raw_id = meta.pop("ptychobench_id", None) or meta.get("sample_id")
        if raw_id is not None and (not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool)):
            raise DatasetError(f"{where}: metadata 'sample_id' must be a string, got {type(raw_id).__name__}")
        sid = str(raw_id or f"{split}-{i:04d}")
        base, n = sid, 2
        while sid in ids:  # several images of one physical sample share a sample_id
            sid, n = f"{base}#{n}", n + 1
        ids.add(sid)
        image = None
        if task.modality == "image":
            if not image_refs:
                raise DatasetError(f"{where}: the artifact task needs an image part")
            name = Path(image_refs[0].replace("\\", "/")).name
            if images is None:
                raise DatasetError(f"{where}: records carry images; pass --images DIR")
            found = images.find([image_refs[0]], where)
            if found is None:
                raise DatasetError(f"{where}: image {name!r} ({image_refs[0]}) not found under the images folder")
            image = found
            check_image(image, where, sid)
        meta["released_text"] = text
        meta["released_answer"] = answer
        if image_refs:
            meta["released_image_path"] = image_refs[0]
        if msgs != _rebuilt_messages(text, image_refs[0] if image_refs else None, answer):
            meta["released_messages"] = msgs
        samples.append(
            Sample(
                id=sid,
                split=split,
                task=task.name,
                sample_type=str(meta.get("sample_type") or "unknown"),
                text=strip_option_list(text) if task.name == "params" else "",
                image=image,
                labels=labels,
                metadata=meta,
            )
        )
    return samples


def import_released(
    src: Path | str, out: Path | str, images: Path | str | None = None, name: str | None = None, task: str | None = None
) -> Dataset:
    """Read released ``train.json``/``test.json`` files (both tasks), and any further test
    split ``test-<word>.json`` that ``export`` wrote beside them, into a dataset folder."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src}: not a folder holding train.json and test.json")
    folders = (
        [src]
        if (src / "train.json").exists()
        else sorted(d for d in src.iterdir() if d.is_dir() and (d / "train.json").exists())
    )
    if not folders:
        raise DatasetError(f"{src}: no train.json here or in a sub-folder")
    index = ImageIndex.of(images) if images is not None else None
    samples: list[Sample] = []
    for folder in folders:
        for split in SPLITS:
            f = folder / f"{split}.json"
            if not f.exists():
                raise DatasetError(f"{f}: missing; each task needs train.json and test.json")
            samples += _read_released_file(f, split, index, task)
        for f in sorted(folder.glob("test-*.json")):
            if SPLIT_NAME.match(f.stem):
                samples += _read_released_file(f, f.stem, index, task)
    tasks = {s.task for s in samples}
    for t in tasks:
        for split in SPLITS:
            if not any(s.task == t and s.split == split for s in samples):
                raise DatasetError(f"{src}: the {t} task has no {split} samples")
    out = Path(out)
    write_dataset(
        out, name or src.name, "imported", samples, description=f"Imported from the released chat-JSON files in {src}"
    )
    return load_dataset(out)


def _rebuilt_messages(text: str, image_path: str | None, answer: str) -> list[dict[str, Any]]:
    """The documented released record's turns: the question, the image, the answer."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if image_path is not None:
        content.append({"type": "image", "image_path": image_path})
    return [{"role": "user", "content": content}, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


RELEASED_KEYS = ("released_text", "released_answer", "released_image_path", "released_messages")


def released_image_name(sample: Sample) -> str | None:
    """The image's original file name (from the released path) or, for generated data,
    the dataset's own file name."""
    if sample.image is None:
        return None
    original = sample.metadata.get("released_image_path")
    return Path(str(original).replace("\\", "/")).name if original else sample.image.name


def released_record(task: Task, sample: Sample, image_path: str | None) -> dict[str, Any]:
    """The sample as a released record. An imported sample gives back its messages
    byte-identical (text, answer string, image path as written) while its labels are
    unchanged; otherwise the text and answer are rebuilt (``Task.released_text``/``target``)."""
    meta = {k: v for k, v in sample.metadata.items() if k not in RELEASED_KEYS}
    text = task.released_text(sample)
    answer = task.released_answer(sample)
    original = sample.metadata.get("released_messages")
    unchanged = answer == sample.metadata.get("released_answer")
    image_path = sample.metadata.get("released_image_path", image_path) if image_path is not None else None
    meta.setdefault("sample_type", sample.sample_type)
    meta.setdefault("sample_id", sample.id)
    if meta["sample_id"] != sample.id:
        meta["ptychobench_id"] = sample.id
    messages = original if (original and unchanged) else _rebuilt_messages(text, image_path, answer)
    return {"messages": messages, "metadata": meta}


def export_released(dataset: Dataset | Path | str, out: Path | str) -> Path:
    """Write a dataset in the released format: ``out/{task}/{train,test}.json`` (and one
    ``test-<word>.json`` per further test split) + ``images/``. Images keep their original
    file names; imported records keep their messages as read."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    out = Path(out)
    for task_name in ds.tasks:
        task = TASKS[task_name]
        folder = out / task_name
        folder.mkdir(parents=True, exist_ok=True)
        for split in ds.split_names(task_name):
            records = []
            for s in ds.samples(task_name, split):
                image_path = None
                name = released_image_name(s)
                if s.image is not None and name is not None:
                    (out / "images").mkdir(exist_ok=True)
                    shutil.copyfile(s.image, out / "images" / name)
                    image_path = f"images/{name}"  # an imported sample keeps its own path
                records.append(released_record(task, s, image_path))
            (folder / f"{split}.json").write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    return out
