"""Data-parallel LoRA fine-tuning: ``ptychobench train --processes 2`` (torchrun, gloo on
the CPU) gives the loss curve of one process with the same effective batch.

Why they should agree: the Trainer hands process r every other batch of the same seeded
order, DDP averages the two processes' gradients, and the loss is normalized by the
tokens of the whole step across processes, so each step sees the same samples and the
same gradient as one process with twice the per-device batch. Left out: bf16 autocast
(its rounding differs with batch shape) and the shared-prefix loss (a CPU speed-up whose
prefix depends on which samples share a batch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: largest allowed difference between the two loss curves, step by step (measured: < 1e-5)
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide Llama with SmolLM2's tokenizer and chat template (random weights)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ptychobench.models.assets import smollm2_transformers_dir

    out = tmp_path_factory.mktemp("tinyllama")
    tok = AutoTokenizer.from_pretrained(smollm2_transformers_dir())
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _train(model: Path, dataset: Path, out: Path, batch: int, processes: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "ptychobench.cli",
        "train",
        "--task",
        "params",
        "--model",
        f"hf:{model}",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--set",
        f"batch_size={batch}",
        "--set",
        "grad_accum=1",
        "--set",
        "epochs=2",
        "--set",
        "learning_rate=0.01",
        "--set",
        "warmup_steps=0",
        "--set",
        "bf16=false",
        "--set",
        "share_prefix=false",
        "--set",
        "lora_layers=null",
        "--set",
        "max_train_samples=8",
        "--processes",
        str(processes),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads((out / "ptychobench_adapter.json").read_text())


@pytest.mark.slow
def test_two_cpu_processes_give_the_one_process_loss_curve(tiny_hf_model, tiny_dataset, tmp_path):
    one = _train(tiny_hf_model, tiny_dataset, tmp_path / "one", batch=4, processes=1)
    two = _train(tiny_hf_model, tiny_dataset, tmp_path / "two", batch=2, processes=2)
    a = [p["loss"] for p in one["train_loss_curve"]]
    b = [p["loss"] for p in two["train_loss_curve"]]
    assert len(a) == len(b) == 4  # 8 samples, 4 a step, 2 epochs
    assert max(abs(x - y) for x, y in zip(a, b)) <= TOLERANCE, (a, b)
    assert a[-1] < a[0]  # it learns
    assert two["settings"]["processes"] == 2 and "processes" not in one["settings"]
    # the adapters agree too (same gradients each step)
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "one" / "adapter_model.safetensors")
    wb = load_file(tmp_path / "two" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4
