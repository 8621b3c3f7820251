"""The low-data fine-tuning stages (issue 27): label-aware sampling, answers in random
order, projector alignment before LoRA, and the ``lowdata`` profile that turns them on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ptychobench.data import load_dataset
from ptychobench.errors import ConfigError
from ptychobench.run.config import parse_config
from ptychobench.strategies.sft import recipe_for, training_conversations
from ptychobench.strategies.sft.align import align_projector
from ptychobench.strategies.sft.examples import balanced_draw
from ptychobench.strategies.sft.recipe import LOWDATA_STAGES
from ptychobench.tasks import NO_ARTIFACTS, get_task


def sim_v2_artifacts_train():
    return sorted(load_dataset("sim-v2").samples("artifacts", "train"), key=lambda s: s.id)


def test_balanced_draw_makes_the_majority_answer_rarer_and_is_seeded():
    train = sim_v2_artifacts_train()
    assert balanced_draw(train, 0.0) == list(range(len(train)))  # off: the split as it is

    def majority_share(idx: list[int]) -> float:
        return sum(train[i].labels == frozenset({NO_ARTIFACTS}) for i in idx) / len(idx)

    plain = majority_share(list(range(len(train))))
    half, full = balanced_draw(train, 0.5, seed=0), balanced_draw(train, 1.0, seed=0)
    assert len(half) == len(full) == len(train)
    assert plain > 0.4  # sim-v2: 144 of 312 training images have no artifact
    assert majority_share(half) < plain / 2 and majority_share(full) < majority_share(half)
    assert balanced_draw(train, 0.5, seed=0) == half and balanced_draw(train, 0.5, seed=1) != half


def test_shuffled_answers_keep_their_labels_and_change_only_the_order():
    train = sim_v2_artifacts_train()
    spec = get_task("artifacts")
    plain = training_conversations("artifacts", train)
    shuffled = training_conversations("artifacts", train, shuffle_labels=True)
    again = training_conversations("artifacts", train, shuffle_labels=True)
    assert shuffled == again  # seeded
    reordered = 0
    for s, a, b in zip(train, plain, shuffled):
        assert a[:-1] == b[:-1]  # the prompt is the evaluation's
        text_a, text_b = a[-1]["content"][0]["text"], b[-1]["content"][0]["text"]
        assert spec.parse(text_b).labels == s.labels
        reordered += text_a != text_b
    assert reordered > 10  # sim-v2 has dozens of multi-label images


def test_lowdata_profile_is_cpu_plus_the_stages_and_gpu_opts_in():
    for vision in (True, False):
        cpu, low = recipe_for("cpu", vision), recipe_for("lowdata", vision)
        assert low == recipe_for("cpu", vision, **LOWDATA_STAGES) and low != cpu
    gpu = recipe_for("gpu", True)
    assert (gpu.epochs, gpu.learning_rate, gpu.balance, gpu.align_epochs) == (50, 2e-4, 0.0, 0.0)
    assert recipe_for("gpu", True, align_epochs=1, balance=0.5).align_epochs == 1


def test_a_config_takes_the_lowdata_profile_and_refuses_a_bad_stage():
    exp = {"task": "artifacts", "model": "tiny-vlm", "strategies": ["sft"]}
    cfg = parse_config({"name": "x", "dataset": "sim-v2", "experiments": [{**exp, "sft": {"profile": "lowdata"}}]})
    assert cfg.experiments[0].sft["profile"] == "lowdata"
    with pytest.raises(ConfigError, match="balance"):
        parse_config({"name": "x", "dataset": "sim-v2", "experiments": [{**exp, "sft": {"balance": -1}}]})


class Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.projector = torch.nn.Linear(2, 2)
        self.language_model = torch.nn.Linear(2, 2)


def test_alignment_trains_the_projector_alone_then_restores_what_trains():
    model = Toy()
    model.language_model.weight.requires_grad_(False)  # as a LoRA base: frozen; its bias trains
    seen: dict[str, dict[str, bool]] = {}

    class FakeTrainer:
        state = SimpleNamespace(global_step=3, log_history=[{"step": 3, "loss": 0.5}])

        def train(self):
            seen["during"] = {n: p.requires_grad for n, p in model.named_parameters()}
            return SimpleNamespace(training_loss=0.5)

    def make_trainer(m, callbacks, **args):
        seen["args"] = args
        return FakeTrainer()

    recipe = recipe_for("lowdata", True)
    info = align_projector(model, make_trainer, recipe, "/tmp/unused")
    assert seen["during"] == {
        "projector.weight": True,
        "projector.bias": True,
        "language_model.weight": False,
        "language_model.bias": False,
    }
    assert seen["args"]["num_train_epochs"] == recipe.align_epochs
    assert seen["args"]["learning_rate"] == recipe.align_learning_rate
    assert {n: p.requires_grad for n, p in model.named_parameters()}["language_model.bias"] is True
    assert info == {"steps": 3, "train_loss": 0.5, "loss_curve": [{"step": 3, "loss": 0.5}]}


def test_adapters_trained_before_the_stages_keep_their_settings():
    from ptychobench.strategies.sft.manifest import settings_of

    ds = load_dataset("sim-v2")

    def recipe_keys(recipe) -> set[str]:
        return set(settings_of("artifacts", "tiny-vlm", ds, "h", recipe, None, 0, 0, 1, ["a"])["recipe"])

    assert not recipe_keys(recipe_for("cpu", True)) & {"balance", "shuffle_labels", "align_epochs", "word_align_steps"}
    assert {"balance", "shuffle_labels", "align_epochs", "align_learning_rate", "word_align_steps"} <= recipe_keys(
        recipe_for("lowdata", True)
    )


def cpu_and_lowdata_cells():
    """A config with one tiny-vlm SFT experiment per profile, ``cpu`` and ``lowdata``, and
    its two cells in that order."""
    from ptychobench.run.grid import expand

    exp = {"task": "artifacts", "model": "tiny-vlm", "strategies": ["sft"]}
    cfg = parse_config(
        {
            "name": "x",
            "dataset": "sim-v2",
            "experiments": [{**exp, "sft": {"profile": "cpu"}}, {**exp, "name": "low", "sft": {"profile": "lowdata"}}],
        }
    )
    cpu, low = expand(cfg)
    return cfg, cpu, low


def test_the_shard_planner_counts_the_alignment_stage():
    from ptychobench.run.plan import CostModel

    cfg, cpu, low = cpu_and_lowdata_cells()
    cost = CostModel(cfg, {"artifacts": {"train": 312, "test": 79}})
    assert cost.training(low) > cost.training(cpu) > 0


def test_the_aligned_projector_is_the_one_lora_starts_from_and_saves(tiny_dataset, tmp_path):
    """A real tiny-vlm run: the alignment stage's steps are in the manifest, and with LoRA's
    rate near zero the saved projector is still far from the random one: alignment moved it
    and the LoRA stage (peft's copy of the projector) started from it."""
    import json

    from ptychobench.models.tinyvlm import load_tiny_vlm
    from ptychobench.strategies import train_adapter
    from ptychobench.strategies.sft import MANIFEST

    out = tmp_path / "aligned"
    opts = dict(max_train_samples=4, batch_size=2, epochs=1, learning_rate=1e-9, warmup_steps=0)
    train_adapter("artifacts", "tiny-vlm", tiny_dataset, out, profile="lowdata", **opts, align_epochs=1)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["align"]["steps"] == 2 and manifest["steps"] == 2
    assert manifest["settings"]["recipe"]["align_epochs"] == 1

    fresh, _ = load_tiny_vlm(dtype="float32")
    tuned, _ = load_tiny_vlm(out, dtype="float32")
    w0 = fresh.projector.fc1.weight
    w1 = tuned.get_base_model().projector.fc1.weight
    assert (w1 - w0).abs().max() > 1e-4


def test_word_alignment_points_image_tokens_at_their_label_words():
    """Word alignment moves the projector alone, so that the mean of an image's tokens is
    nearer its own labels' words than the other labels' words; before it, the random
    projector's tokens show no such preference."""
    import torch
    from torch.nn import functional as F

    from ptychobench.models import load_for_training
    from ptychobench.strategies.sft.align import align_projector_to_words, label_words
    from ptychobench.tasks import ARTIFACT_LABELS

    model, processor = load_for_training("tiny-vlm")
    samples = sorted(load_dataset("sim-v2").samples("artifacts", "train"), key=lambda s: s.id)[:32]
    backbone = model.model
    embeddings = backbone.language_model.get_input_embeddings().weight
    directions = F.normalize(label_words(embeddings.detach(), processor, ARTIFACT_LABELS), dim=-1)
    pixels = torch.stack([processor.preprocess_image(s.image) for s in samples])
    y = torch.tensor([[lab in s.labels for lab in ARTIFACT_LABELS] for s in samples])

    def margin() -> float:
        with torch.no_grad():
            readout = F.normalize(backbone.image_features(pixels).mean(1), dim=-1) @ directions.T
        return float(readout[y].mean() - readout[~y].mean())

    lm_before = embeddings.detach().clone()
    trains = {n: p.requires_grad for n, p in model.named_parameters()}
    before = margin()
    info = align_projector_to_words(
        model, processor, samples, ARTIFACT_LABELS, recipe_for("lowdata", True, word_align_steps=80)
    )
    after = margin()
    assert abs(before) < 0.05 < after, (before, after)
    assert info["steps"] == 80 and info["loss_curve"][-1]["loss"] < info["loss_curve"][0]["loss"]
    assert torch.equal(embeddings.detach(), lm_before)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == trains


def test_a_profile_whose_stages_change_in_the_code_is_a_new_setting_for_its_cells(monkeypatch):
    """A cell answered by an adapter of the ``lowdata`` profile is keyed by what the profile
    resolves to, not only by the config's ``sft:`` block: when the code changes the profile
    (issue 27 added word alignment), a run does not reuse the old adapter's predictions."""
    from ptychobench.run.settings import settings_hash
    from ptychobench.strategies.sft import recipe as recipe_module

    cfg, cpu, low = cpu_and_lowdata_cells()

    def hashes() -> tuple[str, str]:
        return tuple(settings_hash(cfg, c, cfg.experiments[c.exp], "h") for c in (low, cpu))  # type: ignore[return-value]

    before = hashes()
    monkeypatch.setitem(recipe_module.LOWDATA_STAGES, "word_align_steps", 100)
    after = hashes()
    assert after[0] != before[0] and after[1] == before[1]
