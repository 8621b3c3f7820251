"""Read Label Studio's JSON export: every annotator's labels, skips, and a consensus.

The JSON export is a list of tasks; each task has ``data`` (what ``annotate export`` put
there, or a foreign project's own fields) and ``annotations``, one per annotator
submission: ``completed_by`` (a user id, or ``{"id", "email", ...}`` when expanded),
``result`` (``[{"type": "choices", "value": {"choices": [...]}}]``) and ``was_cancelled``
(true when the annotator pressed *Skip*).

Consensus rule (what the ``labels`` field of an imported sample holds): a label is in
when a strict majority of the annotators who labelled the sample (skips do not vote)
ticked it. A label ticked by exactly half is a tie: it is left out and listed, per
sample (``metadata.annotate.ties``) and in the manifest, so nobody mistakes a split
vote for agreement. With one annotator the consensus is their labels; with two it is
what both ticked. "No obvious artifacts" is dropped from a consensus that also holds an
artifact (the two contradict each other; the artifact had its majority).

A task with no submitted annotation (only skips, or none at all) has no labels to give:
it is not written as a sample, and it is reported (``skipped``/``unannotated``), never
dropped silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import parse_qs, unquote, urlparse

from ..safeio import read_json
from ..tasks import NO_ARTIFACTS, Task
from .config import CONTROL, canonical_label, results_choices, task_named
from .errors import AnnotateError

CONSENSUS_RULE = "strict majority of the annotators who labelled the sample; ties left out and listed"
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio prefixes uploaded file names with 8 hex digits


@dataclass
class LabelledTask:
    """One Label Studio task: who ticked what, who skipped it, and its consensus."""

    task_id: Any
    sample_id: str
    data: dict[str, Any]
    labels_by: dict[str, frozenset[str]]  # annotator -> labels (submitted annotations only)
    skipped_by: list[str] = field(default_factory=list)
    consensus: frozenset[str] = frozenset()
    ties: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return bool(self.labels_by)


@dataclass
class ExportContents:
    path: Path
    task: str
    items: list[LabelledTask]

    @property
    def annotators(self) -> list[str]:
        return sorted({a for it in self.items for a in (*it.labels_by, *it.skipped_by)}, key=_natural)

    @property
    def labelled(self) -> list[LabelledTask]:
        return [it for it in self.items if it.labelled]

    @property
    def skipped(self) -> list[LabelledTask]:
        return [it for it in self.items if not it.labelled and it.skipped_by]

    @property
    def unannotated(self) -> list[LabelledTask]:
        return [it for it in self.items if not it.labelled and not it.skipped_by]


def _natural(s: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))


def annotator_name(ann: dict[str, Any]) -> str:
    """A stable name for who made an annotation: the e-mail when the export carries it,
    else ``user-<id>`` (Label Studio's plain JSON export gives the user id only)."""
    who = ann.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or f"user-{who.get('id')}")
    if who is not None:
        return f"user-{who}"
    return "unknown"


def consensus(labels_by: dict[str, frozenset[str]]) -> tuple[frozenset[str], list[str]]:
    """The module doc's rule: (labels with a strict majority, labels tied at half)."""
    n = len(labels_by)
    votes = Counter(label for labels in labels_by.values() for label in labels)
    chosen = {label for label, v in votes.items() if 2 * v > n}
    ties = sorted(label for label, v in votes.items() if 2 * v == n)
    if NO_ARTIFACTS in chosen and len(chosen) > 1:
        chosen.discard(NO_ARTIFACTS)
    return frozenset(chosen), ties


def _detect_task(records: list[dict], path: Path, task: str | None) -> Task:
    if task:
        return task_named(task, f"{path}: --task")
    named = {r.get("data", {}).get("ptychobench_task") for r in records} - {None}
    controls = {
        res.get("from_name")
        for r in records
        for a in r.get("annotations") or []
        for res in a.get("result") or []
        if isinstance(res, dict)
    }
    for name, control in CONTROL.items():
        if control in controls:
            named.add(name)
    if not named:
        named = {"artifacts" if any("image" in (r.get("data") or {}) for r in records) else "params"}
    if len(named) > 1:
        raise AnnotateError(f"{path}: the export mixes tasks {sorted(named)}; export one project per task")
    return task_named(str(named.pop()), f"{path}: 'ptychobench_task' in the task data")


def sample_id_of(record: dict[str, Any]) -> str:
    """The sample a task is about: the id ``annotate export`` stored, else the image's
    file stem (Label Studio's upload prefix removed), else ``task-<id>``."""
    data = record.get("data") or {}
    if data.get("ptychobench_id"):
        return str(data["ptychobench_id"])
    name = image_name(data.get("image"))
    if name:
        return Path(name).stem
    return f"task-{record.get('id')}"


def image_ref(url: Any) -> str | None:
    """The file path an image reference points at: ``/data/local-files/?d=a/b.png`` gives
    ``a/b.png``, ``https://host/x/b.png`` gives ``/x/b.png``."""
    if not url or not isinstance(url, str) or url.startswith("data:"):
        return None
    try:
        parsed = urlparse(url)
    except ValueError:
        return None
    return unquote(parse_qs(parsed.query).get("d", [parsed.path])[0]) or None


