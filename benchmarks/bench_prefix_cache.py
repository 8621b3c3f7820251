"""Prefix caching in the HF backend: the task's system turn (the start every prompt shares)
run once and its KV cache reused, against plain left-padded batches.

16 parameter prompts from the shipped sim-v1 test split through smollm2-135m, zero-shot and
with one knn demonstration, batch 8, 40 new tokens, bf16 (the embedded default's setting);
times each way twice. Then, in bf16 and float32, how many replies of batched and of
prefix-cached generation equal one-at-a-time plain generation (float rounding can change a
greedy token; float32 should agree everywhere).

    .venv/bin/python benchmarks/bench_prefix_cache.py
"""

from __future__ import annotations

import time

from ptychobench.data import load_dataset
from ptychobench.models import GenerationConfig, load_backend
from ptychobench.models.hf import HFBackend
from ptychobench.strategies import make_selector
from ptychobench.tasks import get_task


def main() -> None:
    ds = load_dataset("sim-v1")
    task = get_task("params")
    test, train = ds.samples("params", "test")[:16], ds.samples("params", "train")
    knn = make_selector("knn", seed=0)
    config = GenerationConfig(max_new_tokens=40)
    base = load_backend("smollm2-135m", dtype="bfloat16")

    def backend(batch: int, prefix: bool, b=base) -> HFBackend:
        return HFBackend(b.model, b.processor, vision=False, name="smollm2-135m", batch_size=batch, prefix_cache=prefix)

    for k in (0, 1):
        convs = [task.render(s, knn.select(s, train, k) if k else ()) for s in test]
        times: dict[str, list[float]] = {"plain": [], "prefix": []}
        for _ in range(2):
            for name, b in (("plain", backend(8, False)), ("prefix", backend(8, True))):
                t0 = time.perf_counter()
                b.generate(convs, config)
                times[name].append(round(time.perf_counter() - t0, 1))
        print(
            f"k={k}: seconds for 16 prompts, batch 8: {times}; speed-up "
            f"{min(times['plain']) / min(times['prefix']):.2f}x",
            flush=True,
        )

    convs = [task.render(s) for s in test]
    for dtype in ("bfloat16", "float32"):
        b = load_backend("smollm2-135m", dtype=dtype)
        ref = [g.text for g in backend(1, False, b).generate(convs, config)]
        for batch, prefix in ((8, False), (8, True), (1, True)):
            got = [g.text for g in backend(batch, prefix, b).generate(convs, config)]
            same = sum(x == y for x, y in zip(ref, got))
            print(
                f"{dtype}: batch {batch}, prefix cache {prefix}: {same}/16 replies equal one-at-a-time plain",
                flush=True,
            )


if __name__ == "__main__":
    main()
