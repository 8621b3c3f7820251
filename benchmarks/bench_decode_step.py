"""CPU seconds of one decode step with plain and with packed weights, and by batch rows (issue 28).

The first 8 of sim-v1's parameter test prompts through smollm2-135m at float32 on one
thread, after the shared system turn (prefix cache) and one prefill pass: greedy decode
steps with the rows of the batch cut to 8, 4 and 1 (what dropping finished rows would
leave), each with the plain weights and with ``models/packed`` weights, in turns. Prints
CPU seconds per step (``time.process_time``: moved less than wall seconds by other jobs),
whether the greedy tokens agree and the largest logit difference, and with ``--profile``
the operators of the steps at 8 rows with packed weights.

    PTYCHOBENCH_HOME=/tmp/gen-home HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_decode_step.py
"""

from __future__ import annotations

import argparse
import time

import torch

from bench_kvcache import prefill, prompts  # benchmarks/ is the script's folder
from ptychobench.models import load_backend
from ptychobench.models.hf import HFBackend
from ptychobench.models.kvcache import GrowingCache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    convs = prompts()
    b = load_backend("smollm2-135m", dtype="float32", batch_size=8)
    plain = load_backend("smollm2-135m", dtype="float32", batch_size=8, packed_weights=False)
    assert isinstance(b, HFBackend) and isinstance(plain, HFBackend)
    assert b.packed_layers > 0 and plain.packed_layers == 0
    models = {True: b.model, False: plain.model}  # the same weights, packed and not
    inputs = b._prefix_inputs([b.prompt_text(c) for c in convs], args.steps)
    assert inputs is not None and b._prefix is not None
    cache: GrowingCache = inputs.pop(b._cache_kwarg)
    n = b._prefix[1].get_seq_length()
    mask = inputs["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; batch {tuple(mask.shape)}, shared start {n}")
    with torch.inference_mode():
        out = prefill(b.model, inputs, n, mask, positions, cache)
    first = out.logits[:, -1].argmax(-1, keepdim=True)
    snapshot = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]

    def decode(rows: int, packed: bool) -> tuple[float, torch.Tensor, torch.Tensor]:
        c = GrowingCache(reserve=args.steps)
        for i, (k, v) in enumerate(snapshot):
            c.update(k[:rows], v[:rows], i)
        m, pos, nxt = mask[:rows], positions[:rows, -1:], first[:rows]
        toks, logits = [], []
        with torch.inference_mode():
            t = time.process_time()
            for _ in range(args.steps):
                m, pos = torch.cat([m, m.new_ones(rows, 1)], 1), pos + 1
                o = models[packed](input_ids=nxt, attention_mask=m, position_ids=pos, cache=c, use_cache=True)
                nxt = o.logits[:, -1].argmax(-1, keepdim=True)
                toks.append(nxt)
                logits.append(o.logits[:, -1])
            step = (time.process_time() - t) / args.steps
        return step, torch.cat(toks, 1), torch.stack(logits)

    for rows in (8, 4, 1):
        for r in range(args.repeats):
            plain_s, plain_t, plain_l = decode(rows, False)
            packed_s, packed_t, packed_l = decode(rows, True)
            print(
                f"rows {rows} run {r}: plain {plain_s:.3f} CPU s/step, packed {packed_s:.3f} "
                f"({plain_s / packed_s:.2f}x); tokens equal {torch.equal(plain_t, packed_t)}, "
                f"max logit difference {(plain_l - packed_l).abs().max().item():.1e}",
                flush=True,
            )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as p:
            decode(8, True)
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
