"""A blind review of a dataset's labels by one rater, without Label Studio.

Why: the labels are only worth what a ptychographer would sign (issue 11). A rater who
sees the dataset's labels anchors on them, so the review is blind:

1. :func:`write_sheets` draws ``n`` random images of one split, seeded, and writes contact
   sheets (PNG, ``cols x rows`` images each, every image at least 256 px, a number under
   it and nothing else: no label, no id, no file name) and ``review.csv`` with columns
   ``number,sample_id,labels``, ``labels`` empty. The rater looks only at the sheets and
   fills ``labels`` with ``;``-separated label names of the task's label space (for
   artifacts, ``No obvious artifacts`` where nothing is wrong). The CSV's number -> id
   mapping is fine to keep in it: the rater reads numbers off the sheets, never the ids.
2. :func:`score_review` reads the filled CSV, refuses a label outside the task's space
   (naming the CSV, the row and the label), and compares the rater with the dataset:
   per label, how often both / only the dataset / only the rater chose it and Cohen's
   kappa (:func:`.agreement.kappa`); micro-F1 between the two label-set lists; and the
   share of the dataset's assigned labels the rater also chose ("visibly right": the
   dataset's micro-precision with the rater as reference), with bootstrap CIs.
   :func:`to_markdown` writes it as a section for ``validation.md``.

As everywhere in this project, micro-F1 and "visibly right" count the scored labels
("No obvious artifacts" is the absence of the others); the per-label table also shows
"No obvious artifacts", marked unscored.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, Sample
from ..eval.metrics import binarize, score
from ..tasks import Task, get_task
from .agreement import kappa
from .config import canonical_label
from .errors import AnnotateError

COLUMNS = ("number", "sample_id", "labels")
CSV_NAME = "review.csv"
#: issue 11's targets: share of the dataset's labels visibly right, and micro-F1 with a rater
TARGET_VISIBLY_RIGHT = 0.85
TARGET_MICRO_F1 = 0.80


# --------------------------------------------------------------------------- sheets


@dataclass
class SheetSet:
    out: Path
    sheets: list[Path]
    csv: Path
    samples: list[Sample]


def draw(dataset: Dataset, task: str, split: str, n: int, seed: int) -> list[Sample]:
    """``n`` samples of ``task``/``split`` drawn at random (seeded; order = review number)."""
    spec = get_task(task)
    if spec.modality != "image":
        raise AnnotateError(f"--task {task}: review sheets show images; the {task} task is {spec.modality}")
    pool = sorted(dataset.samples(task, split), key=lambda s: s.id)
    if n < 1:
        raise AnnotateError(f"--n {n}: draw at least one image")
    if n > len(pool):
        raise AnnotateError(
            f"--n {n}: dataset {dataset.name!r} has only {len(pool)} {task}/{split} images; ask for at most {len(pool)}"
        )
    return random.Random(f"review-{seed}").sample(pool, n)


def _tile(image: Path, size: int) -> Any:
    """The image as an RGB tile of ``size`` px on its long side: enlarged pixel by pixel
    (nearest), so no smoothing is added that a rater could take for blur; reduced with
    Lanczos."""
    from PIL import Image

    with Image.open(image) as f:
        im = f.convert("RGB")
        scale = size / max(im.size)
        new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        return im.resize(new, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)


def sample_image(s: Sample) -> Path:
    assert s.image is not None  # image tasks always have one (checked on load)
    return s.image


def refuse_old_sheets(out: Path) -> None:
    """Old sheets beside new ones would number other images: one clear error instead."""
    old = sorted(out.glob("sheet-*.png")) if out.is_dir() else []
    if old:
        raise AnnotateError(f"{old[0]}: sheets of an earlier review are in {out}; choose another --out")


def render_sheets(images: list[Path], out: Path, *, cols: int, rows: int, size: int = 256) -> list[Path]:
    """Contact sheets ``sheet-01.png ...`` in ``out``: ``cols x rows`` images each, in the
    given order, numbered 1, 2, ... under each tile and carrying nothing else (no name,
    no id, no label; the PNG holds no text chunk either)."""
    from PIL import Image, ImageDraw, ImageFont

    if size < 256:
        raise AnnotateError(f"size {size}: review images are shown at 256 px or more")
    try:
        font: Any = ImageFont.load_default(size=max(16, size // 10))
    except TypeError:  # Pillow < 10.1: the small bitmap font, still legible
        font = ImageFont.load_default()
    caption = size // 6
    pad = 8
    per = cols * rows
    sheets = []
    for first in range(0, len(images), per):
        batch = images[first : first + per]
        used_rows = (len(batch) + cols - 1) // cols
        sheet = Image.new("RGB", (cols * (size + pad) + pad, used_rows * (size + caption + pad) + pad), "white")
        draw_ = ImageDraw.Draw(sheet)
        for i, image in enumerate(batch):
            x = pad + (i % cols) * (size + pad)
            y = pad + (i // cols) * (size + caption + pad)
            tile = _tile(image, size)
            sheet.paste(tile, (x + (size - tile.width) // 2, y + (size - tile.height) // 2))
            number = str(first + i + 1)
            draw_.text((x + size // 2, y + size + caption // 2), number, fill="black", font=font, anchor="mm")
        path = out / f"sheet-{first // per + 1:02d}.png"
        sheet.save(path)
        sheets.append(path)
    return sheets


def write_sheets(
    dataset: Dataset,
    out: Path | str,
    *,
    n: int = 60,
    seed: int = 0,
    split: str = "test",
    task: str = "artifacts",
    cols: int = 4,
    rows: int = 3,
    size: int = 256,
) -> SheetSet:
    """Contact sheets ``sheet-01.png ...`` and an empty ``review.csv`` under ``out`` (module doc).
    Refuses a folder that already holds a review (``review.csv``: it may hold a rater's
    work; ``sheet-*.png``: old sheets beside new ones would number other images)."""
    if size < 256:
        raise AnnotateError(f"size {size}: review images are shown at 256 px or more")
    samples = draw(dataset, task, split, n, seed)
    out = Path(out)
    table = out / CSV_NAME
    if table.exists():
        raise AnnotateError(f"{table}: already exists (it may hold a rater's labels); choose another --out")
    refuse_old_sheets(out)
    out.mkdir(parents=True, exist_ok=True)
    sheets = render_sheets([sample_image(s) for s in samples], out, cols=cols, rows=rows, size=size)
    with table.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i, s in enumerate(samples, 1):
            w.writerow([i, s.id, ""])
    about = {
        "dataset": dataset.name,
        "content_hash": dataset.manifest.get("content_hash"),
        "task": task,
        "split": split,
        "n": n,
        "seed": seed,
        "sheets": [p.name for p in sheets],
        "labels": list(get_task(task).labels),
        "how": "fill the labels column of review.csv with ';'-separated labels, looking only at the sheets",
    }
    (out / "review.json").write_text(json.dumps(about, indent=1) + "\n", encoding="utf-8")
    return SheetSet(out, sheets, table, samples)


# --------------------------------------------------------------------------- scoring


@dataclass
class Review:
    dataset: str
    task: str
    csv: str
    n: int
    labels: list[str]  # every label of the task, in its order
    scored: list[str]
    per_label: list[dict[str, Any]]
    micro_f1: float
    micro_f1_ci: tuple[float, float] | None
    visibly_right: float  # share of the dataset's scored labels the rater also chose
    visibly_right_counts: tuple[int, int]  # (chosen by both, assigned by the dataset)
    rater_seen: float  # share of the rater's scored labels the dataset has
    exact: int  # samples whose whole label sets agree
    mean_kappa: float | None
    splits: dict[str, int] = field(default_factory=dict)


def parse_labels(task: Task, text: str, where: str) -> frozenset[str]:
    out = set()
    for part in text.split(";"):
        if not part.strip():
            continue
        label = canonical_label(task, part)
        if label is None:
            raise AnnotateError(
                f"{where}: unknown label {part.strip()!r}; the {task.name} task's labels: {'; '.join(task.labels)}"
            )
        out.add(label)
    return frozenset(out)


def read_csv(path: Path, what: str) -> tuple[list[dict[str, str]], list[str] | None]:
    """A rater's CSV as rows and header; a missing or unreadable file is one clear error
    naming it (the review sheets and the rating panel read the same way)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            return list(reader), list(reader.fieldnames) if reader.fieldnames is not None else None
    except FileNotFoundError:
        raise AnnotateError(f"{path}: no such {what} file") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise AnnotateError(f"{path}: not a readable CSV ({e})") from None


