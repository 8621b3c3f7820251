"""The two halves of a decode step in isolation, on one thread (issue 28): linear products of
8 rows (plain ``F.linear`` vs a oneDNN-packed weight, as ``models/packed`` does) and
attention of 8 rows over a 676-token cache (one call vs the 296 shared tokens read once for
all rows plus each row's own part, the merge left out).

Shapes are smollm2-135m's (hidden 576, MLP 1536, vocabulary 49152; 3 KV heads of 64, 9
query heads) with random values; enough distinct weight matrices (~200 MB) that each
product reads its weight from memory as a model's decode step does. CPU seconds
(``time.process_time``).

    OMP_NUM_THREADS=1 python benchmarks/bench_decode_products.py
"""

from __future__ import annotations

import time
from typing import Callable

import torch

F = torch.nn.functional


def cpu_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    fn()
    t = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t) / repeats


def main() -> None:
    torch.set_num_threads(1)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for out_f, in_f in ((1536, 576), (576, 1536), (49152, 576)):
        x = torch.randn(8, in_f)
        ws = [torch.randn(out_f, in_f) for _ in range(max(1, 200_000_000 // (out_f * in_f * 4)))]
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, 8) for w in ws]
        plain_s = cpu_seconds(lambda: [F.linear(x, w) for w in ws]) / len(ws)
        packed_s = cpu_seconds(lambda: [torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], "") for p in packed])
        packed_s /= len(ws)
        print(f"8 rows x {out_f}x{in_f}: F.linear {plain_s * 1e3:.2f} ms, packed {packed_s * 1e3:.2f} ms")

    layers, shared, total = 30, 296, 676
    keys = [torch.randn(8, 3, total, 64) for _ in range(layers)]
    values = [torch.randn(8, 3, total, 64) for _ in range(layers)]
    shared_k = [torch.randn(1, 3, shared, 64) for _ in range(layers)]
    shared_v = [torch.randn(1, 3, shared, 64) for _ in range(layers)]
    q = torch.randn(8, 3, 3, 64)  # one token, 9 query heads packed onto 3 KV heads
    mask = torch.ones(8, 1, 1, total, dtype=torch.bool)
    mask[:, :, :, shared : shared + 30] = False  # some padding between shared start and own rest
    with torch.inference_mode():
        whole = cpu_seconds(
            lambda: [F.scaled_dot_product_attention(q, k, v, attn_mask=mask) for k, v in zip(keys, values)]
        )
        q_all = q.transpose(0, 1).reshape(1, 3, 24, 64)

        def split() -> None:
            for k, v, sk, sv in zip(keys, values, shared_k, shared_v):
                torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q_all, sk, sv)
                F.scaled_dot_product_attention(q, k[:, :, shared:], v[:, :, shared:], attn_mask=mask[..., shared:])

        split_s = cpu_seconds(split)
    print(
        f"attention, 8 rows, {layers} layers: whole cache {whole * 1e3:.1f} ms, shared part once {split_s * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
