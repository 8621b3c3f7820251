"""LoRA fine-tuning: the recipe, the shared-prefix loss, and real adapters that learn and load."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from ptychobench.data import load_dataset
from ptychobench.strategies.sft import (
    MANIFEST,
    PROJECTIONS,
    Recipe,
    lora_targets,
    recipe_for,
    shared_prefix_length,
    shared_prefix_loss,
    training_conversations,
)
from ptychobench.tasks import get_task


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(cfg)


# ----------------------------------------------------------------- recipe and targets


def test_gpu_profile_is_the_paper_recipe():
    llm, vlm = recipe_for("gpu", vision=False), recipe_for("gpu", vision=True)
    for r in (llm, vlm):
        assert (r.lora_r, r.lora_alpha, r.lora_dropout) == (16, 16, 0.0)
        assert (r.epochs, r.learning_rate, r.weight_decay, r.scheduler, r.warmup_steps, r.max_length) == (
            50,
            2e-4,
            0.01,
            "linear",
            5,
            2048,
        )
        assert r.target_modules == PROJECTIONS and r.lora_layers is None
    assert llm.batch_size * llm.grad_accum == 32 and vlm.batch_size * vlm.grad_accum == 8
    cpu = recipe_for("cpu", vision=False, epochs=1)
    assert cpu.epochs == 1 and cpu.share_prefix
    with pytest.raises(ValueError, match="unknown training option"):
        recipe_for("cpu", vision=False, epoch=3)
    with pytest.raises(ValueError, match="profile"):
        recipe_for("tpu", vision=False)


def test_config_reads_yaml_numbers_written_as_exponents_and_refuses_words():
    """PyYAML reads ``3e-3`` as a string; the optimiser used to reject it with a traceback
    deep inside the trainer. The config now turns it into a number, and names a bad value."""
    import yaml

    from ptychobench.errors import ConfigError
    from ptychobench.run.config import parse_config

    def cfg(sft: str) -> dict:
        return yaml.safe_load(
            "name: x\ndataset: d\nexperiments:\n  - task: params\n    model: smollm2-135m\n"
            f"    strategies: [sft]\n    sft: {sft}\n"
        )

    raw = cfg("{learning_rate: 3e-3, epochs: 1, lora_r: 8}")
    assert raw["experiments"][0]["sft"]["learning_rate"] == "3e-3"  # what PyYAML gives
    exp = parse_config(raw, "x.yaml").experiments[0]
    assert exp.sft == {"learning_rate": 0.003, "epochs": 1, "lora_r": 8}
    assert isinstance(exp.sft["epochs"], int)  # numbers stay as written: adapter keys unchanged
    assert recipe_for("cpu", vision=False, **exp.sft).learning_rate == 0.003
    with pytest.raises(ConfigError, match=r"x.yaml: experiments\[0\]: sft: training option learning_rate: 'fast'"):
        parse_config(cfg("{learning_rate: fast}"), "x.yaml")
    with pytest.raises(ConfigError, match="lora_r: 2.5 is not a whole number"):
        parse_config(cfg("{lora_r: 2.5}"), "x.yaml")
    with pytest.raises(ConfigError, match="lora_r: 'inf' is not a whole number"):  # was an OverflowError
        parse_config(cfg("{lora_r: inf}"), "x.yaml")


def test_lora_targets_top_layers_only():
    model = tiny_llama()
    every = lora_targets(model, Recipe())
    assert len(every) == 4 * len(PROJECTIONS)
    top = lora_targets(model, Recipe(lora_layers=1))
    assert len(top) == len(PROJECTIONS) and all(".layers.3." in n for n in top)
    attn = lora_targets(model, Recipe(target_modules=("q_proj", "v_proj")))
    assert len(attn) == 8


# ----------------------------------------------------------------- shared-prefix loss


def test_shared_prefix_length_stops_before_labels_and_images():
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 0], [1, 2, 3, 4, 7, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]])
    labels = torch.full_like(ids, -100)
    assert shared_prefix_length(ids, mask, labels) == 4
    labels[1, 3] = 4  # the token at 3 is a label: its prediction needs position 2's output
    assert shared_prefix_length(ids, mask, labels) == 2
    labels[:] = -100
    assert shared_prefix_length(ids, mask, labels, stop_ids=(3,)) == 2


def test_shared_prefix_loss_and_gradients_equal_the_plain_forward():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=list(PROJECTIONS)))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)  # active adapters, so the prefix's gradients matter
    torch.manual_seed(1)
    prefix = torch.randint(3, 128, (1, 20)).repeat(3, 1)
    rest = torch.randint(3, 128, (3, 9))
    ids = torch.cat([prefix, rest], 1)
    mask = torch.ones_like(ids)
    mask[2, -3:] = 0  # right padding
    labels = ids.clone()
    labels[:, :24] = -100
    labels[mask == 0] = -100
    p = shared_prefix_length(ids, mask, labels)
    assert p == 20

    def ce(logits, target):
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100
        )

    model.zero_grad()
    plain = ce(model(input_ids=ids, attention_mask=mask).logits[:, :-1], labels[:, 1:])
    plain.backward()
    g_plain = [q.grad.clone() for q in model.parameters() if q.requires_grad]
    model.zero_grad()
    loss_sum, n = shared_prefix_loss(model, {"input_ids": ids, "attention_mask": mask, "labels": labels}, p)
    shared = loss_sum / n
    shared.backward()
    g_shared = [q.grad for q in model.parameters() if q.requires_grad]
    assert torch.allclose(plain, shared, atol=1e-5)
    for a, b in zip(g_plain, g_shared):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------- training examples


def test_training_conversations_use_the_evaluation_render(tiny_dataset: Path):
    ds = load_dataset(tiny_dataset)
    train = ds.samples("params", "train")
    spec = get_task("params")
    convs = training_conversations("params", train)
    for s, conv in zip(train, convs):
        assert conv[:-1] == spec.render(s)
        assert conv[-1] == {"role": "assistant", "content": [{"type": "text", "text": spec.target(s.labels)}]}
    with_demos = training_conversations("params", train, demo_selector="random", k=3, seed=1)
    for s, conv in zip(train, with_demos):
        assert len(conv) == 1 + 2 * 3 + 2
        demo_texts = [m["content"][0]["text"] for m in conv[1:-2:2]]
        assert s.text not in demo_texts  # the query is never its own demo
    with pytest.raises(ValueError, match="train split only"):
        training_conversations("params", ds.samples("params", "test"))


def test_loss_is_on_the_last_answer_only(tiny_dataset: Path):
    from transformers import AutoTokenizer

    from ptychobench.models.assets import smollm2_transformers_dir
    from ptychobench.models.collate import conversation_batch

    tok = AutoTokenizer.from_pretrained(smollm2_transformers_dir())
    ds = load_dataset(tiny_dataset)
    train = ds.samples("params", "train")
    convs = training_conversations("params", train[:4], demo_selector="random", k=2)
    batch = conversation_batch(tok, convs, loss_on="last")
    for row, s in enumerate(train[:4]):
        answer = tok.decode(batch["labels"][row][batch["labels"][row] != -100])
        assert answer.startswith(get_task("params").target(s.labels))


# ----------------------------------------------------------------- real adapters


@pytest.fixture
def timed_threads():
    """Inference in these tests uses the thread count training would pick: on a busy CPU,
    OpenMP threads stalling at barriers make 2 threads ~10x slower than 1 (ptychobench.models.cpu)."""
    from ptychobench.models.cpu import cpu_threads

    before = torch.get_num_threads()
    torch.set_num_threads(cpu_threads())
    yield
    torch.set_num_threads(before)


def _loss(model, processor, convs) -> float:
    from ptychobench.models.collate import conversation_batch

    batch = conversation_batch(processor, convs, loss_on="last")
    with torch.no_grad():
        return float(model(**batch).loss)


def _assert_adapter_lowers_loss(backend, processor, dataset: Path, task: str) -> None:
    """The adapter's answer loss on the train split is clearly below the base model's."""
    train = sorted(load_dataset(dataset).samples(task, "train"), key=lambda s: s.id)
    convs = training_conversations(task, train)
    tuned = _loss(backend.model, processor, convs)
    with backend.model.disable_adapter():
        base = _loss(backend.model, processor, convs)
    assert tuned < base - 0.2, f"adapter loss {tuned:.3f} vs base {base:.3f}"


def test_smollm2_adapter_learns_loads_and_is_reused(tiny_dataset: Path, tmp_path: Path, timed_threads):
    from ptychobench.models import GenerationConfig, load_backend
    from ptychobench.strategies import train_adapter

    out = tmp_path / "adapter"
    opts = dict(max_train_samples=8, epochs=4, batch_size=4, learning_rate=2e-3, warmup_steps=1)
    train_adapter("params", "smollm2-135m", tiny_dataset, out, profile="cpu", **opts)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["settings"]["base_model"] == "smollm2-135m"
    assert manifest["settings"]["dataset"]["content_hash"]
    assert manifest["steps"] == 8 and manifest["wall_time_s"] > 0 and manifest["tokens_per_s"] > 0
    assert len(manifest["train_loss_curve"]) == 8

    backend = load_backend("smollm2-135m", adapter=out)
    _assert_adapter_lowers_loss(backend, backend.tokenizer, tiny_dataset, "params")
    ds = load_dataset(tiny_dataset)
    spec = get_task("params")
    gens = backend.generate(
        [spec.render(s) for s in ds.samples("params", "test")[:2]], GenerationConfig(max_new_tokens=12)
    )
    assert all(g.ok and g.text for g in gens)
    assert backend.fingerprint()["adapter_hash"]

    t0 = time.perf_counter()
    train_adapter("params", "smollm2-135m", tiny_dataset, out, profile="cpu", **opts)
    assert time.perf_counter() - t0 < 5  # same settings: reused, not retrained
    assert json.loads((out / MANIFEST).read_text())["created"] == manifest["created"]


def test_training_twice_gives_the_same_adapter(tiny_dataset: Path, tmp_path: Path, monkeypatch):
    """Issue 23: same config, same dtype -> the same adapter, whatever else the machine runs
    (the thread count, which changes the reduction order, no longer depends on its load) and
    whether the offline model was converted in this process (first run) or loaded (later)."""
    from ptychobench.models.assets import smollm2_transformers_dir
    from ptychobench.strategies import train_adapter

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("PTYCHOBENCH_CACHE", str(tmp_path / "cache"))  # the first training converts the GGUF
    opts = dict(max_train_samples=4, epochs=2, batch_size=2, learning_rate=3e-3, warmup_steps=1, bf16=False)
    curves = []
    for name in ("a", "b"):
        train_adapter("params", "smollm2-135m", tiny_dataset, tmp_path / name, profile="cpu", **opts)
        curves.append([c["loss"] for c in json.loads((tmp_path / name / MANIFEST).read_text())["train_loss_curve"]])
    assert len(curves[0]) == 4 and curves[0] == curves[1]
    assert smollm2_transformers_dir().is_relative_to(tmp_path / "cache")  # converted here, then reused


def test_a_time_guard_that_cuts_training_short_saves_no_adapter(tiny_dataset: Path, tmp_path: Path):
    """Issue 23: a shorter adapter's score would depend on the machine's speed, so the guard
    fails the run (one clear error) and leaves no adapter behind, not a partly trained one."""
    from ptychobench.errors import TrainingCutShort
    from ptychobench.strategies import train_adapter

    out = tmp_path / "adapter"
    opts = dict(max_train_samples=8, epochs=50, batch_size=4, warmup_steps=1, time_budget_s=0.01)
    with pytest.raises(TrainingCutShort, match=r"stopped training after 1 of 100 steps"):
        train_adapter("params", "smollm2-135m", tiny_dataset, out, profile="cpu", **opts)
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


@pytest.mark.slow
def test_tiny_vlm_adapter_learns_and_loads(tiny_dataset: Path, tmp_path: Path, timed_threads):
    from ptychobench.models import GenerationConfig, load_backend
    from ptychobench.strategies import train_adapter

    out = tmp_path / "vlm-adapter"
    train_adapter(
        "artifacts",
        "tiny-vlm",
        tiny_dataset,
        out,
        profile="cpu",
        max_train_samples=8,
        epochs=4,
        batch_size=4,
        learning_rate=2e-3,
        warmup_steps=1,
    )
    assert (out / "tinyvlm_config.json").is_file() and (out / MANIFEST).is_file()
    backend = load_backend("tiny-vlm", adapter=out)
    _assert_adapter_lowers_loss(backend, backend.processor, tiny_dataset, "artifacts")
    ds = load_dataset(tiny_dataset)
    spec = get_task("artifacts")
    gens = backend.generate([spec.render(ds.samples("artifacts", "test")[0])], GenerationConfig(max_new_tokens=12))
    assert gens[0].ok and gens[0].text


def test_train_adapter_refuses_test_samples_and_bad_options(tiny_dataset: Path, tmp_path: Path):
    from ptychobench.strategies import train_adapter

    ds = load_dataset(tiny_dataset)
    test = ds.samples("params", "test")
    with pytest.raises(ValueError, match="train samples only"):
        train_adapter("params", "smollm2-135m", tiny_dataset, tmp_path / "a", train_samples=test[:2])
    with pytest.raises(ValueError, match="demo selector"):
        train_adapter("params", "smollm2-135m", tiny_dataset, tmp_path / "a", k=3)
    with pytest.raises(ValueError, match="vision-language"):
        train_adapter("artifacts", "smollm2-135m", tiny_dataset, tmp_path / "a")
    with pytest.raises(ValueError, match="unknown training option"):
        train_adapter("params", "smollm2-135m", tiny_dataset, tmp_path / "a", epoch=1)
    assert not (tmp_path / "a").exists()