def read_review(path: Path | str, dataset: Dataset, task: str) -> list[tuple[Sample, frozenset[str]]]:
    """The rater's labels per sample, every row checked (one error naming CSV, row and fault)."""
    path = Path(path)
    spec = get_task(task)
    by_id = {s.id: s for sp in dataset.split_names(task) for s in dataset.samples(task, sp)}
    rows, header = read_csv(path, "review")
    if header is None or not set(COLUMNS) <= set(header):
        raise AnnotateError(f"{path}: expected a header with columns {','.join(COLUMNS)}")
    if not rows:
        raise AnnotateError(f"{path}: no rows; nothing was reviewed")
    out, seen, empty = [], set(), []
    for lineno, row in enumerate(rows, 2):  # line 1 is the header
        where = f"{path}: row {lineno} (number {row.get('number')})"
        sid = (row.get("sample_id") or "").strip()
        if sid not in by_id:
            raise AnnotateError(f"{where}: sample {sid!r} is not in the {task} task of dataset {dataset.name!r}")
        if sid in seen:
            raise AnnotateError(f"{where}: sample {sid!r} is listed twice")
        seen.add(sid)
        labels = parse_labels(spec, row.get("labels") or "", where)
        if not labels:
            empty.append(str(lineno))
        out.append((by_id[sid], labels))
    if empty:
        none = " (or 'No obvious artifacts')" if task == "artifacts" else ""
        raise AnnotateError(
            f"{path}: {len(empty)} row(s) have no labels (rows {', '.join(empty[:10])}); "
            f"write the labels you see{none} in each"
        )
    return out


