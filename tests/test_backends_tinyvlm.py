"""tiny-vlm: zero-shot generation through the HF backend with several images, training
batches (labels on the answers only), a TRL SFTTrainer step, and the adapter round trip
(projector + LoRA saved, then loaded by ``load_backend("tiny-vlm", adapter=DIR)``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from ptychobench.data import Sample
from ptychobench.models import (
    GenerationConfig,
    load_backend,
    load_for_training,
    tinyvlm,
)
from ptychobench.tasks import ARTIFACTS

SHORT = GenerationConfig(max_new_tokens=4)


def image_samples(tmp: Path, n: int) -> list[Sample]:
    from PIL import Image

    out = []
    for i in range(n):
        p = tmp / f"img{i}.png"
        Image.fromarray((np.random.default_rng(i).random((40, 40)) * 255).astype(np.uint8)).save(p)
        labels = frozenset({"Blurring"} if i % 2 else {"Grid artifacts", "Phase ramp"})
        out.append(Sample(f"a{i}", "train", "artifacts", "integrated circuit", "", p, labels, {}))
    return out


def short_conv(sample: Sample, answer: bool = True) -> list[dict]:
    """One image, a one-line question: cheap enough for a training step in the default run."""
    conv = [
        {
            "role": "user",
            "content": [{"type": "image", "image_path": str(sample.image)}, {"type": "text", "text": "Artifacts?"}],
        }
    ]
    if answer:
        conv.append({"role": "assistant", "content": [{"type": "text", "text": ARTIFACTS.target(sample.labels)}]})
    return conv


def with_answer(sample: Sample, demos=()) -> list[dict]:
    answer = {"role": "assistant", "content": [{"type": "text", "text": ARTIFACTS.target(sample.labels)}]}
    return ARTIFACTS.render(sample, demos) + [answer]


@pytest.fixture(scope="module")
def tiny():
    return load_backend("tiny-vlm", batch_size=4)


def test_zero_shot_with_several_images(tiny, tmp_path: Path):
    samples = image_samples(tmp_path, 3)
    convs = [ARTIFACTS.render(samples[2]), ARTIFACTS.render(samples[2], samples[:2])]
    gens = tiny.generate(convs, SHORT)
    assert all(g.ok for g in gens), gens
    grid = tiny.processor.config.image_tokens
    assert gens[1].prompt_tokens - gens[0].prompt_tokens > 2 * grid  # two demo images more
    prompt = tiny.prompt_text(convs[1])
    assert prompt.count("<image>") == 3 and prompt.startswith("<|im_start|>system\nYou are an expert")
    fp = tiny.fingerprint()
    assert fp["model"] == "tiny-vlm" and fp["revision"] and fp["adapter"] is None


def test_image_features_are_computed_once_per_image(tiny, tmp_path: Path):
    """An image seen again (as a demo in another prompt, in another cell) reuses its encoder
    features; they equal the batched encoder's up to float rounding, and the replies of a
    second pass over the same prompts are unchanged."""
    backbone = tiny.model.model
    samples = image_samples(tmp_path, 3)
    pixels = torch.stack([tiny.processor.preprocess_image(s.image) for s in samples])
    backbone._features.clear()
    calls = []
    encoder = backbone.vision_tower
    original = encoder.extract_features
    encoder.extract_features = lambda x: calls.append(len(x)) or original(x)
    try:
        first = backbone.encode_images(pixels)
        again = backbone.encode_images(pixels[[2, 0]])
        convs = [ARTIFACTS.render(samples[2], samples[:2]), ARTIFACTS.render(samples[1], samples[:1])]
        replies = [g.text for g in tiny.generate(convs, SHORT)]
    finally:
        encoder.extract_features = original
    assert calls == [1, 1, 1]  # each image once, alone; the demos' images came from the cache
    assert torch.equal(again, first[[2, 0]])
    dtype = backbone.projector.fc1.weight.dtype  # dtype auto: bf16 where the CPU is fast at it
    with torch.no_grad():
        batched = original(pixels.to(dtype))
    assert torch.allclose(first.float(), batched.float(), atol=1e-4 if dtype == torch.float32 else 5e-2)
    assert [g.text for g in tiny.generate(convs, SHORT)] == replies


def test_image_features_cache_takes_bfloat16(tiny, tmp_path: Path):
    """The default runs tiny-vlm in bf16 where the CPU is fast at it: the cache's key must
    not go through numpy, which has no bfloat16 (the default's first run crashed on it)."""
    backbone = tiny.model.model
    pixels = torch.stack([tiny.processor.preprocess_image(s.image) for s in image_samples(tmp_path, 3)])
    before = backbone.projector.fc1.weight.dtype
    backbone._features.clear()
    backbone.to(torch.bfloat16)
    try:
        feats = backbone.encode_images(pixels)
        assert feats.dtype == torch.bfloat16 and len(backbone._features) == 3
        assert torch.equal(backbone.encode_images(pixels[[1]]), feats[[1]])
    finally:
        backbone.to(before)
        backbone._features.clear()


def test_collate_puts_labels_on_answers_only(tiny, tmp_path: Path):
    s = image_samples(tmp_path, 3)
    proc = tiny.processor
    batch = proc.collate([with_answer(s[0]), with_answer(s[2], s[:2])])
    assert batch["pixel_values"].shape == (4, 3, 224, 224)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    decoded = [proc.tokenizer.decode(row[row != -100]) for row in batch["labels"]]
    assert decoded[0] == "<answer>[Grid artifacts, Phase ramp]</answer><|im_end|>"
    assert decoded[1].count("<answer>") == 3  # the demos' answers too (loss_on="all")
    last = proc.collate([with_answer(s[2], s[:2])], loss_on="last")["labels"][0]
    assert proc.tokenizer.decode(last[last != -100]) == "<answer>[Grid artifacts, Phase ramp]</answer><|im_end|>"
    # right padding, no image slot is ever a label
    assert batch["attention_mask"][0, -1] == 0 and not (batch["labels"] == proc.image_token_id).any()


def test_training_step_adapter_round_trip(tmp_path: Path):
    from peft import get_peft_model

    s = image_samples(tmp_path, 3)
    model, proc = load_for_training("tiny-vlm")
    cfg = tinyvlm.lora_config(r=4, alpha=4)
    model = get_peft_model(model, cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "projector" in n for n in trainable)
    batch = proc.collate([short_conv(s[0])])
    projector_before = model.get_base_model().projector.fc1.weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(3):
        loss = model(**batch).loss
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    bn = model.get_base_model().vision_tower._bn0
    assert not bn.training  # the frozen encoder's BatchNorm stays in eval mode while training

    out = tinyvlm.save_adapter(model, tmp_path / "adapter")
    assert (out / "adapter_config.json").is_file() and (out / tinyvlm.CONFIG_FILE).is_file()
    model.eval()
    conv = short_conv(s[2], answer=False)
    from ptychobench.models.hf import HFBackend

    in_memory = HFBackend(model, proc, vision=True, name="tiny-vlm").generate([conv], SHORT)[0]
    # in the in-memory model's number format: training loads float32 on the CPU, while `auto`
    # may pick bf16 there, and a bf16 model may part from float32 at a near-tie (which images
    # gave one depended on Python's per-process string hash until the fixture used crc32)
    loaded = load_backend("tiny-vlm", adapter=out, dtype=str(model.dtype).replace("torch.", ""))
    assert loaded.fingerprint()["adapter_hash"]
    assert loaded.generate([conv], SHORT)[0].text == in_memory.text
    loaded_proj = loaded.model.get_base_model().projector.fc1.weight
    assert not torch.equal(loaded_proj, projector_before)  # the trained projector came with the adapter


@pytest.mark.slow
def test_trl_sft_trainer_runs_on_tiny_vlm(tmp_path: Path):
    """The fine-tuning path: TRL's SFTTrainer with the processor's collator."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from peft import get_peft_model

    s = image_samples(tmp_path, 4)
    model, proc = load_for_training("tiny-vlm")
    model = get_peft_model(model, tinyvlm.lora_config())
    ds = datasets.Dataset.from_list([{"messages": with_answer(x)} for x in s])
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=2e-4,
        report_to=[],
        remove_unused_columns=False,
        save_strategy="no",
        dataset_kwargs={"skip_prepare_dataset": True},
        use_cpu=True,
    )
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=proc.tokenizer,
        data_collator=lambda rows: proc.collate([r["messages"] for r in rows]),
    )
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    tinyvlm.save_adapter(model, tmp_path / "adapter")
    assert load_backend("tiny-vlm", adapter=tmp_path / "adapter").generate([ARTIFACTS.render(s[0])], SHORT)[0].ok
