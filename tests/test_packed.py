"""Pre-packed linear weights for decoding on the CPU (models/packed.py): the packed product
equals ``F.linear`` up to float32 rounding; prefill-sized and one-row inputs, gradients and
a weight changed in place all go back to ``F.linear`` itself; only float32 layers pack."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ptychobench.models.packed import MAX_PACKED_ROWS, MIN_PACKED_ROWS, pack_linears, packing_available

pytestmark = pytest.mark.skipif(not packing_available(), reason="torch built without oneDNN")
F = torch.nn.functional


def layers() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Linear(96, 32, bias=False))


def test_packed_decode_product_matches_linear_and_is_the_packed_kernel():
    model, plain = layers(), layers()
    assert pack_linears(model, rows=8) == 2
    x = torch.randn(8, 1, 64)
    with torch.inference_mode():
        got, want = model(x), plain(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    assert hasattr(model[0], "_ptychobench_packed") and model[0]._ptychobench_packed.is_mkldnn
    assert pack_linears(model) == 0  # packed once


def test_prefill_gradients_and_changed_weights_use_the_weight_itself():
    model = layers()
    pack_linears(model)
    big, one = torch.randn(MAX_PACKED_ROWS + 1, 64), torch.randn(MIN_PACKED_ROWS - 1, 1, 64)
    with torch.inference_mode():
        assert torch.equal(model[0](big), F.linear(big, model[0].weight, model[0].bias))
        assert torch.equal(model[0](one), F.linear(one, model[0].weight, model[0].bias))
    x = torch.randn(4, 64)
    out = model[0](x)  # gradients on: the plain product, differentiable
    assert out.requires_grad and torch.equal(out, F.linear(x, model[0].weight, model[0].bias))
    with torch.no_grad():
        model[0].weight.mul_(2)  # e.g. an optimizer step: the packed copy is stale
    with torch.inference_mode():
        assert torch.equal(model[0](x), F.linear(x, model[0].weight, model[0].bias))
    assert model[0]._ptychobench_packed is None


def test_only_float32_cpu_layers_are_packed():
    model = layers().to(torch.bfloat16)
    assert pack_linears(model) == 0
