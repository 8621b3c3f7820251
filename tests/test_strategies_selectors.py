"""Demo selectors: train-only pools, no self-demos, determinism, true neighbours, diversity."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

from ptychobench.data import Sample, load_dataset
from ptychobench.strategies import SELECTORS, demos_for, make_selector
from ptychobench.strategies.embeddings import Embedder, TextEmbedder, normalize
from ptychobench.tasks import PARAM_OPTIONS


@dataclasses.dataclass
class VecEmbedder(Embedder):
    """Embeds a sample as the vector in its metadata: a constructed geometry, no model."""

    model: str = "vec"
    use_cache: bool = False
    kind = "vec"

    def content(self, sample: Sample) -> bytes:
        return np.asarray(sample.metadata["vec"], dtype=np.float32).tobytes()

    def _compute(self, samples):
        return np.array([s.metadata["vec"] for s in samples], dtype=np.float32)


def sample(sid: str, split: str = "train", vec=(1.0, 0.0), labels=("A",), sample_type: str = "t0") -> Sample:
    return Sample(sid, split, "params", sample_type, f"text of {sid}", None, frozenset(labels), {"vec": list(vec)})


def pool_of(n: int = 30, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    letters = list(PARAM_OPTIONS)
    return [
        sample(
            f"tr{i:03d}", vec=rng.normal(size=4), labels=rng.choice(letters, 2, replace=False), sample_type=f"t{i % 3}"
        )
        for i in range(n)
    ]


def selectors(seed: int = 0):
    emb = VecEmbedder()
    return [make_selector(n, seed=seed, **({"embedder": emb} if n.startswith("knn") else {})) for n in SELECTORS]


# ----------------------------------------------------------------- no leakage, ever


@pytest.mark.parametrize("name", SELECTORS)
def test_test_sample_in_pool_is_refused(name):
    pool = pool_of()
    query = sample("q", split="test", vec=(1, 0, 0, 0))
    sneaky = dataclasses.replace(pool[5], id="te007", split="test")
    sel = make_selector(name, **({"embedder": VecEmbedder()} if name.startswith("knn") else {}))
    for bad_pool in ([*pool, sneaky], [sneaky, *pool], [query, *pool]):
        with pytest.raises(ValueError, match="train split"):
            sel.select(query, bad_pool, 3)
    with pytest.raises(ValueError, match="train split"):
        demos_for(sel, [*pool, sneaky], 3)


@pytest.mark.parametrize("name", SELECTORS)
def test_query_never_its_own_demo(name):
    pool = pool_of(12)
    sel = make_selector(name, **({"embedder": VecEmbedder()} if name.startswith("knn") else {}))
    for query in pool:  # train queries (SFT with demos) come from the pool itself
        for k in (1, 5, 11):
            demos = sel.select(query, pool, k)
            assert len(demos) == k == len({d.id for d in demos})
            assert query.id not in {d.id for d in demos}
            assert all(d.split == "train" for d in demos)
    with pytest.raises(ValueError, match="only 11 other"):
        sel.select(pool[0], pool, 12)  # would need the query itself


def test_other_task_and_bad_k_refused():
    pool = pool_of()
    other = dataclasses.replace(pool[0], id="x", task="artifacts")
    with pytest.raises(ValueError, match="task"):
        make_selector("random").select(sample("q", "test"), [*pool, other], 2)
    with pytest.raises(ValueError):
        make_selector("random").select(sample("q", "test"), pool, -1)
    assert make_selector("random").select(sample("q", "test"), pool, 0) == []
    with pytest.raises(ValueError, match="unknown demo selector"):
        make_selector("nearest")


def test_no_test_demo_on_real_dataset_with_every_selector(tiny_dataset: Path):
    """End to end on a written dataset, MiniLM and EfficientNet embeddings included: whatever
    the pool passed (train, test, both), no demo is ever a test sample."""
    ds = load_dataset(tiny_dataset)
    for task in ("params", "artifacts"):
        train, test = ds.samples(task, "train"), ds.samples(task, "test")
        for name in SELECTORS:
            sel = make_selector(name, seed=3)
            for query in [*test, *train[:3]]:
                demos = sel.select(query, train, 5)
                assert all(d.split == "train" and d.id != query.id for d in demos)
                with pytest.raises(ValueError):
                    sel.select(query, [*train, *test], 5)
                with pytest.raises(ValueError):
                    sel.select(query, test, 1)


# ----------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", SELECTORS)
def test_deterministic_for_a_seed(name):
    pool = pool_of(40)
    queries = [
        sample(f"q{i}", "test", vec=np.random.default_rng(i).normal(size=4), sample_type=f"t{i % 3}") for i in range(10)
    ]
    first = [[d.id for d in make_selector(name, seed=7, **_opts(name)).select(q, pool, 5)] for q in queries]
    shuffled = pool[:]
    random.Random(1).shuffle(shuffled)
    sel = make_selector(name, seed=7, **_opts(name))
    again = [[d.id for d in sel.select(q, shuffled, 5)] for q in reversed(queries)][::-1]
    assert first == again  # neither pool order nor query order matters
    if name in ("random", "sample-type"):
        other = [[d.id for d in make_selector(name, seed=8).select(q, pool, 5)] for q in queries]
        assert other != first  # the seed matters
        per_query = {tuple(ids) for ids in first}
        assert len(per_query) > 1  # seeded per query, not one fixed draw


def _opts(name: str) -> dict:
    return {"embedder": VecEmbedder()} if name.startswith("knn") else {}


def test_sample_type_prefers_same_type_then_tops_up():
    pool = [sample(f"a{i}", sample_type="ic") for i in range(3)] + [
        sample(f"b{i}", sample_type="cell") for i in range(10)
    ]
    query = sample("q", "test", sample_type="ic")
    demos = make_selector("sample-type").select(query, pool, 5)
    assert {d.id for d in demos[:3]} == {"a0", "a1", "a2"}
    assert all(d.sample_type == "cell" for d in demos[3:])
    assert all(d.sample_type == "ic" for d in make_selector("sample-type", seed=4).select(query, pool, 2))


# ----------------------------------------------------------------- knn and knn-diverse


def test_knn_returns_true_nearest_neighbours():
    rng = np.random.default_rng(0)
    pool = [sample(f"tr{i:03d}", vec=rng.normal(size=8)) for i in range(50)]
    query = sample("q", "test", vec=rng.normal(size=8))
    vecs = normalize(np.array([s.metadata["vec"] for s in pool]))
    qv = normalize(np.array([query.metadata["vec"]]))[0]
    expected = [pool[i].id for i in np.argsort(-(vecs @ qv))[:7]]
    got = [d.id for d in make_selector("knn", embedder=VecEmbedder()).select(query, pool, 7)]
    assert got == expected  # the 7 nearest, most similar first
    # cosine, not Euclidean: scaling a pool vector does not move it
    scaled = [dataclasses.replace(s, metadata={"vec": list(np.array(s.metadata["vec"]) * 100)}) for s in pool]
    assert [d.id for d in make_selector("knn", embedder=VecEmbedder()).select(query, scaled, 7)] == expected


def test_knn_diverse_covers_more_labels_than_knn():
    # three near-duplicates of the query, all labelled {A}; a bit further, {B} and {C} ones
    near = [sample(f"n{i}", vec=(1.0, 0.01 * i, 0.0), labels=("A",)) for i in range(3)]
    mid = [sample("m_b", vec=(0.9, 0.3, 0.0), labels=("B",)), sample("m_c", vec=(0.9, 0.0, 0.3), labels=("C",))]
    far = [sample(f"f{i}", vec=(0.0, 1.0, float(i)), labels=("D",)) for i in range(5)]
    pool = near + mid + far
    query = sample("q", "test", vec=(1.0, 0.0, 0.0))
    emb = VecEmbedder()
    knn = make_selector("knn", embedder=emb).select(query, pool, 3)
    div = make_selector("knn-diverse", embedder=emb).select(query, pool, 3)

    def covered(demos):
        return set().union(*(d.labels for d in demos))

    assert covered(knn) == {"A"}
    assert covered(div) == {"A", "B", "C"}  # diverse, yet still close: nothing from the far cluster
    assert div[0].id == knn[0].id  # the most similar demo comes first in both


def test_knn_text_embeddings_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYCHOBENCH_CACHE", str(tmp_path))
    samples = [
        dataclasses.replace(sample(f"s{i}"), text=t)
        for i, t in enumerate(["probe modes too few", "scan positions drift"])
    ]
    emb = TextEmbedder()
    a = emb.embed(samples)
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 2 and a.shape == (2, 384)
    fresh = TextEmbedder()
    b = fresh.embed(samples)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert fresh._st is None  # read from the disk cache; the model was never loaded
