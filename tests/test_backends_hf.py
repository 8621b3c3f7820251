"""Hugging Face backend: the offline SmolLM2 (batched == one at a time, sampling, adapters)
and a tiny randomly initialised hub VLM architecture (LLaVA) saved locally, which runs
the AutoModelForImageTextToText path with several images per conversation and a chat
template that refuses the system role."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from ptychobench.data import Sample
from ptychobench.models import GenerationConfig, load_backend, load_for_training
from ptychobench.tasks import ARTIFACTS, PARAMS

SHORT = GenerationConfig(max_new_tokens=6)


def param_samples(n: int) -> list[Sample]:
    return [
        Sample(
            f"p{i}",
            "test",
            "params",
            "battery particle",
            f"NCM battery particle, {300 + 40 * i} scan positions, the probe is blurred."
            + " The data error stalls." * i,
            None,
            frozenset({"J"}),
            {},
        )
        for i in range(n)
    ]


def image_samples(tmp: Path, n: int) -> list[Sample]:
    from PIL import Image

    out = []
    for i in range(n):
        p = tmp / f"img{i}.png"
        Image.fromarray((np.random.default_rng(i).random((24, 24)) * 255).astype(np.uint8)).save(p)
        out.append(
            Sample(
                f"a{i}",
                "train" if i < n - 1 else "test",
                "artifacts",
                "integrated circuit",
                "",
                p,
                frozenset({"Blurring"}),
                {},
            )
        )
    return out


@pytest.fixture(scope="module")
def smol():
    return load_backend("smollm2-135m", batch_size=4)


def test_smollm2_batched_equals_one_at_a_time(smol):
    convs = [PARAMS.render(s) for s in param_samples(2)]  # prompts of different lengths: padding
    batched = smol.generate(convs, SHORT)
    single = [smol.generate([c], SHORT)[0] for c in convs]
    assert all(g.ok for g in batched), batched
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.prompt_tokens > 300 and 1 <= g.completion_tokens <= 6 for g in batched)
    assert batched[0].prompt_tokens != batched[1].prompt_tokens
    assert smol.prompt_text(convs[0]).startswith("<|im_start|>system\nYou are an expert in X-ray ptychography")


def test_shared_prompt_start_is_computed_once_with_the_same_replies(smol):
    """The task's system turn is the start of every prompt: its KV cache is computed once and
    reused by every batch (padding between the shared start and each row's rest), and the
    replies equal those of plain left-padded batches, zero-shot and with demonstrations."""
    from ptychobench.models.hf import HFBackend

    plain = HFBackend(smol.model, smol.processor, vision=False, name="plain", batch_size=4, prefix_cache=False)
    samples = param_samples(6)
    convs = [PARAMS.render(s) for s in samples[:3]] + [PARAMS.render(samples[3 + i], [samples[i]]) for i in range(3)]
    config = GenerationConfig(max_new_tokens=12)
    smol._prefix = None
    cached = smol.generate(convs, config)
    key = smol._prefix[0]
    system_turn = smol.tokenizer(smol.prompt_text(convs[0]).split("<|im_start|>user")[0], add_special_tokens=False)[
        "input_ids"
    ]
    assert len(key) >= len(system_turn) > 200 and list(key[: len(system_turn)]) == system_turn
    assert [g.text for g in cached] == [g.text for g in plain.generate(convs, config)]
    assert [g.prompt_tokens for g in cached] == [g.prompt_tokens for g in plain.generate(convs, config)]
    assert smol._prefix[0] == key  # the second batch reused the first one's cache


def test_smollm2_fingerprint_and_sampling(smol):
    fp = smol.fingerprint()
    assert fp["model"] == "smollm2-135m" and fp["revision"] and fp["adapter"] is None
    conv = PARAMS.render(param_samples(1)[0])
    paper = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=0.3, min_p=0.1, seed=3)
    a, b = smol.generate([conv], paper)[0], smol.generate([conv], paper)[0]
    assert a.ok and a.text == b.text  # seeded sampling is reproducible


def test_per_sample_failures_are_returned_not_raised(smol, tmp_path: Path):
    (img,) = image_samples(tmp_path, 1)
    convs = [PARAMS.render(param_samples(1)[0]), ARTIFACTS.render(img)]
    ok, bad = smol.generate(convs, SHORT)
    assert ok.ok and not bad.ok and "text only" in bad.error


def test_smollm2_with_lora_adapter(smol, tmp_path: Path):
    from peft import LoraConfig, get_peft_model

    model, tok = load_for_training("smollm2-135m")
    assert model.training and tok.pad_token_id is not None
    torch.manual_seed(0)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    adapted = load_backend("smollm2-135m", adapter=tmp_path / "adapter", batch_size=4)
    fp = adapted.fingerprint()
    assert fp["adapter"] == str(tmp_path / "adapter") and fp["adapter_hash"]
    assert {k: v for k, v in fp.items() if not k.startswith("adapter")} == {
        k: v for k, v in smol.fingerprint().items() if not k.startswith("adapter")
    }
    convs = [[{"role": "user", "content": [{"type": "text", "text": f"Name {n} X-ray sources."}]}] for n in (2, 3)]
    with_adapter = adapted.generate(convs, SHORT)
    assert all(g.ok for g in with_adapter)
    assert [g.text for g in with_adapter] != [g.text for g in smol.generate(convs, SHORT)]


# ------------------------------------------------------------------ a tiny hub VLM, saved locally
@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> Path:
    """A randomly initialised LLaVA (CLIP vision tower + Llama text model, both tiny) with
    SmolLM2's tokenizer and a template that rejects system turns, like Gemma's."""
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from ptychobench.models.assets import smollm2_transformers_dir
    from ptychobench.models.tinyvlm import CHAT_TEMPLATE

    d = tmp_path_factory.mktemp("tiny-llava")
    tok = AutoTokenizer.from_pretrained(smollm2_transformers_dir())
    tok.add_tokens(["<image>"], special_tokens=True)
    no_system = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}"
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=1,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(d)
    LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,
        chat_template=no_system + CHAT_TEMPLATE,
    ).save_pretrained(d)
    return d


def test_hub_vlm_several_images_per_conversation(tiny_llava: Path, tmp_path: Path):
    b = load_backend(f"hf:{tiny_llava}", batch_size=4)
    assert type(b.model).__name__ == "LlavaForConditionalGeneration" and b.vision
    samples = image_samples(tmp_path, 4)
    query, demos = samples[-1], samples[:-1]
    convs = [ARTIFACTS.render(query, demos[:k]) for k in (0, 1, 3)]  # 1, 2 and 4 images
    batched = b.generate(convs, SHORT)
    assert all(g.ok for g in batched), batched
    # the template refused the system turn: its text now leads the first user turn
    prompt = b.prompt_text(convs[2])
    assert prompt.count("<image>") == 4 and "<|im_start|>system\nYou are an expert" not in prompt
    assert prompt.index("You are an expert in X-ray ptychography") < prompt.index("<image>")
    assert [g.prompt_tokens for g in batched] == sorted(g.prompt_tokens for g in batched)
    assert [g.text for g in batched] == [b.generate([c], SHORT)[0].text for c in convs]
    fp = b.fingerprint()
    assert fp["revision"].startswith("local:") and fp["model"] == str(tiny_llava)


def test_hub_vlm_missing_image_fails_only_that_sample(tiny_llava: Path, tmp_path: Path):
    b = load_backend(f"hf:{tiny_llava}")
    good, bad = image_samples(tmp_path, 2)
    bad = Sample(bad.id, bad.split, bad.task, bad.sample_type, "", tmp_path / "gone.png", bad.labels, {})
    g_ok, g_bad = b.generate([ARTIFACTS.render(good), ARTIFACTS.render(bad)], SHORT)
    assert g_ok.ok and not g_bad.ok and "gone.png" in g_bad.error