def image_name(url: Any) -> str | None:
    """The file name an image reference points at: ``/data/local-files/?d=a/b.png``,
    ``/data/upload/3/1a2b3c4d-b.png`` and ``https://host/x/b.png`` all give ``b.png``
    (the upload prefix is removed)."""
    ref = image_ref(url)
    return (_UPLOAD_PREFIX.sub("", Path(ref).name) or None) if ref else None


def read_export(path: Path | str, task: str | None = None) -> ExportContents:
    """Parse and validate a Label Studio JSON export (see the module doc)."""
    path = Path(path)
    if not path.exists():
        raise AnnotateError(f"{path}: no such file; export the project as JSON from Label Studio")
    records = read_json(path, AnnotateError, "Label Studio JSON export")
    if not isinstance(records, list) or not records:
        raise AnnotateError(f"{path}: expected a non-empty JSON list of tasks (Label Studio's JSON export)")
    for i, r in enumerate(records):
        _check_task(r, f"{path}: item {i}")
    spec = _detect_task(records, path, task)
    items: list[LabelledTask] = []
    seen: dict[str, Any] = {}
    for r in records:
        sid = sample_id_of(r)
        if sid in seen:
            raise AnnotateError(
                f"{path}: tasks {seen[sid]} and {r.get('id')} are both about sample {sid!r}; a sample must be one task"
            )
        seen[sid] = r.get("id")
        latest: dict[str, dict] = {}
        for ann in sorted(r.get("annotations") or [], key=lambda a: (str(a.get("updated_at") or ""), a.get("id") or 0)):
            latest[annotator_name(ann)] = ann  # an annotator's newest submission is their answer
        labels_by: dict[str, frozenset[str]] = {}
        skipped: list[str] = []
        for who, ann in latest.items():
            if ann.get("was_cancelled"):
                skipped.append(who)
                continue
            labels_by[who] = frozenset(_labels(spec, ann, path, r.get("id"), sid, who))
        cons, ties = consensus(labels_by) if labels_by else (frozenset(), [])
        items.append(
            LabelledTask(r.get("id"), sid, r.get("data") or {}, labels_by, sorted(skipped, key=_natural), cons, ties)
        )
    return ExportContents(path, spec.name, items)


def read_exports(paths: Sequence[Path | str], task: str | None = None) -> ExportContents:
    """Several exports of one task set merged by sample: one project per rater, so no rater
    sees another's annotations (Label Studio's community edition shows every member every
    annotation of a task). The same rater in two exports is an error, not a second vote."""
    parts = [read_export(p, task) for p in paths]
    if len(parts) == 1:
        return parts[0]
    if len({c.task for c in parts}) > 1:
        raise AnnotateError(f"{', '.join(str(c.path) for c in parts)}: the exports are of different tasks")
    merged: dict[str, LabelledTask] = {}
    for c in parts:
        for it in c.items:
            m = merged.get(it.sample_id)
            if m is None:
                merged[it.sample_id] = LabelledTask(
                    it.task_id, it.sample_id, it.data, dict(it.labels_by), list(it.skipped_by)
                )
                continue
            twice = (set(m.labels_by) | set(m.skipped_by)) & (set(it.labels_by) | set(it.skipped_by))
            if twice:
                raise AnnotateError(
                    f"{c.path}: {', '.join(sorted(twice))} also answered sample {it.sample_id!r} in another "
                    "export; give each rater one project"
                )
            m.labels_by.update(it.labels_by)
            m.skipped_by = sorted([*m.skipped_by, *it.skipped_by], key=_natural)
    for m in merged.values():
        m.consensus, m.ties = consensus(m.labels_by) if m.labels_by else (frozenset(), [])
    return ExportContents(parts[0].path, parts[0].task, list(merged.values()))


def _check_task(r: Any, where: str) -> None:
    """The shape of one task of Label Studio's JSON export, before any field is used."""
    hint = "export with the JSON format (not JSON-MIN or CSV)"
    if not isinstance(r, dict) or not isinstance(r.get("data"), dict):
        raise AnnotateError(f"{where} is not a task with a 'data' object and 'annotations'; {hint}")
    anns = r.get("annotations")
    if anns is not None and not isinstance(anns, list):
        raise AnnotateError(f"{where}: 'annotations' must be a list; {hint}")
    for j, ann in enumerate(anns or []):
        at = f"{where} annotation {j}"
        if not isinstance(ann, dict):
            raise AnnotateError(f"{at}: must be an object; {hint}")
        who = ann.get("completed_by")
        if who is not None and not isinstance(who, (str, int, dict)) or isinstance(who, bool):
            raise AnnotateError(f"{at}: 'completed_by' must be a user id or object")
        result = ann.get("result")
        if result is not None and not isinstance(result, list):
            raise AnnotateError(f"{at}: 'result' must be a list")
        for item in result or []:
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(item, dict) or (value is not None and not isinstance(value, dict)):
                raise AnnotateError(f"{at}: each 'result' item must be an object with a 'value' object")
            choices = (value or {}).get("choices")
            if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
                raise AnnotateError(f"{at}: 'choices' must be a list of label strings")


def _labels(spec: Task, ann: dict, path: Path, task_id: Any, sid: str, who: str) -> list[str]:
    out = []
    for value in results_choices(ann.get("result") or [], spec):
        label = canonical_label(spec, value)
        if label is None:
            raise AnnotateError(
                f"{path}: task {task_id} (sample {sid!r}): unknown label {value!r} from {who}; "
                f"the {spec.name} task allows: {', '.join(spec.labels)}"
            )
        out.append(label)
    return out
