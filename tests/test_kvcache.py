"""The in-place growing KV cache (models/kvcache.py): the same tensors torch.cat gives,
without a copy per token, and the fast generation path (shared-start cache + growing
cache) giving the replies of plain ``model.generate`` under greedy float32 decoding."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import DynamicCache

from ptychobench.data import Sample
from ptychobench.models import GenerationConfig, load_backend
from ptychobench.models.kvcache import GrowingCache, GrowingLayer
from ptychobench.tasks import PARAMS


def param_samples(n: int) -> list[Sample]:
    """Parameter prompts of different lengths."""
    text = "NCM battery particle, {} scan positions, the probe is blurred." + " The data error stalls."
    return [
        Sample(
            f"p{i}",
            "test",
            "params",
            "battery particle",
            text.format(300 + 40 * i) * (i + 1),
            None,
            frozenset({"J"}),
            {},
        )
        for i in range(n)
    ]


def test_growing_layer_holds_what_concatenation_holds_in_one_buffer():
    torch.manual_seed(0)
    grow, plain = GrowingCache(reserve=4), DynamicCache()
    steps = [torch.randn(2, 3, n, 8) for n in (5, 1, 1, 1, 1, 1)]  # a prompt, then one token at a time
    ptrs = []
    for x in steps:
        k, v = grow.update(x, -x, 0)
        pk, pv = plain.update(x, -x, 0)
        assert torch.equal(k, pk) and torch.equal(v, pv)
        ptrs.append(k.data_ptr())
    assert len(set(ptrs[:5])) == 1  # prompt + 4 reserved tokens: no reallocation
    assert ptrs[5] != ptrs[4]  # the fifth new token outgrew the reserve: one move
    assert grow.get_seq_length() == plain.get_seq_length() == 10


def test_growing_layer_after_crop_and_row_selection():
    layer = GrowingLayer(reserve=8)
    x = torch.arange(2 * 1 * 6 * 2, dtype=torch.float32).view(2, 1, 6, 2)
    layer.update(x, x)
    layer.crop(-2)
    layer.batch_select_indices(torch.tensor([1]))
    k, _ = layer.update(x[1:, :, :1], x[1:, :, :1])
    assert torch.equal(k, torch.cat([x[1:, :, :4], x[1:, :, :1]], dim=-2))


def test_prefix_cache_copies_rows_and_leaves_the_prefix_alone():
    prefix = DynamicCache()
    x = torch.randn(1, 2, 3, 4)
    prefix.update(x, x, 0)
    cache = GrowingCache.from_prefix(prefix, batch=3, reserve=5)
    k, _ = cache.update(torch.zeros(3, 2, 1, 4), torch.zeros(3, 2, 1, 4), 0)
    assert k.shape == (3, 2, 4, 4) and torch.equal(k[2, :, :3], x[0])
    assert prefix.get_seq_length() == 3 and torch.equal(prefix.layers[0].keys, x)


@pytest.fixture(scope="module")
def smol32():
    return load_backend("smollm2-135m", batch_size=4, dtype="float32")


def test_fast_path_replies_equal_plain_generate(smol32):
    """Greedy float32: the backend (length-sorted batches with padding, the shared start's
    cache, the growing cache, packed weights, stop at </answer>) answers as ``model.generate``
    does on each prompt alone with transformers' own cache and the plain weights. Prompts of different lengths, with and
    without a demonstration."""
    samples = param_samples(5)
    convs = [PARAMS.render(s) for s in samples[:3]] + [PARAMS.render(samples[3], [samples[0]])]
    config = GenerationConfig(max_new_tokens=20)
    smol32._prefix = None
    fast = smol32.generate(convs, config)
    assert smol32._growing_cache and smol32._prefix is not None  # the fast path ran
    assert smol32.packed_layers > 0  # decode products on the packed weights
    # the reference: transformers' generate on the plain weights, one prompt at a time
    ref = load_backend("smollm2-135m", batch_size=4, dtype="float32", packed_weights=False)
    assert ref.packed_layers == 0
    tok, model = ref.tokenizer, ref.model
    gc = smol32._hf_generation_config(config)
    for conv, got in zip(convs, fast):
        ids = tok(smol32.prompt_text(conv), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**ids, generation_config=gc, tokenizer=tok)
        want = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        want = want[: want.find("</answer>") + len("</answer>")] if "</answer>" in want else want
        assert got.ok and got.text == want.strip()


def test_a_batch_sharing_less_of_the_start_crops_the_cached_start(smol32):
    """The first batch's rows may share more than the system turn (the same opening words);
    a later batch sharing less reuses the cached start cut to what it shares, whose keys
    and values are those a fresh pass over the shorter start gives."""
    base = smol32.prompt_text(PARAMS.render(param_samples(1)[0]))
    head = base[: base.index("NCM")]
    first = [head + "NCM battery particle one", head + "NCM battery particle two"]
    second = [head + "Zone plate three", head + "NCM battery particle four"]
    smol32._prefix = None
    smol32._prefix_inputs(first)
    assert smol32._prefix is not None
    long_key, cache = smol32._prefix
    smol32._prefix_inputs(second)
    key, cropped = smol32._prefix
    assert cropped is cache and len(key) < len(long_key) and key == long_key[: len(key)]
    smol32._prefix = None
    smol32._prefix_inputs(second)
    fresh = smol32._prefix[1]
    assert smol32._prefix[0] == key
    for a, b in zip(cropped.layers, fresh.layers):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
