"""A blind rating panel: several raters rate the same numbered images; their majority is
the calibration truth the labeller is fitted to (issue 24).

Why a packet and a separate key: a rater who sees an id, a split, a specimen kind or a
label anchors on it. So:

1. :func:`write_packet` puts every artifact image of a dataset (or ``n`` of them drawn at
   random), in a seeded random order, on numbered contact sheets (``cols x rows`` per
   sheet, 256 px, the number under each tile and nothing else; :func:`.review.render_sheets`),
   with the rater brief (``BRIEF.md``: :func:`rater_brief` plus this packet's numbers) and
   an answer template (``ratings-template.csv``: ``number,labels``, labels empty). The
   number -> sample id key goes to a CSV *outside* the packet folder (a key inside it is
   refused), with a JSON beside it naming the dataset, its content hash and the draw.
2. :func:`read_ratings` reads one rater's CSV (``number,labels``): every number of the
   packet exactly once, every label in the task's space (any spelling the space knows),
   "No obvious artifacts" alone; anything else is one error naming the file and the row.
3. :func:`panel` joins the key and the raters' files (rater name = file stem) into the
   shape :mod:`.agreement` measures (one :class:`.load.LabelledTask` per sample, each
   rater's labels and the strict-majority consensus of :func:`.load.consensus`), so
   pairwise micro-F1, per-label kappa and Krippendorff's alpha come from one place.
   :func:`write_majority` writes the consensus per sample (``sample_id,labels,votes``).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..data import Dataset, Sample
from ..tasks import NO_ARTIFACTS, get_task
from .errors import AnnotateError
from .load import ExportContents, LabelledTask, consensus
from .review import parse_labels, read_csv, refuse_old_sheets, render_sheets, sample_image

TASK = "artifacts"
KEY_COLUMNS = ("number", "sample_id")
RATING_COLUMNS = ("number", "labels")
BRIEF_NAME = "BRIEF.md"
TEMPLATE_NAME = "ratings-template.csv"


def rater_brief() -> str:
    """The rater brief shipped with the package (``annotate/rater_brief.md``)."""
    return resources.files("ptychobench.annotate").joinpath("rater_brief.md").read_text(encoding="utf-8")


@dataclass
class Packet:
    out: Path
    key: Path
    sheets: list[Path]
    samples: list[Sample]
    per_sheet: int


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def draw_all(
    dataset: Dataset, n: int | None, seed: int, splits: list[str] | None = None, exclude: frozenset[str] = frozenset()
) -> list[Sample]:
    """The artifact images of ``splits`` (default: every split) but the ``exclude`` ids,
    shuffled (seeded); the first ``n`` of them when ``n`` is given. Shuffled so that
    neither a split nor an id order shows in the numbers."""
    names = splits or dataset.split_names(TASK)
    unknown = sorted(set(names) - set(dataset.split_names(TASK)))
    if unknown:
        raise AnnotateError(
            f"--split {unknown[0]}: dataset {dataset.name!r} has {TASK} splits {', '.join(dataset.split_names(TASK))}"
        )
    pool = sorted((s for sp in names for s in dataset.samples(TASK, sp) if s.id not in exclude), key=lambda s: s.id)
    if not pool:
        raise AnnotateError(f"{dataset.root}: dataset {dataset.name!r} has no {TASK} images to rate")
    if n is not None and not 1 <= n <= len(pool):
        raise AnnotateError(
            f"--n {n}: dataset {dataset.name!r} has {len(pool)} {TASK} images; ask for 1 to {len(pool)}"
        )
    random.Random(f"panel-{seed}").shuffle(pool)
    return pool[:n] if n is not None else pool


def write_packet(
    dataset: Dataset,
    out: Path | str,
    key: Path | str,
    *,
    n: int | None = None,
    seed: int = 0,
    splits: list[str] | None = None,
    exclude_keys: Sequence[Path | str] = (),
    cols: int = 3,
    rows: int = 3,
    size: int = 256,
) -> Packet:
    """The packet in ``out`` and the key at ``key`` (module doc). ``exclude_keys``: keys of
    earlier packets whose images are left out (a panel rated in parts, each part's images
    new). Refuses a key inside the packet, an existing key (it may belong to a packet
    already rated) and old sheets."""
    out, key = Path(out), Path(key)
    if _inside(key, out):
        raise AnnotateError(f"{key}: the key must be outside the packet folder {out} (raters see that folder)")
    if key.exists():
        raise AnnotateError(f"{key}: already exists (it may be the key of a rated packet); choose another --key")
    refuse_old_sheets(out)
    excluded = frozenset(sid for k in exclude_keys for sid in read_key(k))
    samples = draw_all(dataset, n, seed, splits, excluded)
    out.mkdir(parents=True, exist_ok=True)
    sheets = render_sheets([sample_image(s) for s in samples], out, cols=cols, rows=rows, size=size)
    per = cols * rows
    facts = (
        f"\n## This packet\n\n{len(samples)} images, numbered 1 to {len(samples)}, on {len(sheets)} sheets "
        f"(`{sheets[0].name}` to `{sheets[-1].name}`), {per} per sheet ({cols} across, {rows} down; the last "
        f"sheet may hold fewer). `{TEMPLATE_NAME}` lists every number with the labels left empty: fill it in "
        f"and save it under the name you were given. Your file must have {len(samples)} rows after the header.\n"
    )
    (out / BRIEF_NAME).write_text(rater_brief() + facts, encoding="utf-8")
    with (out / TEMPLATE_NAME).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(RATING_COLUMNS)
        w.writerows([i, ""] for i in range(1, len(samples) + 1))
    key.parent.mkdir(parents=True, exist_ok=True)
    with key.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(KEY_COLUMNS)
        w.writerows([i, s.id] for i, s in enumerate(samples, 1))
    about = {
        "dataset": dataset.name,
        "dataset_root": str(dataset.root),
        "content_hash": dataset.manifest.get("content_hash"),
        "task": TASK,
        "splits": splits or dataset.split_names(TASK),
        "n": len(samples),
        "seed": seed,
        "excluded_keys": [str(k) for k in exclude_keys],
        "packet": str(out),
        "sheets": [p.name for p in sheets],
        "per_sheet": per,
    }
    key.with_suffix(".json").write_text(json.dumps(about, indent=1) + "\n", encoding="utf-8")
    return Packet(out, key, sheets, samples, per)


def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> list[dict[str, str]]:
    rows, header = read_csv(path, what)
    if header is None or [h.strip() for h in header] != list(columns):
        raise AnnotateError(f"{path}: expected the header {','.join(columns)} (got {','.join(header or [])})")
    if not rows:
        raise AnnotateError(f"{path}: no rows")
    return rows


def _number(value: str | None, where: str, n: int) -> int:
    try:
        i = int((value or "").strip())
    except ValueError:
        raise AnnotateError(f"{where}: number {value!r} is not a whole number") from None
    if not 1 <= i <= n:
        raise AnnotateError(f"{where}: number {i} is outside the packet's 1..{n}")
    return i


def read_key(path: Path | str) -> list[str]:
    """Sample ids by number (index 0 = number 1), checked: numbers 1..n once each."""
    path = Path(path)
    rows = _read_csv(path, KEY_COLUMNS, "key")
    ids: dict[int, str] = {}
    for lineno, row in enumerate(rows, 2):
        i = _number(row["number"], f"{path}: row {lineno}", len(rows))
        if i in ids:
            raise AnnotateError(f"{path}: row {lineno}: number {i} is listed twice")
        ids[i] = (row["sample_id"] or "").strip()
    return [ids[i] for i in range(1, len(rows) + 1)]


def read_ratings(path: Path | str, n: int) -> list[frozenset[str]]:
    """One rater's labels by number (index 0 = number 1); the module doc's checks."""
    path = Path(path)
    task = get_task(TASK)
    rows = _read_csv(path, RATING_COLUMNS, "ratings")
    by_number: dict[int, frozenset[str]] = {}
    for lineno, row in enumerate(rows, 2):
        where = f"{path}: row {lineno}"
        i = _number(row["number"], where, n)
        if i in by_number:
            raise AnnotateError(f"{where}: number {i} is rated twice")
        labels = parse_labels(task, row["labels"] or "", f"{where} (number {i})")
        if not labels:
            raise AnnotateError(f"{where} (number {i}): no labels; write the labels you see, or {NO_ARTIFACTS!r}")
        if NO_ARTIFACTS in labels and len(labels) > 1:
            raise AnnotateError(f"{where} (number {i}): {NO_ARTIFACTS!r} together with an artifact; choose one")
        by_number[i] = labels
    missing = [str(i) for i in range(1, n + 1) if i not in by_number]
    if missing:
        raise AnnotateError(
            f"{path}: {len(missing)} of the packet's {n} numbers are not rated ({', '.join(missing[:10])})"
        )
    return [by_number[i] for i in range(1, n + 1)]


def panel(key: Path | str, ratings: Sequence[Path | str]) -> ExportContents:
    """Every rater's labels and the majority per sample (module doc), as :mod:`.agreement`
    reads them. Raters are named by their file's stem, which must differ."""
    key = Path(key)
    ids = read_key(key)
    paths = [Path(p) for p in ratings]
    if not paths:
        raise AnnotateError(f"{key}: no ratings files given")
    names = [p.stem for p in paths]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise AnnotateError(f"{dup[0]}: two ratings files share this name; name each rater's file differently")
    by_rater = {name: read_ratings(p, len(ids)) for name, p in zip(names, paths)}
    items = []
    for i, sid in enumerate(ids):
        labels_by = {name: r[i] for name, r in by_rater.items()}
        cons, ties = consensus(labels_by)
        if not cons:  # every artifact short of a majority: the majority saw none
            cons = frozenset({NO_ARTIFACTS})
        items.append(LabelledTask(i + 1, sid, {"number": i + 1}, labels_by, [], cons, ties))
    return ExportContents(key, TASK, items)


def write_majority(contents: ExportContents, path: Path | str) -> Path:
    """``sample_id,labels,votes``: the panel's majority labels (``;``-separated) and, for
    each label anyone chose, its votes out of the raters (``Blurring 2/3; ...``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    task = get_task(TASK)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("sample_id", "labels", "votes"))
        for it in contents.items:
            votes = {lab: sum(lab in v for v in it.labels_by.values()) for lab in task.labels}
            w.writerow(
                (
                    it.sample_id,
                    ";".join(lab for lab in task.labels if lab in it.consensus),
                    "; ".join(f"{lab} {v}/{len(it.labels_by)}" for lab, v in votes.items() if v),
                )
            )
    return path
