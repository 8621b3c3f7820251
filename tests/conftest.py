from __future__ import annotations

import random
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptychobench.data import Sample, write_dataset
from ptychobench.tasks import ARTIFACT_LABELS, PARAM_OPTIONS

SAMPLE_TYPES = ["integrated circuit", "battery particle", "biological cell"]


def make_samples(tmp: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> list[Sample]:
    """A tiny two-task dataset with real PNG images, every label used somewhere."""
    rng = random.Random(seed)
    img_dir = tmp / "raw_images"
    img_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            sid = f"{split}{i:03d}"
            img = img_dir / f"{sid}.png"
            pixels = np.random.default_rng(seed * 1000 + zlib.crc32(sid.encode()) % 1000)  # not hash(): per process
            arr = pixels.integers(0, 255, (16, 16), dtype=np.uint8)
            Image.fromarray(arr).save(img)
            st = SAMPLE_TYPES[i % len(SAMPLE_TYPES)]
            art = frozenset(rng.sample(ARTIFACT_LABELS[:-1], rng.randint(0, 3))) or frozenset({ARTIFACT_LABELS[-1]})
            samples.append(Sample(sid, split, "artifacts", st, "", img, art, {"sample_id": sid, "sample_type": st}))
            par = frozenset(rng.sample(list(PARAM_OPTIONS), rng.randint(1, 3)))
            samples.append(
                Sample(
                    f"p{sid}",
                    split,
                    "params",
                    st,
                    f"Sample {sid}: a {st}, data error stalls at 0.{i}.",
                    None,
                    par,
                    {"sample_id": f"p{sid}", "sample_type": st},
                )
            )
    return samples


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "tiny", "tiny", "1", make_samples(tmp_path))


def build_quick(out: Path, workers: int = 1) -> Path:
    """The `generate --quick` dataset (12 + 3 test-ood images, 3 + 1 test-ood texts)."""
    from ptychobench.sim.build import QUICK, BuildConfig, build

    return build(BuildConfig(quick=True, **QUICK), out, workers=workers)


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory) -> Path:
    return build_quick(tmp_path_factory.mktemp("quick") / "ds")


@pytest.fixture
def diagnose_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The project's home folder in the test's temporary folder, with diagnose's cached
    detector and advisor cleared before and after (they are keyed by nothing the home
    changes, so a test would otherwise see another test's fitted models)."""
    from ptychobench.diagnose import advice, detector

    home = tmp_path / "home"
    monkeypatch.setenv("PTYCHOBENCH_HOME", str(home))
    detector.get_detector.cache_clear()
    advice.get_advisor.cache_clear()
    yield home
    detector.get_detector.cache_clear()
    advice.get_advisor.cache_clear()
