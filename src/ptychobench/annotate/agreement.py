"""How far experts agree with each other, and with a dataset's labels.

Over the task's scored labels (as everywhere in this project, "No obvious artifacts" is
left out: it is the absence of the others), from a Label Studio export:

- per label: Cohen's kappa of every pair of annotators on the samples both labelled,
  averaged over the pairs; Krippendorff's alpha (nominal, missing ratings allowed) over
  all annotators. Kappa and alpha correct for chance, which matters here: most labels are
  absent from most images, so raw agreement would look high for any two people.
- overall: Krippendorff's alpha over every (sample, label) decision.
- per pair: micro-F1 between the two annotators (symmetric) and kappa pooled over labels.
- against a dataset (``--against``): each annotator's labels, and their consensus, as the
  reference, and the dataset's labels scored against them with the project's own metrics
  (micro precision / recall / F1 and its bootstrap CI). Precision is then the share of
  the dataset's labels the experts confirm, recall the share of what the experts saw that
  the dataset has. Per label, kappa between the consensus and the dataset.

Kappa or alpha is ``None`` ("n/a") where it is undefined: a label nobody (or everybody)
ticked has no disagreement to correct for chance. So is an F1 where neither side ticked
any scored label.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from ..data import Dataset
from ..eval.metrics import binarize, score
from ..files import write_atomic
from ..tasks import get_task
from .errors import AnnotateError
from .export import safe_name
from .load import ExportContents, LabelledTask

CONSENSUS = "consensus"


def kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two binary vectors; None when undefined (no variation at all)."""
    if len(a) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(a, b, labels=[0, 1], replace_undefined_by=np.nan)
    return None if np.isnan(k) else float(k)


def alpha(reliability: np.ndarray) -> float | None:
    """Krippendorff's alpha (nominal) of an annotators x units matrix with NaN = not rated."""
    import krippendorff

    pairable = (~np.isnan(reliability)).sum(0) >= 2
    if pairable.sum() == 0:
        return None
    try:
        a = krippendorff.alpha(reliability_data=reliability[:, pairable], level_of_measurement="nominal")
    except ValueError:  # a single value in the whole domain: alpha is undefined
        return None
    return None if np.isnan(a) else float(a)


@dataclass
class Agreement:
    task: str
    labels: list[str]
    annotators: list[str]
    n_samples: int
    alpha: float | None
    per_label: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    against: list[dict[str, Any]] = field(default_factory=list)
    against_dataset: str | None = None
    unmatched: list[str] = field(default_factory=list)
    skipped: int = 0
    unannotated: int = 0
    #: every skip a rater pressed, on tasks others labelled too (a missing rating each)
    skips: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _micro_f1(a: list[frozenset[str]], b: list[frozenset[str]], labels: list[str]) -> float | None:
    """Micro-F1 between two label-set lists (the project's metric); None when neither side
    ticked any scored label, where F1 is undefined (both saw "No obvious artifacts")."""
    if not (binarize(a, labels).any() or binarize(b, labels).any()):
        return None
    return score(a, b, labels, ci=False).micro_f1


def _matrices(items: list[LabelledTask], annotators: list[str], labels: list[str]) -> np.ndarray:
    """annotators x samples x labels, NaN where an annotator did not label a sample."""
    m = np.full((len(annotators), len(items), len(labels)), np.nan)
    for a, who in enumerate(annotators):
        for i, it in enumerate(items):
            if who in it.labels_by:
                m[a, i] = binarize([it.labels_by[who]], labels)[0]
    return m


