"""A Label Studio JSON export becomes a dataset in this project's format.

Each labelled task becomes a sample whose ``labels`` are the consensus (rule in
:mod:`.load`) and whose ``metadata["annotate"]`` keeps every annotator's own labels, who
skipped it, the tied labels, the Label Studio task id and, when the task carried them,
the labels the source dataset had (``source_labels``). Skipped and unannotated tasks are
listed in the manifest and returned, so the command can report them.

Splits: a dataset needs a train and a test split. When every task says its split (as
``annotate export`` writes them) and both occur, they are kept; otherwise the samples are
split at random (``test_fraction``, ``seed``; scikit-learn's ``train_test_split``) and
each sample's former split, if any, is kept as ``source_split``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..data import SPLITS, Dataset, Sample, load_dataset, write_dataset
from ..data.dataset import SPLIT_NAME
from ..data.dataset import check_image as _check_image
from ..data.images import UPLOAD_PREFIX, ImageIndex
from ..tasks import get_task
from .config import DATA_FIELD
from .errors import AnnotateError
from .export import unique_safe_names
from .load import CONSENSUS_RULE, ExportContents, LabelledTask, image_ref, read_exports


@dataclass
class ImportResult:
    dataset: Dataset
    contents: ExportContents
    split_rule: str

    @property
    def ties(self) -> list[LabelledTask]:
        return [it for it in self.contents.labelled if it.ties]

    @property
    def no_consensus(self) -> list[LabelledTask]:
        """Labelled tasks whose annotators agreed on no label: not samples (an empty label
        set would read as "nothing there"), listed in the manifest and the summary."""
        return [it for it in self.contents.labelled if not it.consensus]


def _find_image(it: LabelledTask, index: ImageIndex | None, path: Path) -> Path:
    given = (image_ref(it.data.get(DATA_FIELD["artifacts"])), it.data.get("image_file"))
    names = [n for n in given if isinstance(n, str) and n]
    if not names:
        raise AnnotateError(f"{path}: task {it.task_id} (sample {it.sample_id!r}) has no image in its data")
    if index is None:
        raise AnnotateError(
            f"{path}: the tasks show images; pass --images DIR (the folder holding "
            f"{names[0]!r}, e.g. the images/ folder annotate export wrote)"
        )
    found = index.find(names, f"{path}: task {it.task_id} (sample {it.sample_id!r})", AnnotateError)
    if found is not None:
        return found
    raise AnnotateError(
        f"{path}: task {it.task_id} (sample {it.sample_id!r}): image {UPLOAD_PREFIX.sub('', Path(names[0]).name)!r} "
        "not found under the images folder"
    )


def _assign_splits(
    items: list[LabelledTask], test_fraction: float | None, seed: int, path: Path
) -> tuple[dict[str, str], str]:
    given = {it.sample_id: it.data.get("split") for it in items}
    if all(isinstance(s, str) and SPLIT_NAME.match(s) for s in given.values()):
        if set(SPLITS) <= set(given.values()):
            return {k: str(v) for k, v in given.items()}, "the splits the tasks carry"
    if any(isinstance(s, str) for s in given.values()) and test_fraction is None:
        raise AnnotateError(
            f"{path}: the tasks carry the split(s) {sorted({str(s) for s in given.values() if s})} only; "
            "re-splitting would put test samples into train. Export train and test together, compare "
            "them with annotate agreement --against, or pass --test-fraction F to split them anew"
        )
    test_fraction = 0.2 if test_fraction is None else test_fraction
    if len(items) < 2:
        raise AnnotateError(
            f"{path}: {len(items)} labelled task(s); a dataset needs a train and a test sample, so at least 2"
        )
    if not 0 < test_fraction < 1:
        raise AnnotateError(f"--test-fraction {test_fraction}: must be between 0 and 1")
    from sklearn.model_selection import train_test_split

    ids = sorted(given)
    n_test = min(max(1, round(test_fraction * len(ids))), len(ids) - 1)
    train, test = train_test_split(ids, test_size=n_test, random_state=seed)
    return (
        {**{i: "train" for i in train}, **{i: "test" for i in test}},
        f"random, test fraction {test_fraction}, seed {seed}",
    )


def _sample(it: LabelledTask, task: str, sid: str, split: str, image: Path | None) -> Sample:
    spec = get_task(task)
    order = list(spec.labels)
    meta: dict[str, Any] = {
        "annotators": {who: [x for x in order if x in labels] for who, labels in it.labels_by.items()},
        "skipped_by": it.skipped_by,
        "ties": it.ties,
        "task_id": it.task_id,
    }
    if sid != it.sample_id:
        meta["source_id"] = it.sample_id
    if it.data.get("split") and it.data.get("split") != split:
        meta["source_split"] = it.data["split"]
    if isinstance(it.data.get("dataset_labels"), list):
        meta["source_labels"] = it.data["dataset_labels"]
    text = "" if spec.modality == "image" else str(it.data.get(DATA_FIELD[task]) or "")
    return Sample(
        sid,
        split,
        task,
        str(it.data.get("sample_type") or "unknown"),
        text,
        image,
        it.consensus,
        {"sample_type": str(it.data.get("sample_type") or "unknown"), "annotate": meta},
    )


def import_export(
    export: Path | str | Sequence[Path | str],
    out: Path | str,
    images: Path | str | None = None,
    name: str | None = None,
    task: str | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
) -> ImportResult:
    """Read ``export`` (or several, one project per rater: :func:`.load.read_exports`) and
    write the dataset folder ``out`` (see the module doc)."""
    exports = [Path(export)] if isinstance(export, (str, Path)) else [Path(e) for e in export]
    export = exports[0]
    contents = read_exports(exports, task)
    items = [it for it in contents.labelled if it.consensus]
    no_consensus = [it for it in contents.labelled if not it.consensus]
    if not items:
        raise AnnotateError(
            f"{export}: no task has a submitted annotation ({len(contents.skipped)} skipped, "
            f"{len(contents.unannotated)} unannotated); nothing to import"
        )
    spec = get_task(contents.task)
    index = ImageIndex.of(images, AnnotateError) if images is not None else None
    splits, split_rule = _assign_splits(items, test_fraction, seed, export)
    safe = unique_safe_names([it.sample_id for it in items])
    samples = []
    for it in items:
        image = None
        if spec.modality == "image":
            image = _find_image(it, index, export)
            _check_image(image, f"{export}: task {it.task_id}", it.sample_id)
        samples.append(_sample(it, spec.name, safe[it.sample_id], splits[it.sample_id], image))
    info = {
        "export": str(export.resolve()) if len(exports) == 1 else [str(e.resolve()) for e in exports],
        "task": spec.name,
        "consensus_rule": CONSENSUS_RULE,
        "split_rule": split_rule,
        "annotators": contents.annotators,
        "skipped": [
            {"task_id": it.task_id, "sample_id": it.sample_id, "skipped_by": it.skipped_by} for it in contents.skipped
        ],
        "unannotated": [{"task_id": it.task_id, "sample_id": it.sample_id} for it in contents.unannotated],
        "ties": [{"sample_id": safe[it.sample_id], "labels": it.ties} for it in items if it.ties],
        "no_consensus": [
            {"task_id": it.task_id, "sample_id": it.sample_id, "annotators": sorted(it.labels_by)}
            for it in no_consensus
        ],
    }
    out = Path(out)
    write_dataset(
        out,
        name or export.stem,
        "annotated",
        samples,
        description=f"Expert labels imported from the Label Studio export {export.name}",
        extra={"annotate": info},
    )
    return ImportResult(load_dataset(out), contents, split_rule)
