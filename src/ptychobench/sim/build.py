"""Build a PtychoBench-Sim dataset: experiments in parallel, resumable, deterministic.

Layout of a build folder::

    .work/config.json          the build's configuration (a rerun must match it)
    .work/exp-0007.png         rendered reconstruction of experiment 7
    .work/exp-0007.json        its record: experiment, metrics, losses, option trials
    manifest.json, artifacts/, params/   the dataset (written by ptychobench.data)
    validation.md, validation/           the validation report
    released/                  the same data in the authors' chat-JSON format

Each experiment is one work unit, written atomically (temporary file, then rename), so
an interrupted build continues where it stopped when rerun and ends with the same files:
every unit depends only on (seed, index), never on what else ran or in which order.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..tasks import ARTIFACT_LABELS, NO_ARTIFACTS, PARAM_OPTIONS
from .labels import GAIN_MARGIN, MIN_ABS_GAIN

NAME = "sim-v1"
VERSION = "1.0"
# real data: visual 312 train / 79 test; text 91 train / 44 test
TEST_FRACTION_VISUAL = 79 / 391
TEST_FRACTION_TEXT = 44 / 135


@dataclass(frozen=True)
class BuildConfig:
    n_visual: int = 391
    n_text: int = 135
    seed: int = 0
    quick: bool = False
    name: str = NAME

    @property
    def scale(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def n_trials(self) -> int:
        """Experiments that also get the option trials (the text task reuses them)."""
        if self.quick:
            return self.n_visual
        # some trial outcomes give no label set (nothing helps an image with artifacts)
        return min(self.n_visual, math.ceil(self.n_text * 1.4) + 2)

    def key(self) -> dict:
        d = asdict(self)
        d["scale"] = self.scale
        return d


QUICK = dict(n_visual=12, n_text=3)


class BuildError(RuntimeError):
    pass


def experiment_for(cfg: BuildConfig, index: int):
    from .defects import draw_experiment

    rng = np.random.default_rng([cfg.seed, index, 17])
    return draw_experiment(index, seed=cfg.seed * 1_000_003 + index, rng=rng, scale=cfg.scale)


def remeasure_units(cfg: BuildConfig, out: Path) -> int:
    """Recompute metrics and images of finished units from their stored reconstructions
    (after a change to :mod:`.measure`); returns how many were updated."""
    import io

    from PIL import Image

    from .pipeline import remeasure

    work = out / ".work"
    n = 0
    for i in range(cfg.n_visual):
        js, png = _unit_paths(work, i)
        npy = js.with_suffix(".npy")
        if not (js.is_file() and npy.is_file()):
            continue
        rec = json.loads(js.read_text())
        m, img = remeasure(experiment_for(cfg, i), rec, np.load(npy))
        rec["metrics"] = m
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", optimize=True)
        _atomic_write(png, buf.getvalue())
        _atomic_write(js, json.dumps(rec, sort_keys=True, indent=0).encode())
        n += 1
    return n


def _unit_paths(work: Path, index: int) -> tuple[Path, Path]:
    return work / f"exp-{index:04d}.json", work / f"exp-{index:04d}.png"


def unit_done(work: Path, index: int, trials: bool) -> bool:
    js, png = _unit_paths(work, index)
    if not (js.is_file() and png.is_file() and js.with_suffix(".npy").is_file()):
        return False
    if trials:
        try:
            return "trials" in json.loads(js.read_text())
        except json.JSONDecodeError:
            return False
    return True


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run_unit(cfg_key: dict, index: int, trials: bool, work: str) -> tuple[int, float]:
    """Worker entry point: one experiment, written atomically. Returns (index, seconds)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import io

    import torch
    from PIL import Image

    from .pipeline import run_experiment

    torch.set_num_threads(1)
    cfg = BuildConfig(**{k: v for k, v in cfg_key.items() if k != "scale"})
    exp = experiment_for(cfg, index)
    t0 = time.perf_counter()
    rec, img, obj = run_experiment(exp, trials)
    js, png = _unit_paths(Path(work), index)
    # the reconstruction itself, so metrics and labels can be re-measured without redoing it
    buf = io.BytesIO()
    np.save(buf, obj)
    _atomic_write(js.with_suffix(".npy"), buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=True)
    _atomic_write(png, buf.getvalue())
    # timings vary run to run; keep them out of the record so outputs are byte-identical
    timing = {"unit_seconds": rec.pop("unit_seconds"), "recon_seconds": rec.pop("recon_seconds")}
    for t in rec.get("trials", {}).values():
        timing.setdefault("trial_seconds", []).append(t.pop("seconds"))
    _atomic_write(js, json.dumps(rec, sort_keys=True, indent=0).encode())
    _atomic_write(Path(work) / f"timing-{index:04d}.json", json.dumps(timing).encode())
    return index, time.perf_counter() - t0


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def run_units(cfg: BuildConfig, out: Path, workers: int, progress: Callable[[int, int], None] | None = None) -> None:
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
        _atomic_write(cfg_path, json.dumps(cfg.key(), sort_keys=True).encode())
    todo = [(i, i < cfg.n_trials) for i in range(cfg.n_visual)]
    # the expensive trial units first, so the pool stays busy to the end
    todo.sort(key=lambda t: (not t[1], t[0]))
    pending = [(i, tr) for i, tr in todo if not unit_done(work, i, tr)]
    total = len(todo)
    done = total - len(pending)
    if progress:
        progress(done, total)
    if not pending:
        return
    if workers <= 1:
        for i, tr in pending:
            run_unit(cfg.key(), i, tr, str(work))
            done += 1
            if progress:
                progress(done, total)
        return
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
        futs = {pool.submit(run_unit, cfg.key(), i, tr, str(work)): i for i, tr in pending}
        for f in as_completed(futs):
            f.result()
            done += 1
            if progress:
                progress(done, total)