def _match(items: list[LabelledTask], dataset: Dataset, task: str) -> tuple[dict[str, frozenset[str]], list[str]]:
    """Dataset labels per export sample id: by sample id, else by the image's file stem."""
    samples = [s for sp in dataset.split_names(task) for s in dataset.samples(task, sp)]
    if not samples:
        raise AnnotateError(f"{dataset.root}: dataset {dataset.name!r} has no {task} task to compare with")
    keys: dict[str, frozenset[str]] = {}
    for s in samples:
        for key in (s.id, safe_name(s.id), s.image.stem if s.image else None):
            if key:
                keys.setdefault(key, s.labels)
    found, unmatched = {}, []
    for it in items:
        for key in (it.sample_id, safe_name(it.sample_id)):
            if key in keys:
                found[it.sample_id] = keys[key]
                break
        else:
            unmatched.append(it.sample_id)
    if not found:
        raise AnnotateError(
            f"{dataset.root}: none of the export's {len(items)} samples is in dataset "
            f"{dataset.name!r} (matched by sample id and image name)"
        )
    return found, unmatched


def measure(
    contents: ExportContents, against: Dataset | None = None, seed: int = 0, n_resamples: int = 10_000
) -> Agreement:
    """Every figure of the module doc for one export."""
    spec = get_task(contents.task)
    labels = list(spec.scored_labels)
    items = contents.labelled
    if not items:
        raise AnnotateError(f"{contents.path}: no task has a submitted annotation; nothing to measure")
    annotators = sorted({w for it in items for w in it.labels_by}, key=contents.annotators.index)
    m = _matrices(items, annotators, labels)
    pairs: list[dict[str, Any]] = []
    kappas: dict[str, list[float | None]] = {label: [] for label in labels}
    for (ia, a), (ib, b) in itertools.combinations(enumerate(annotators), 2):
        both = ~np.isnan(m[ia, :, 0]) & ~np.isnan(m[ib, :, 0])
        ya, yb = m[ia, both].astype(int), m[ib, both].astype(int)
        row: dict[str, Any] = {"a": a, "b": b, "n": int(both.sum()), "micro_f1": None, "kappa": None}
        if both.any():
            sets_a = [it.labels_by[a] for it, ok in zip(items, both) if ok]
            sets_b = [it.labels_by[b] for it, ok in zip(items, both) if ok]
            row["micro_f1"] = _micro_f1(sets_a, sets_b, labels)
            row["kappa"] = kappa(ya.ravel(), yb.ravel())
            for j, label in enumerate(labels):
                kappas[label].append(kappa(ya[:, j], yb[:, j]))
        pairs.append(row)
    per_label = []
    for j, label in enumerate(labels):
        ks = [k for k in kappas[label] if k is not None]
        per_label.append(
            {
                "label": label,
                "ticks": int(np.nansum(m[:, :, j])),
                "kappa": float(np.mean(ks)) if ks else None,
                "alpha": alpha(m[:, :, j]) if len(annotators) > 1 else None,
            }
        )
    overall = alpha(m.reshape(len(annotators), -1)) if len(annotators) > 1 else None
    result = Agreement(
        spec.name,
        labels,
        annotators,
        len(items),
        overall,
        per_label,
        pairs,
        skipped=len(contents.skipped),
        unannotated=len(contents.unannotated),
        skips=sum(len(it.skipped_by) for it in contents.items),
    )
    if against is not None:
        _against(result, items, annotators, against, labels, seed, n_resamples)
    return result


def _against(
    result: Agreement,
    items: list[LabelledTask],
    annotators: list[str],
    dataset: Dataset,
    labels: list[str],
    seed: int,
    n_resamples: int,
) -> None:
    gold_ds, unmatched = _match(items, dataset, result.task)
    result.against_dataset, result.unmatched = dataset.name, unmatched
    matched = [it for it in items if it.sample_id in gold_ds]
    for who in [*annotators, CONSENSUS]:
        mine = [it for it in matched if who == CONSENSUS or who in it.labels_by]
        if not mine:
            continue
        expert = [it.consensus if who == CONSENSUS else it.labels_by[who] for it in mine]
        ds_labels = [gold_ds[it.sample_id] for it in mine]
        if _micro_f1(expert, ds_labels, labels) is None:
            result.against.append(
                {
                    "annotator": who,
                    "n": len(mine),
                    "precision": None,
                    "recall": None,
                    "micro_f1": None,
                    "micro_f1_ci": None,
                }
            )
            continue
        s = score(expert, ds_labels, labels, ci=True, seed=seed, n_resamples=n_resamples)
        result.against.append(
            {
                "annotator": who,
                "n": s.n,
                "precision": s.micro_precision,
                "recall": s.micro_recall,
                "micro_f1": s.micro_f1,
                "micro_f1_ci": list(s.micro_f1_ci) if s.micro_f1_ci else None,
            }
        )
    cons = binarize([it.consensus for it in matched], labels)
    ds = binarize([gold_ds[it.sample_id] for it in matched], labels)
    for j, row in enumerate(result.per_label):
        row["kappa_vs_dataset"] = kappa(cons[:, j], ds[:, j])


