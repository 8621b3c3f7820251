"""CPU seconds of one batch's prefill and decode steps with transformers' DynamicCache and
with models/kvcache.GrowingCache (issue 28), and where a batch's time goes by operator.

The first 8 of sim-v1's parameter test prompts through smollm2-135m at float32 on one
thread, after the shared system turn (prefix cache): one prefill pass, then 8 greedy decode
steps, each cache kind twice; CPU seconds (``time.process_time``), which other jobs on a
shared machine move less than wall seconds. ``--profile`` adds ``torch.profiler`` tables
of the prefill pass and of a whole ``generate()`` of 32 tokens with the plain cache.

    PTYCHOBENCH_HOME=/tmp/gen-home HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_kvcache.py --profile
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch
from transformers import DynamicCache

from ptychobench.data import load_dataset
from ptychobench.models import GenerationConfig, load_backend
from ptychobench.models.hf import HFBackend
from ptychobench.models.kvcache import GrowingCache
from ptychobench.tasks import get_task


def prompts() -> list:
    """The benchmark's batch: the first 8 of sim-v1's parameter test prompts."""
    return [get_task("params").render(s) for s in load_dataset("sim-v1").samples("params", "test")[:8]]


def prefill(model: Any, inputs: dict, n: int, mask: torch.Tensor, positions: torch.Tensor, cache: Any) -> Any:
    """One prefill pass over each row after the shared start of ``n`` tokens (already in
    ``cache``), the LM head at the last position only, as the backend's generate runs it."""
    return model(
        input_ids=inputs["input_ids"][:, n:],
        attention_mask=mask,
        position_ids=positions[:, n:],
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    convs = prompts()
    b = load_backend("smollm2-135m", dtype="float32", batch_size=8)
    assert isinstance(b, HFBackend)
    inputs = b._prefix_inputs([b.prompt_text(c) for c in convs], 32)
    assert inputs is not None
    inputs.pop(b._cache_kwarg)
    assert b._prefix is not None
    prefix: DynamicCache = b._prefix[1]
    n = prefix.get_seq_length()
    mask = inputs["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; batch {tuple(mask.shape)}, shared start {n}")

    def fresh(kind: str) -> DynamicCache:
        if kind == "GrowingCache":
            return GrowingCache.from_prefix(prefix, 8, reserve=mask.shape[1] - n + 32)
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(8)
        return cache

    for _ in range(2):
        for kind in ("DynamicCache", "GrowingCache"):
            cache, m = fresh(kind), mask
            with torch.inference_mode():
                t = time.process_time()
                out = prefill(b.model, inputs, n, m, positions, cache)
                prefill_s = time.process_time() - t
                pos = positions[:, -1:]
                t = time.process_time()
                for _ in range(8):
                    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                    m, pos = torch.cat([m, m.new_ones(8, 1)], 1), pos + 1
                    out = b.model(input_ids=nxt, attention_mask=m, position_ids=pos, cache=cache, use_cache=True)
                step = (time.process_time() - t) / 8
            print(f"{kind:13s} prefill {prefill_s:6.2f} CPU s, decode {step:.3f} CPU s/step", flush=True)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        cache = fresh("DynamicCache")
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as p:
            prefill(b.model, inputs, n, mask, positions, cache)
        print("prefill pass:\n" + p.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
        plain = HFBackend(b.model, b.processor, vision=False, name="plain", batch_size=8)
        plain.__dict__["_growing_cache"] = False  # transformers' own cache, as before issue 28
        with profile(activities=[ProfilerActivity.CPU]) as p:
            plain.generate(convs, GenerationConfig(max_new_tokens=32))
        print("generate(), 32 tokens:\n" + p.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
