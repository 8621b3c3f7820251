"""Build a PtychoBench-Sim dataset: experiments in parallel, resumable, deterministic.

Layout of a build folder::

    .work/config.json          the build's configuration (a rerun must match it)
    .work/exp-0007.png         rendered reconstruction of experiment 7
    .work/exp-0007.json        its record: experiment, metrics, losses, option trials
    .work/exp-0007.labels.json sim-v3 only: the labeller's decision on it (cached)
    manifest.json, artifacts/, params/   the dataset (written by ptychobench.data)
    validation.md, validation/           the validation report
    released/                  the same data in the authors' chat-JSON format

Each experiment is one work unit, written atomically (temporary file, then rename), so
an interrupted build continues where it stopped when rerun and ends with the same files:
every unit depends only on (seed, index), never on what else ran or in which order.

Two recipes (:data:`RECIPES`): sim-v2 labels artifacts by the thresholds of
:mod:`.labels`; sim-v3 by a labeller fitted to blind raters (``ptychobench.labelling``,
handed in by the caller as an :class:`ImageLabelling`, since it sits above the simulator),
and leaves out of its splits every image on which the labeller is unsure of any label
(the gray zone), running further experiments so the splits keep their sizes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..files import write_atomic
from ..tasks import ARTIFACT_LABELS, NO_ARTIFACTS, PARAM_OPTIONS
from .labels import LABELLING_VERSION

NAME = "sim-v2"
VERSION = "2.0"


@dataclass(frozen=True)
class Recipe:
    """A dataset ``generate`` builds by name: its manifest version, how its artifact
    labels are made (2: thresholds, :mod:`.labels`; 3: a fitted labeller with a gray
    zone) and its manifest description. The physics, the option labels and the splits
    are the same for all."""

    name: str
    version: str
    labelling: int
    description: str


RECIPES = {
    "sim-v2": Recipe(
        "sim-v2",
        VERSION,
        2,
        "PtychoBench-Sim v2: simulated X-ray ptychography experiments with injected defects, "
        "reconstructed with pty-chi LSQML and rendered by a truth-free viewer; artifact labels "
        "measured against the truth and visible in the rendered image, parameter labels verified "
        "by repeated reconstructions. Split by experiment; test-ood holds a held-out instrument. "
        "See docs/dataset.md.",
    ),
    "sim-v3": Recipe(
        "sim-v3",
        "3.0",
        3,
        "PtychoBench-Sim v3: the experiments of sim-v2 (simulated X-ray ptychography with injected "
        "defects, reconstructed with pty-chi LSQML, rendered by a truth-free viewer); artifact labels "
        "from a labeller fitted to a panel of blind vision-language-model raters, images it is unsure "
        "of left out; parameter labels verified by repeated reconstructions. Split by experiment; "
        "test-ood holds a held-out instrument. See docs/dataset.md.",
    ),
}


class ImageLabelling(Protocol):
    """sim-v3's artifact labelling (``ptychobench.labelling.apply.ShippedLabelling``)."""

    version: str
    fingerprint: str  # a cached decision holds for this labelling only

    def rules(self) -> dict[str, Any]: ...

    def decide(self, unit: str, metrics: dict[str, Any], image: Path, experiment: dict[str, Any]) -> dict[str, Any]:
        """``{"labels": [...], "unsure": [...], "probabilities": {...}}`` of one reconstruction."""
        ...


# real data: visual 312 train / 79 test; text 91 train / 44 test
TEST_FRACTION_VISUAL = 79 / 391
TEST_FRACTION_TEXT = 44 / 135
OOD_SPLIT = "test-ood"