# --------------------------------------------------------------------------- report


def _fmt(x: float | None, nd: int = 3) -> str:
    from ..report.format import fmt  # the report's number style

    return fmt(x, nd)


def tables(a: Agreement) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table: the terminal and the markdown show the same."""
    out = []
    head = ["label", "ticks", "kappa (mean of pairs)", "alpha"]
    if a.against_dataset:
        head.append(f"kappa consensus vs {a.against_dataset}")
    rows = [
        [r["label"], str(r["ticks"]), _fmt(r["kappa"]), _fmt(r["alpha"])]
        + ([_fmt(r.get("kappa_vs_dataset"))] if a.against_dataset else [])
        for r in a.per_label
    ]
    out.append(
        (
            f"per label ({a.task}, {a.n_samples} samples, {len(a.annotators)} annotators; "
            f"Krippendorff's alpha overall {_fmt(a.alpha)})",
            head,
            rows,
        )
    )
    if a.pairs:
        out.append(
            (
                "between annotators",
                ["annotator A", "annotator B", "samples", "micro-F1", "kappa (pooled)"],
                [[p["a"], p["b"], str(p["n"]), _fmt(p["micro_f1"]), _fmt(p["kappa"])] for p in a.pairs],
            )
        )
    if a.against_dataset:
        rows = []
        for r in a.against:
            lo, hi = r["micro_f1_ci"] or (None, None)
            rows.append(
                [
                    r["annotator"],
                    str(r["n"]),
                    _fmt(r["precision"]),
                    _fmt(r["recall"]),
                    _fmt(r["micro_f1"]),
                    f"[{_fmt(lo)}, {_fmt(hi)}]",
                ]
            )
        out.append(
            (
                f"dataset {a.against_dataset} scored against the experts (reference = annotator)",
                ["annotator", "samples", "precision", "recall", "micro-F1", "95% CI"],
                rows,
            )
        )
    return out


def to_markdown(a: Agreement, source: str) -> str:
    from ..report.tables import md_table as _md_table

    lines = [
        f"# Annotator agreement: {source}",
        "",
        f"Task {a.task}; {a.n_samples} labelled samples; annotators: {', '.join(a.annotators)}; "
        f"{a.skips} skip(s) pressed by raters (each a missing rating); {a.skipped} task(s) skipped by "
        f"everyone and {a.unannotated} unannotated not counted. "
        'Scored labels only ("No obvious artifacts" is left out).',
    ]
    if a.unmatched:
        lines.append(f"{len(a.unmatched)} samples are not in {a.against_dataset}: {', '.join(a.unmatched[:10])}")
    for title, head, rows in tables(a):
        lines += ["", f"## {title}", "", _md_table(head, rows)]
    return "\n".join(lines) + "\n"


def write(a: Agreement, out: Path, source: str) -> list[Path]:
    import json

    if out.exists() and not out.is_dir():
        raise AnnotateError(f"{out}: --out is a file; give a folder for agreement.md and agreement.json")
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "agreement.md", out / "agreement.json"
    write_atomic(md, to_markdown(a, source))
    write_atomic(js, json.dumps({"source": source, **a.as_dict()}, indent=1) + "\n")
    return [md, js]