# --------------------------------------------------------------------------- assembly


def load_records(cfg: BuildConfig, out: Path) -> list[dict]:
    work = out / ".work"
    recs = []
    for i in range(cfg.n_visual):
        js, png = _unit_paths(work, i)
        if not js.is_file():
            raise BuildError(f"{js}: work unit missing; rerun the build to finish it")
        r = json.loads(js.read_text())
        r["image_path"] = str(png)
        recs.append(r)
    return recs


def option_labels(rec: dict, visible: frozenset[str]) -> tuple[frozenset[str], dict[str, float | None]]:
    """Outcome-verified option letters and the measured relative gain of every trial."""
    e0 = rec["metrics"]["error"]
    gains: dict[str, float | None] = {}
    labels = set()
    for letter, t in sorted(rec.get("trials", {}).items()):
        if t["error"] is None:  # the reconstruction with this option failed: no gain
            gains[letter] = None
            continue
        g = (e0 - t["error"]) / max(e0, 1e-12)
        gains[letter] = round(float(g), 4)
        if g >= GAIN_MARGIN and e0 - t["error"] >= MIN_ABS_GAIN:
            labels.add(letter)
    if not labels and visible == {NO_ARTIFACTS}:
        labels.add("L")
    return frozenset(labels), gains


def stratified_split(label_sets: list[frozenset[str]], n_test: int, seed: int, space: tuple[str, ...]) -> list[str]:
    """Deterministic greedy iterative stratification: rarest labels are placed first so
    each label gets its share of the test split (and at least one in each split when it
    occurs twice or more)."""
    n = len(label_sets)
    rng = np.random.default_rng([seed, 99])
    order = list(rng.permutation(n))
    split: list[str | None] = [None] * n
    counts = {lab: sum(lab in s for s in label_sets) for lab in space}
    want = {lab: (max(1, round(c * n_test / n)) if c >= 2 else 0) for lab, c in counts.items()}
    have = {lab: 0 for lab in space}
    n_in_test = 0
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
            if split[i] == "train" and all(
                sum(lab in label_sets[j] and split[j] == "train" for j in range(n)) > 1 for lab in label_sets[i]
            ):
                split[i] = "test"
                n_in_test += 1
    return [s or "train" for s in split]


