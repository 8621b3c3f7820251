"""Linear layers with a pre-packed copy of their weights, for decoding in float32 on the CPU.

A decode step multiplies a handful of rows (one new token per prompt of the batch) by every
weight matrix of the model, so it is bound by reading the weights, not by arithmetic. A
plain ``F.linear`` hands MKL a row-major weight that sgemm repacks into its own blocked
layout on every call, a large share of the work for so few rows.
oneDNN's ``_reorder_linear_weight`` packs each weight once into the layout its kernel
reads directly; measured on one thread (AVX512) with weights streamed from memory, a
decode-sized product (8 rows) is 1.4-2.6x faster (smollm2's output layer, 49152 x 576:
29.9 ms -> 11.4 ms; benchmarks/bench_decode_products.py) and a whole decode step of
smollm2-135m 1.23-1.29x (benchmarks/bench_decode_step.py). Products over many rows
(prefill) stay on ``F.linear``: there the packing is amortised and the packed kernel is no
faster; so do products of fewer than 4 rows, where it was slower.

The packed kernel sums in another order, so a decode step's outputs differ from
``F.linear``'s in the last bits (smollm2's logits by up to 6e-5), as a different batch or padding
already makes them differ; greedy replies are checked against plain ``generate`` in
tests/test_kvcache.py. The packed copy costs as much memory as the weights; it is only
made for float32 weights on the CPU, used only without gradients, and dropped in favour of
the weight itself once the weight has been changed in place.
"""

from __future__ import annotations

import types
from typing import Any

#: Inputs with more rows than this (prefill) use the plain ``F.linear``.
MAX_PACKED_ROWS = 256
#: ... and so do inputs with fewer: a one-row decode step was slower packed (0.079 vs
#: 0.063 CPU s, benchmarks/bench_decode_step.py), four rows faster (0.102-0.107 vs 0.116-0.118).
MIN_PACKED_ROWS = 4


def packing_available() -> bool:
    import torch

    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def _packed_forward(self: Any, x: Any) -> Any:
    import torch

    packed = self._ptychobench_packed
    if (
        packed is None
        or torch.is_grad_enabled()
        or x.dtype != torch.float32
        or not MIN_PACKED_ROWS * x.shape[-1] <= x.numel() <= MAX_PACKED_ROWS * x.shape[-1]
    ):
        return torch.nn.functional.linear(x, self.weight, self.bias)
    if self.weight._version != self._ptychobench_version:  # changed in place since packing
        self._ptychobench_packed = None
        return torch.nn.functional.linear(x, self.weight, self.bias)
    return torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, "none", [], "")


def pack_linears(model: Any, rows: int = 8) -> int:
    """Give every float32 ``nn.Linear`` of ``model`` on the CPU a packed copy of its weight
    (for products of about ``rows`` rows), used by its forward when no gradient is wanted.
    Returns how many layers were packed; 0 where oneDNN is missing or nothing qualifies."""
    if not packing_available():
        return 0
    import torch

    n = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (
            not isinstance(module, torch.nn.Linear)
            or hasattr(module, "_ptychobench_packed")
            or weight is None
            or weight.dtype != torch.float32
            or weight.device.type != "cpu"
        ):
            continue
        with torch.no_grad():
            module._ptychobench_packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), max(1, rows))
        module._ptychobench_version = weight._version
        module.forward = types.MethodType(_packed_forward, module)  # type: ignore[method-assign]
        n += 1
    return n