@dataclass(frozen=True)
class BuildConfig:
    n_visual: int = 391
    n_text: int = 135
    n_ood_visual: int = 79
    n_ood_text: int = 44
    seed: int = 0
    quick: bool = False
    calibration: bool = False  # seeds disjoint from every shipped build, for thresholds
    name: str = NAME
    labelling: int = 2  # the recipe's (RECIPES): 3 needs an ImageLabelling

    @property
    def scale(self) -> str:
        return "v2-quick" if self.quick else "v2"

    @property
    def text_scale(self) -> str:
        return "v2-text-quick" if self.quick else "v2-text"

    @property
    def recipe(self) -> Recipe:
        return next(r for r in RECIPES.values() if r.labelling == self.labelling)

    def key(self) -> dict:
        d = asdict(self)
        d["scale"] = self.scale
        if self.labelling == 2:  # a sim-v2 build's key (config.json, manifest) stays what it was
            del d["labelling"]
        return d

    def text_units(self, n_main: int, n_ood: int) -> list[str]:
        """The first text-task experiments: ``txtNNNN`` and ``oodtNNNN``. They are
        experiments of their own (no image-task experiment is also a text one), on the
        smaller text geometry, so their many option trials stay affordable."""
        return [f"txt{i:04d}" for i in range(n_main)] + [f"oodt{i:04d}" for i in range(n_ood)]


QUICK = dict(n_visual=12, n_text=3, n_ood_visual=3, n_ood_text=1)


class BuildError(RuntimeError):
    pass


def experiment_for(cfg: BuildConfig, unit: str | int):
    """The experiment of a unit key (an int is a main-pool index, as in sim-v1)."""
    from .defects import draw_experiment
    from .instruments import MAIN_INSTRUMENTS, OOD_INSTRUMENTS

    key = unit if isinstance(unit, str) else f"exp{unit:04d}"
    kind = key.rstrip("0123456789")
    index = int(key[len(kind) :])
    stream = {"exp": 0, "ood": 2, "txt": 3, "oodt": 4}[kind]
    tag = [1] if cfg.calibration else []
    rng = np.random.default_rng([cfg.seed, index, 17, stream, *tag])
    seed = cfg.seed * 1_000_003 + index + 250_000 * stream + (2**40 if cfg.calibration else 0)
    pool = OOD_INSTRUMENTS if kind.startswith("ood") else MAIN_INSTRUMENTS
    scale = cfg.text_scale if kind in ("txt", "oodt") else cfg.scale
    return draw_experiment(index, seed=seed, rng=rng, scale=scale, pool=pool)


def remeasure_units(
    cfg: BuildConfig, out: Path, stale_only: bool = False, labelling: ImageLabelling | None = None
) -> int:
    """Recompute metrics and images of finished units from their stored reconstructions
    (after a change to :mod:`.measure` or :mod:`.labels`); with ``stale_only``, only the
    units measured under another labelling version. Returns how many were updated."""
    import io

    from PIL import Image

    from .labels import artifact_labels
    from .pipeline import remeasure

    work = out / ".work"
    n = 0
    for unit in all_units(cfg, work, labelling):
        js, png = _unit_paths(work, unit)
        npy = js.with_suffix(".npy")
        if not (js.is_file() and npy.is_file()):
            continue
        rec = json.loads(js.read_text())
        if stale_only and rec.get("labelling_version") == LABELLING_VERSION:
            continue
        m, img = remeasure(experiment_for(cfg, unit), rec, np.load(npy))
        rec["metrics"] = m
        rec["artifact_labels"] = sorted(artifact_labels(m))
        rec["labelling_version"] = LABELLING_VERSION
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", optimize=True)
        write_atomic(png, buf.getvalue())
        write_atomic(js, json.dumps(rec, sort_keys=True, indent=0).encode())
        n += 1
    return n


def _unit_paths(work: Path, unit: str) -> tuple[Path, Path]:
    return work / f"{unit}.json", work / f"{unit}.png"


def stored_metrics(m: dict) -> dict:
    """A unit's metrics as the dataset stores them (floats to 4 decimals). The labeller
    was fitted on these stored values, so sim-v3 judges every unit on them too."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}


def _labeller_of(cfg: BuildConfig, labelling: ImageLabelling | None) -> ImageLabelling | None:
    """The labelling a build uses: none for sim-v2's thresholds; sim-v3 refuses to go on without one."""
    if cfg.labelling == 2:
        return None
    if labelling is None:
        raise BuildError(
            f"{cfg.recipe.name} labels with the fitted labeller: build it with `ptychobench generate {cfg.recipe.name}`"
        )
    return labelling