def assemble(cfg: BuildConfig, out: Path, build_seconds: float | None = None) -> Path:
    """Measure labels, split, write the dataset, the validation report and the export."""
    from ..data import Sample, write_dataset
    from ..data.released import export_released
    from .instruments import INSTRUMENTS
    from .measure import THRESHOLDS, labels_from_metrics
    from .report import write_report
    from .text import params_text

    recs = load_records(cfg, out)
    vis_labels = [labels_from_metrics(r["metrics"]) for r in recs]
    n_test_v = round(cfg.n_visual * TEST_FRACTION_VISUAL)
    vsplit = stratified_split(vis_labels, n_test_v, cfg.seed, ARTIFACT_LABELS)

    samples = []
    for r, labs, sp in zip(recs, vis_labels, vsplit):
        exp = r["experiment"]
        sid = f"exp{exp['index']:04d}"
        r["sample_id"] = sid
        inst = INSTRUMENTS[exp["instrument"]]
        meta = {
            "sample_id": sid,
            "sample_type": exp["sample_type"],
            "beam_type": inst.beam,
            "instrument": inst.describe(),
            "scan": exp["scan"],
            "n_positions": r["n_positions"],
            "reconstruction_parameters": exp["params"],
            "defects": exp["defects"],
            "metrics": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r["metrics"].items()},
            "seed": exp["seed"],
        }
        samples.append(Sample(sid, sp, "artifacts", exp["sample_type"], "", Path(r["image_path"]), labs, meta))

    # text task: experiments with option trials whose outcome gives a label set
    text_candidates = []
    for r, labs in zip(recs[: cfg.n_trials], vis_labels):
        if "trials" not in r:
            raise BuildError(f"experiment {r['experiment']['index']} has no option trials; rerun the build")
        opts, gains = option_labels(r, labs)
        if opts:
            text_candidates.append((r, labs, opts, gains))
    if len(text_candidates) < cfg.n_text:
        raise BuildError(
            f"only {len(text_candidates)} experiments have outcome-verified option labels, "
            f"{cfg.n_text} are needed; raise n_trials in sim/build.py and rerun"
        )
    text_candidates = text_candidates[: cfg.n_text]
    n_test_t = round(cfg.n_text * TEST_FRACTION_TEXT)
    tsplit = stratified_split([c[2] for c in text_candidates], n_test_t, cfg.seed, tuple(PARAM_OPTIONS))
    for (r, labs, opts, gains), sp in zip(text_candidates, tsplit):
        exp = r["experiment"]
        sid = r["sample_id"]
        visible = [x for x in ARTIFACT_LABELS if x in labs and x != NO_ARTIFACTS]
        text = params_text(r, visible, style=exp["seed"])
        inst = INSTRUMENTS[exp["instrument"]]
        meta = {
            "sample_id": sid,
            "sample_type": exp["sample_type"],
            "beam_type": inst.beam,
            "instrument": inst.describe(),
            "scan": exp["scan"],
            "reconstruction_parameters": exp["params"],
            "defects": exp["defects"],
            "visible_artifacts": visible,
            "baseline_error": round(r["metrics"]["error"], 5),
            "option_gains": gains,
            "option_errors": {
                k: (None if t["error"] is None else round(t["error"], 5)) for k, t in sorted(r["trials"].items())
            },
            "gain_margin": GAIN_MARGIN,
            "seed": exp["seed"],
        }
        samples.append(Sample(sid, sp, "params", exp["sample_type"], text, None, opts, meta))

    description = (
        "PtychoBench-Sim: simulated X-ray ptychography experiments with injected defects, "
        "reconstructed with pty-chi LSQML; artifact labels measured against the ground truth, "
        "parameter labels verified by outcome. See docs/dataset.md."
    )
    extra = {
        "generator": {
            "config": cfg.key(),
            "gain_margin": GAIN_MARGIN,
            "min_abs_gain": MIN_ABS_GAIN,
            "thresholds": {k: list(v) for k, v in THRESHOLDS.items()},
        }
    }
    write_dataset(out, cfg.name, VERSION, samples, description=description, extra=extra)
    write_report(out, cfg, recs, samples, build_seconds)
    export_released(out, out / "released")
    return out


def build(
    cfg: BuildConfig, out: Path | str, workers: int = 1, progress: Callable[[int, int], None] | None = None
) -> Path:
    out = Path(out)
    t0 = time.perf_counter()
    run_units(cfg, out, workers, progress)
    return assemble(cfg, out, time.perf_counter() - t0)
