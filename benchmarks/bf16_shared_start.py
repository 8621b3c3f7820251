"""Do bf16 replies depend on how the prompts' shared start is computed? (session 9)

smollm2-135m in bfloat16 answers sim-v2's 44 parameter test prompts zero-shot (greedy, 40
new tokens, batches of 16 in length order) twice: as the backend runs them (the shared
start's KV cache computed once and reused, cut to what each batch shares: issue 28), and
with that cache dropped before every batch (each batch computes its own start). Prints how
many replies are equal. In float32 they are all equal (tests/test_kvcache.py); in bf16 the
different row counts of the passes round differently, so some greedy replies change.

    PYTHONPATH=src python benchmarks/bf16_shared_start.py
"""

from __future__ import annotations

import torch

from ptychobench.data import load_dataset
from ptychobench.models import load_backend
from ptychobench.models.base import GenerationConfig
from ptychobench.tasks import get_task


def replies(fresh_start: bool) -> list[str]:
    task = get_task("params")
    test = sorted(load_dataset("sim-v2").samples("params", "test"), key=lambda s: len(s.text))
    convs = [task.render(s) for s in test]
    backend = load_backend("smollm2-135m", dtype="bfloat16", batch_size=16)
    if fresh_start:
        inputs = backend._prefix_inputs

        def without_cached_start(texts: list[str], max_new_tokens: int = 0):  # type: ignore[no-untyped-def]
            backend._prefix = None
            return inputs(texts, max_new_tokens)

        backend._prefix_inputs = without_cached_start  # type: ignore[method-assign]
    out: list[str] = []
    for i in range(0, len(convs), 16):
        out += [g.text for g in backend.generate(convs[i : i + 16], GenerationConfig(max_new_tokens=40))]
    return out


def main() -> None:
    cached, fresh = replies(False), replies(True)
    same = sum(a == b for a, b in zip(cached, fresh))
    cpu = torch.backends.cpu.get_cpu_capability()
    print(f"bf16 replies equal: {same} of {len(cached)} (CPU capability {cpu})")


if __name__ == "__main__":
    main()