def decision(work: Path, unit: str, labelling: ImageLabelling) -> dict | None:
    """The labeller's decision on a finished unit (None if it failed or is not done),
    cached beside it in ``{unit}.labels.json``. The cache holds for this labeller file,
    these stored metrics and this image only (a refit or a re-measurement decides again),
    so a resumed build decides as a fresh one."""
    import hashlib

    js, png = _unit_paths(work, unit)
    if unit_failed(work, unit) or not (js.is_file() and png.is_file()):
        return None
    rec = json.loads(js.read_text())
    metrics = stored_metrics(rec["metrics"])
    h = hashlib.sha256(labelling.fingerprint.encode())
    h.update(json.dumps(metrics, sort_keys=True).encode())
    h.update(png.read_bytes())
    key = h.hexdigest()
    cache = work / f"{unit}.labels.json"
    old = _read(cache) if cache.is_file() else None
    if old is not None and old.get("key") == key:
        return old
    d = {"key": key, "labelling_version": labelling.version}
    d |= labelling.decide(unit, metrics, png, rec["experiment"])
    write_atomic(cache, json.dumps(d, sort_keys=True, indent=0).encode())
    return d


def left_out(d: dict | None) -> bool:
    """In the gray zone: the labeller is unsure of at least one label."""
    return bool(d and d["unsure"])


def is_image_unit(unit: str) -> bool:
    """An image-task experiment (``exp``/``ood``), not a text-task one (``txt``/``oodt``)."""
    return unit.rstrip("0123456789") in ("exp", "ood")