def score_review(path: Path | str, dataset: Dataset, task: str = "artifacts", seed: int = 0) -> Review:
    """The rater against the dataset (module doc)."""
    spec = get_task(task)
    pairs = read_review(path, dataset, task)
    rater = [labels for _, labels in pairs]
    gold = [s.labels for s, _ in pairs]
    labels, scored = list(spec.labels), list(spec.scored_labels)
    r, d = binarize(rater, labels), binarize(gold, labels)
    per_label: list[dict[str, Any]] = []
    for j, label in enumerate(labels):
        per_label.append(
            {
                "label": label,
                "scored": label in scored,
                "both": int((r[:, j] & d[:, j]).sum()),
                "only_dataset": int((d[:, j] & (1 - r[:, j])).sum()),
                "only_rater": int((r[:, j] & (1 - d[:, j])).sum()),
                "kappa": kappa(r[:, j], d[:, j]),
            }
        )
    # the rater is the reference: precision = share of the dataset's labels the rater chose
    s = score(rater, gold, scored, ci=True, seed=seed)
    rs, ds_ = binarize(rater, scored), binarize(gold, scored)
    ks = [row["kappa"] for row in per_label if row["scored"] and row["kappa"] is not None]
    splits: dict[str, int] = {}
    for sample, _ in pairs:
        splits[sample.split] = splits.get(sample.split, 0) + 1
    return Review(
        dataset=dataset.name,
        task=task,
        csv=str(path),
        n=len(pairs),
        labels=labels,
        scored=scored,
        per_label=per_label,
        micro_f1=s.micro_f1,
        micro_f1_ci=s.micro_f1_ci,
        visibly_right=s.micro_precision,
        visibly_right_counts=(int((rs & ds_).sum()), int(ds_.sum())),
        rater_seen=s.micro_recall,
        exact=int((r == d).all(axis=1).sum()),
        mean_kappa=float(np.mean(ks)) if ks else None,
        splits=splits,
    )


def _fmt(x: float | None, nd: int = 3) -> str:
    from ..report.format import fmt

    return fmt(x, nd)


def table(review: Review) -> tuple[list[str], list[list[str]]]:
    """The per-label table (header, rows): the terminal and the markdown show the same."""
    head = ["label", "both", "only dataset", "only rater", "Cohen's kappa"]
    rows = [
        [
            row["label"] + ("" if row["scored"] else " (not scored)"),
            str(row["both"]),
            str(row["only_dataset"]),
            str(row["only_rater"]),
            _fmt(row["kappa"]),
        ]
        for row in review.per_label
    ]
    return head, rows


def summary_lines(review: Review) -> list[str]:
    both, assigned = review.visibly_right_counts
    lo, hi = review.micro_f1_ci or (None, None)

    def met(value: float, target: float) -> str:
        return "met" if value >= target else "missed"

    splits = ", ".join(f"{n} {sp}" for sp, n in sorted(review.splits.items()))
    return [
        f"Blind review of {review.n} {review.task} images of {review.dataset} ({splits}); rater's labels in "
        f"`{Path(review.csv).name}`, chosen from the images alone.",
        f"- visibly right: {both} of the dataset's {assigned} labels ({_fmt(review.visibly_right, 2)}) were also "
        f"chosen by the rater (target >= {TARGET_VISIBLY_RIGHT:.2f}: "
        f"{met(review.visibly_right, TARGET_VISIBLY_RIGHT)})",
        f"- micro-F1 between the dataset's and the rater's labels: {_fmt(review.micro_f1)} "
        f"[{_fmt(lo)}, {_fmt(hi)}] (target >= {TARGET_MICRO_F1:.2f}: {met(review.micro_f1, TARGET_MICRO_F1)})",
        f"- the dataset has {_fmt(review.rater_seen, 2)} of the rater's labels; whole label sets agree on "
        f"{review.exact} of {review.n} images; mean per-label kappa {_fmt(review.mean_kappa)}",
        '- micro-F1, "visibly right" and the mean kappa count the scored labels ("No obvious artifacts" left out)',
    ]


def to_markdown(review: Review) -> str:
    from ..report.tables import md_table

    head, rows = table(review)
    return "\n".join(["## Blind review", "", *summary_lines(review), "", md_table(head, rows)]) + "\n"