def _read(js: Path) -> dict | None:
    try:
        return json.loads(js.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def unit_failed(work: Path, unit: str) -> bool:
    """Whether the unit ran and its reconstruction failed (recorded, never retried: the
    same seed fails the same way)."""
    js, png = _unit_paths(work, unit)
    if png.is_file() or not js.is_file():  # a failed unit writes its record only: no read needed
        return False
    rec = _read(js)
    return bool(rec and rec.get("failed"))


def unit_done(work: Path, unit: str, trials: bool) -> bool:
    js, png = _unit_paths(work, unit)
    if unit_failed(work, unit):
        return True
    if not (js.is_file() and png.is_file() and js.with_suffix(".npy").is_file()):
        return False
    if trials:
        rec = _read(js)
        return rec is not None and "trials" in rec
    return True


def run_unit(cfg_key: dict, unit: str, trials: bool, work: str) -> tuple[str, float]:
    """Worker entry point: one experiment, written atomically. Returns (unit, seconds)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import io

    import torch
    from PIL import Image

    from .pipeline import run_experiment

    torch.set_num_threads(1)
    cfg = BuildConfig(**{k: v for k, v in cfg_key.items() if k != "scale"})
    exp = experiment_for(cfg, unit)
    t0 = time.perf_counter()
    js, png = _unit_paths(Path(work), unit)
    try:
        rec, img, obj = run_experiment(exp, trials)
        if not np.isfinite(obj).all():
            raise FloatingPointError("the reconstructed object is not finite")
    except (RuntimeError, ValueError, FloatingPointError) as e:
        # pty-chi diverged on this experiment (e.g. position correction ran away):
        # a finding to count in the report, not a reason to stop the build
        failed = {"experiment": exp.to_dict(), "failed": f"{type(e).__name__}: {str(e)[:300]}"}
        failed["labelling_version"] = LABELLING_VERSION
        write_atomic(js, json.dumps(failed, sort_keys=True, indent=0).encode())
        return unit, time.perf_counter() - t0
    # the reconstruction itself, so metrics and labels can be re-measured without redoing it
    buf = io.BytesIO()
    np.save(buf, obj)
    write_atomic(js.with_suffix(".npy"), buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=True)
    write_atomic(png, buf.getvalue())
    # timings vary run to run; keep them out of the record so outputs are byte-identical
    rec["labelling_version"] = LABELLING_VERSION
    timing = {
        "unit_seconds": rec.pop("unit_seconds"),
        "recon_seconds": rec.pop("recon_seconds"),
        "n_trial_reconstructions": rec.pop("n_trial_reconstructions", 0),
    }
    write_atomic(js, json.dumps(rec, sort_keys=True, indent=0).encode())
    write_atomic(Path(work) / f"timing-{unit}.json", json.dumps(timing).encode())
    return unit, time.perf_counter() - t0


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def _labelled(work: Path, units: list[str]) -> list[str]:
    """Trialled units, in order, whose verified options give a label set."""
    out = []
    for u in units:
        js, _ = _unit_paths(work, u)
        if not unit_done(work, u, True) or unit_failed(work, u):
            continue
        rec = json.loads(js.read_text())
        if option_labels(rec, frozenset(rec["artifact_labels"]))[0]:
            out.append(u)
    return out


def _text_units(cfg: BuildConfig, work: Path) -> list[str]:
    """Text-task experiments to run: the first ones of each pool, extended until enough
    of them have a verified label set (deterministic: always the first ones in order,
    whatever ran before)."""
    counts = []
    for kind, need in (("txt", cfg.n_text), ("oodt", cfg.n_ood_text)):
        n = math.ceil(need * 1.15) + 1 if need else 0
        while need:
            units = [f"{kind}{i:04d}" for i in range(n)]
            if not all(unit_done(work, u, True) for u in units):
                break  # still to run: the next pass decides whether more are needed
            have = len(_labelled(work, units))
            if have >= need:
                break
            n += math.ceil((need - have) * 1.8) + 1
        counts.append(n)
    return cfg.text_units(*counts)


def image_units(cfg: BuildConfig, work: Path, labelling: ImageLabelling | None = None) -> list[str]:
    """Image-task experiments to run, by key: ``expNNNN`` (main instruments) then
    ``oodNNNN`` (the held-out instrument); the first ones of each pool, extended past any
    whose reconstruction failed (and, under a labeller, any in its gray zone), so the
    build has the number of images asked for."""
    out = []
    for kind, need in (("exp", cfg.n_visual), ("ood", cfg.n_ood_visual)):
        n = need
        while True:
            units = [f"{kind}{i:04d}" for i in range(n)]
            if not all(unit_done(work, u, False) for u in units):
                break
            failed = sum(unit_failed(work, u) for u in units)
            gray = sum(left_out(decision(work, u, labelling)) for u in units) if labelling is not None else 0
            if n - failed - gray >= need:
                break
            n = need + failed + gray
        out += [f"{kind}{i:04d}" for i in range(n)]
    return out


def all_units(cfg: BuildConfig, work: Path, labelling: ImageLabelling | None = None) -> list[str]:
    return image_units(cfg, work, _labeller_of(cfg, labelling)) + _text_units(cfg, work)


def run_units(
    cfg: BuildConfig,
    out: Path,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
    labelling: ImageLabelling | None = None,
) -> None:
    lab = _labeller_of(cfg, labelling)
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if old != cfg.key():
            raise BuildError(
                f"{out} holds a build with a different configuration ({old}); "
                "rerun with the same options or use a fresh --out folder"
            )
    else:
        write_atomic(cfg_path, json.dumps(cfg.key(), sort_keys=True).encode())
    while True:
        images, text = image_units(cfg, work, lab), _text_units(cfg, work)
        # the images first (they can be reviewed while the long option trials run)
        todo = [(u, False) for u in images] + [(u, True) for u in text]
        pending = [(u, tr) for u, tr in todo if not unit_done(work, u, tr)]
        total = len(todo)
        done = total - len(pending)
        if progress:
            progress(done, total)
        if not pending:
            if (image_units(cfg, work, lab), _text_units(cfg, work)) == (images, text):
                return
            continue
        _run_pending(cfg, work, pending, workers, done, total, progress)


def _run_pending(cfg, work: Path, pending, workers: int, done: int, total: int, progress) -> None:
    if workers <= 1:
        for u, tr in pending:
            run_unit(cfg.key(), u, tr, str(work))
            done += 1
            if progress:
                progress(done, total)
        return
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
        futs = {pool.submit(run_unit, cfg.key(), u, tr, str(work)): u for u, tr in pending}
        for f in as_completed(futs):
            f.result()
            done += 1
            if progress:
                progress(done, total)


# --------------------------------------------------------------------------- assembly


MAX_FAILED_FRACTION = 0.05  # more failed reconstructions than this (and 2) is a broken build


def load_records(cfg: BuildConfig, out: Path, labelling: ImageLabelling | None = None) -> tuple[list[dict], list[dict]]:
    """(records of the units that reconstructed, records of those that failed)."""
    work = out / ".work"
    recs: list[dict] = []
    failed: list[dict] = []
    for unit in all_units(cfg, work, labelling):
        js, png = _unit_paths(work, unit)
        r = _read(js)
        if r is None:
            raise BuildError(f"{js}: work unit missing or unreadable; rerun the build to finish it")
        r["image_path"] = str(png)
        r["unit"] = unit
        (failed if r.get("failed") else recs).append(r)
    if len(failed) > max(2, MAX_FAILED_FRACTION * (len(recs) + len(failed))):
        raise BuildError(
            f"{out}: {len(failed)} of {len(recs) + len(failed)} reconstructions failed "
            f"(first: {failed[0]['unit']}: {failed[0]['failed']}); the simulation or pty-chi is broken"
        )
    return recs, failed


def option_labels(rec: dict, visible: frozenset[str]) -> tuple[frozenset[str], dict[str, float | None]]:
    """Verified option letters (see :mod:`.verify`) and the measured gain of every trial
    (mean over repeats where it had them; None where the reconstruction failed)."""
    from .verify import verified_options

    trials = rec.get("trials", {})
    gains: dict[str, float | None] = {}
    e0 = rec["base_errors"][0] if rec.get("base_errors") else rec["metrics"]["error"]
    for letter, t in sorted(trials.items()):
        if "mean_gain" in t:
            gains[letter] = t["mean_gain"]
        elif t.get("errors"):
            gains[letter] = round((e0 - t["errors"][0]) / max(e0, 1e-12), 4)
        else:
            gains[letter] = None
    labels = set(verified_options(trials))
    if not labels and visible == {NO_ARTIFACTS}:
        labels.add("L")
    return frozenset(labels), gains


MIN_TEST_POSITIVES = 3  # issue 11: every label with at least 3 test positives where it can


def stratified_split(
    label_sets: list[frozenset[str]],
    n_test: int,
    seed: int,
    space: tuple[str, ...],
    fixed: dict[int, str] | None = None,
) -> list[str]:
    """Deterministic greedy iterative stratification: rarest labels are placed first so
    each label gets its share of the test split (and at least one in each split when it
    occurs twice or more). ``fixed`` items keep the split they already have (an
    experiment of the text task keeps its split in the image task)."""
    n = len(label_sets)
    rng = np.random.default_rng([seed, 99])
    order = list(rng.permutation(n))
    split: list[str | None] = [None] * n
    fixed = fixed or {}
    counts = {lab: sum(lab in s for s in label_sets) for lab in space}
    # each label's share of the test split, but at least MIN_TEST_POSITIVES (or half of its
    # positives, if fewer) so a rare label's test score is not one sample's luck
    want = {
        lab: (max(1, round(c * n_test / n), min(MIN_TEST_POSITIVES, c // 2)) if c >= 2 else 0)
        for lab, c in counts.items()
    }
    have = {lab: 0 for lab in space}
    n_in_test = 0
    for i, sp in fixed.items():
        split[i] = sp
        if sp == "test":
            n_in_test += 1
            for m in label_sets[i]:
                have[m] += 1
    for lab in sorted(space, key=lambda x: (counts[x], space.index(x))):
        for i in order:
            if split[i] is not None or lab not in label_sets[i]:
                continue
            if have[lab] < want[lab] and n_in_test < n_test and counts[lab] - have[lab] > 1:
                split[i] = "test"
                n_in_test += 1
                for m in label_sets[i]:
                    have[m] += 1
            else:
                split[i] = "train"
    for i in order:
        if split[i] is None:
            if n_in_test < n_test:
                split[i] = "test"
                n_in_test += 1
            else:
                split[i] = "train"
    if n_in_test < n_test:  # too many went to train early: move the least informative
        for i in reversed(order):
            if n_in_test >= n_test:
                break
            if i in fixed:
                continue
            if split[i] == "train" and all(
                sum(lab in label_sets[j] and split[j] == "train" for j in range(n)) > 1 for lab in label_sets[i]
            ):
                split[i] = "test"
                n_in_test += 1
    for i in reversed(order):  # last resort: a test split is never empty
        if n_in_test >= n_test:
            break
        if i not in fixed and split[i] == "train":
            split[i] = "test"
            n_in_test += 1
    return [s or "train" for s in split]


def _meta(r: dict) -> dict:
    from .defects import Experiment, instrument_for

    exp = r["experiment"]
    inst = instrument_for(Experiment.from_dict(exp))
    return {
        "sample_id": r["sample_id"],
        "sample_type": exp["sample_type"],
        "beam_type": inst.beam,
        "instrument": inst.describe(),
        "scan": exp["scan"],
        "n_positions": r["n_positions"],
        "reconstruction_parameters": exp["params"],
        "defects": exp["defects"],
        "seed": exp["seed"],
        "experiment": exp,
    }


def _text_split(cands: list[tuple], n_test: int, seed: int, ood: bool) -> list[str]:
    if ood:
        return [OOD_SPLIT] * len(cands)
    return stratified_split([c[2] for c in cands], n_test, seed, tuple(PARAM_OPTIONS))


def gray_zone_counts(recs: list[dict]) -> dict[str, Any]:
    """What the gray zone left out of the image task: images in all and per pool, and per
    label the left-out images unsure of it (an image unsure of two labels counts in both)."""
    images = [r for r in recs if is_image_unit(r["unit"])]
    out = [r for r in images if left_out(r.get("labeller"))]
    per_label = {lab: sum(lab in r["labeller"]["unsure"] for r in out) for lab in ARTIFACT_LABELS}
    return {
        "judged": len(images),
        "left_out": len(out),
        "left_out_main": sum(r["unit"].startswith("exp") for r in out),
        "left_out_ood": sum(r["unit"].startswith("ood") for r in out),
        "per_label": {k: v for k, v in per_label.items() if v},
        "units": sorted(r["unit"] for r in out),
    }


def assemble(
    cfg: BuildConfig,
    out: Path,
    build_seconds: float | None = None,
    sections: Sequence[Callable] = (),
    labelling: ImageLabelling | None = None,
) -> Path:
    """Measure labels, split by experiment, write the dataset, the validation report
    and the export."""
    from ..data import Sample, write_dataset
    from ..data.released import export_released
    from .labels import LABELLING_VERSION, artifact_labels, rules
    from .report import write_report
    from .text import params_text

    lab = _labeller_of(cfg, labelling)
    recs, failed = load_records(cfg, out, lab)
    for r in recs:
        r["sample_id"] = r["unit"]
        r["artifact_labels"] = sorted(artifact_labels(r["metrics"]))
        # sim-v3: the labeller labels the image task only. It was fitted on images of that
        # geometry (a 128-px field rendered at 256 px); a text-task experiment's smaller
        # field is outside what it learnt, so the artifacts its text states stay measured
        # (labelling 2.1) and its option labels are verified as in sim-v2.
        if lab is not None and is_image_unit(r["unit"]):
            r["labeller"] = decision(out / ".work", r["unit"], lab)
            r["artifact_labels"] = r["labeller"]["labels"]
    vis_labels = [frozenset(r["artifact_labels"]) for r in recs]
    kind = [r["unit"].rstrip("0123456789") for r in recs]
    # the gray zone: an image the labeller is unsure of is in no split (image_units ran more)
    kept = [not left_out(r.get("labeller")) for r in recs]
    main = [i for i, k in enumerate(kind) if k == "exp" and kept[i]]
    ood = [i for i, k in enumerate(kind) if k == "ood" and kept[i]]
    image_version = LABELLING_VERSION if lab is None else lab.version
    text_main = [i for i, k in enumerate(kind) if k == "txt"]
    text_ood = [i for i, k in enumerate(kind) if k == "oodt"]

    # text task first: the first experiments (in order) of each pool with a label set
    text: list[tuple] = []  # (record index, visible labels, options, gains, split)
    for pool, need, is_ood in ((text_main, cfg.n_text, False), (text_ood, cfg.n_ood_text, True)):
        cands: list[tuple] = []
        for i in pool:
            if len(cands) == need:
                break
            if "trials" not in recs[i]:
                continue
            opts, gains = option_labels(recs[i], vis_labels[i])
            if opts:
                cands.append((i, vis_labels[i], opts, gains))
        if len(cands) < need:
            raise BuildError(
                f"only {len(cands)} experiments have verified option labels, {need} are needed; "
                "rerun the build (it extends the trials until there are enough)"
            )
        n_test_t = round(need * TEST_FRACTION_TEXT)
        for c, sp in zip(cands, _text_split(cands, n_test_t, cfg.seed, is_ood)):
            text.append((*c, sp))

    # image task: its own experiments, so no experiment is in two splits of either task
    n_test_v = round(cfg.n_visual * TEST_FRACTION_VISUAL)
    vsplit_main = stratified_split([vis_labels[i] for i in main], n_test_v, cfg.seed, ARTIFACT_LABELS)
    vsplit = {i: sp for i, sp in zip(main, vsplit_main)} | {i: OOD_SPLIT for i in ood}

    samples = []
    for i in main + ood:
        r = recs[i]
        exp = r["experiment"]
        meta = _meta(r) | {"metrics": stored_metrics(r["metrics"]), "labelling_version": image_version}
        if lab is not None:
            meta["labeller_probabilities"] = r["labeller"]["probabilities"]
        samples.append(
            Sample(
                r["sample_id"],
                vsplit[i],
                "artifacts",
                exp["sample_type"],
                "",
                Path(r["image_path"]),
                vis_labels[i],
                meta,
            )
        )
    for i, labs, opts, gains, sp in text:
        r = recs[i]
        exp = r["experiment"]
        visible = [x for x in ARTIFACT_LABELS if x in labs and x != NO_ARTIFACTS]
        meta = _meta(r) | {
            "visible_artifacts": visible,
            "baseline_error": round(r["base_errors"][0], 5),
            "baseline_errors": [round(e, 5) for e in r["base_errors"]],
            "seed_spread": r["seed_spread"],
            "option_gains": gains,
            "option_errors": {
                k: ([round(e, 5) for e in t["errors"]] if t.get("errors") else None)
                for k, t in sorted(r["trials"].items())
            },
            "option_decisions": {k: t.get("decision") for k, t in sorted(r["trials"].items())},
            "labelling_version": LABELLING_VERSION,
        }
        samples.append(
            Sample(
                r["sample_id"],
                sp,
                "params",
                exp["sample_type"],
                params_text(r, visible, style=exp["seed"]),
                None,
                opts,
                meta,
            )
        )

    recipe = cfg.recipe
    generator: dict[str, Any] = {"config": cfg.key(), "rules": rules()}
    gray = None
    if lab is not None:
        v2 = rules()
        options = v2.pop("options")
        generator["rules"] = lab.rules() | {"options": options, "text_task_visible_artifacts": v2}
        gray = gray_zone_counts(recs)
        generator["gray_zone"] = gray
    write_dataset(
        out, cfg.name, recipe.version, samples, description=recipe.description, extra={"generator": generator}
    )
    write_report(
        out,
        cfg,
        recs,
        samples,
        build_seconds,
        failed,
        sections,
        labeller_rules=generator["rules"] if lab else None,
        gray=gray,
    )
    export_released(out, out / "released")
    return out


def build(
    cfg: BuildConfig,
    out: Path | str,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    sections: Sequence[Callable[[list], list[str]]] = (),
    labelling: ImageLabelling | None = None,
) -> Path:
    """Run (or resume) every unit, re-measure stale ones, assemble. ``sections``: functions
    of the samples that return markdown lines for ``validation.md`` (checks that need the
    baselines or the scoring, which live above the simulator: the CLI passes the confound
    check, ``eval.confounds.confound_section``). ``labelling``: sim-v3's labeller
    (``ptychobench.labelling.apply.ShippedLabelling``), needed when ``cfg.labelling == 3``."""
    out = Path(out)
    t0 = time.perf_counter()
    run_units(cfg, out, workers, progress, labelling)
    # units measured before the rules last changed are measured again (no reconstruction)
    if remeasure_units(cfg, out, stale_only=True, labelling=labelling) and cfg.labelling != 2:
        run_units(cfg, out, workers, progress, labelling)  # re-measured images may fall in the gray zone
    return assemble(cfg, out, time.perf_counter() - t0, sections, labelling)
