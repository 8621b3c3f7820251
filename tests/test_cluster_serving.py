"""Serving adapters by name, the way a vLLM server does, with llama.cpp's server as the
stand-in: one server holds the base model and a LoRA adapter under two model names; the
run's cells name them through the OpenAI-compatible backend, and the adapter's cell
answers as the same adapter does in transformers.

The adapter is a peft LoRA on SmolLM2-135M with random B matrices (no training needed to
tell it from the base); :func:`peft_to_gguf_lora` converts it to llama.cpp's GGUF LoRA
format the way llama.cpp's ``convert_lora_to_gguf.py`` does (that script is not in the
pip package). vLLM itself loads the peft folder directly (``--lora-modules name=folder``);
it was not run here (no GPU). Measured: 6.5 s for the served run on a quiet moment of
the shared 2-core machine, 70 s on a busy one."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ptychobench.eval.store import read_run
from ptychobench.run import Runner, parse_config

pytest.importorskip("llama_cpp.server.app")
pytest.importorskip("openai")


def peft_to_gguf_lora(adapter_dir: Path, out: Path, n_head: int, n_kv_head: int, n_layers: int) -> Path:
    """A peft LoRA of a Llama-family model -> a GGUF LoRA adapter llama.cpp loads
    (``lora_path``). llama.cpp stores q and k rows in rotary-permuted order, so lora_B of
    q_proj and k_proj is permuted the same way; lora_A keeps [r, in], lora_B [out, r]."""
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    writer = gguf.GGUFWriter(str(out), arch="llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg["lora_alpha"]))
    for key in sorted(k for k in weights if ".lora_A." in k):
        module = key.removeprefix("base_model.model.").replace(".lora_A.weight", "")
        a = weights[key].astype(np.float32)
        b = weights[key.replace("lora_A", "lora_B")].astype(np.float32)
        leaf = module.rsplit(".", 1)[-1]
        if leaf in ("q_proj", "k_proj"):
            h = n_head if leaf == "q_proj" else n_kv_head
            b = b.reshape(h, 2, b.shape[0] // h // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)
        name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        assert name, f"no GGUF name for {module}"
        writer.add_tensor(name + ".lora_a", np.ascontiguousarray(a))
        writer.add_tensor(name + ".lora_b", np.ascontiguousarray(b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture(scope="module")
def lora(tmp_path_factory) -> tuple[Path, Path]:
    """(peft folder, GGUF file) of a random LoRA on SmolLM2-135M's projections."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ptychobench.models import load_for_training
    from ptychobench.strategies.sft import PROJECTIONS

    tmp = tmp_path_factory.mktemp("lora")
    model, tok = load_for_training("smollm2-135m")
    c = model.config
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=list(PROJECTIONS)))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)
    peft_model.save_pretrained(tmp / "peft")
    tok.save_pretrained(tmp / "peft")
    gguf_file = peft_to_gguf_lora(
        tmp / "peft", tmp / "lora.gguf", c.num_attention_heads, c.num_key_value_heads, c.num_hidden_layers
    )
    return tmp / "peft", gguf_file


@pytest.fixture
def lora_server(lora, tmp_path):
    """llama.cpp's server: the base GGUF as ``smollm2``, base + LoRA as ``smollm2-lora-a``."""
    from ptychobench.models.assets import smollm2_gguf_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gguf_base = str(smollm2_gguf_path())
    cfg = tmp_path / "server.json"
    cfg.write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": port,
                "models": [
                    {"model": gguf_base, "model_alias": "smollm2", "n_ctx": 4096, "verbose": False},
                    {
                        "model": gguf_base,
                        "model_alias": "smollm2-lora-a",
                        "lora_path": str(lora[1]),
                        "n_ctx": 4096,
                        "verbose": False,
                    },
                ],
            }
        )
    )
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptychobench.models.llamacpp_server", "--config_file", str(cfg)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1)
                break
            except OSError:
                assert time.time() < deadline, "server did not start: " + log.read_text()[-2000:]
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _prompt_ids(tokenizer, messages) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_gguf_lora_is_the_peft_adapter(lora, tiny_dataset):
    """Next-token logits over a whole rendered prompt: llama.cpp + the converted LoRA agrees
    with transformers + the peft adapter, and far better than llama.cpp's base model does
    (measured on this prompt: top-1 95.4% vs 73.6%; last-position correlation 0.99943 vs
    0.97532)."""
    import torch

    from ptychobench.data import load_dataset
    from ptychobench.models import load_backend
    from ptychobench.models.assets import smollm2_gguf_path
    from ptychobench.models.chat import to_openai_messages
    from ptychobench.models.llamacpp import open_llama
    from ptychobench.tasks import get_task

    sample = load_dataset(tiny_dataset).samples("params", "test")[0]
    hf = load_backend("smollm2-135m", adapter=lora[0])
    ids = _prompt_ids(hf.tokenizer, to_openai_messages(get_task("params").render(sample)))
    with torch.no_grad():
        want = hf.model(input_ids=torch.tensor([ids])).logits[0].float().numpy()

    def llama_cpp_logits(lora_path):
        llm = open_llama(smollm2_gguf_path(), n_ctx=2048, lora_path=lora_path, logits_all=True, verbose=False)
        llm.eval(ids)
        out = np.array(llm.scores[: len(ids)])
        llm.close()
        return out

    adapted, base = llama_cpp_logits(str(lora[1])), llama_cpp_logits(None)
    top1 = (adapted.argmax(1) == want.argmax(1)).mean()
    top1_base = (base.argmax(1) == want.argmax(1)).mean()
    assert top1 >= 0.93 and top1 > top1_base + 0.1, (top1, top1_base)
    assert np.corrcoef(adapted[-1], want[-1])[0, 1] >= 0.998


def test_one_adapter_per_cell_by_model_name(lora, lora_server, tiny_dataset, tmp_path):
    opts = {"base_url": lora_server, "concurrency": 1}
    cfg = parse_config(
        {
            "name": "served",
            "dataset": str(tiny_dataset),
            "limit": 2,
            "max_new_tokens": 8,
            "experiments": [
                {"task": "params", "model": "openai:smollm2", "backend_options": opts},
                {"task": "params", "name": "smollm2+lora-a", "model": "openai:smollm2-lora-a", "backend_options": opts},
            ],
        },
        "served.yaml",
    )
    Runner(cfg, tmp_path / "run").run()
    by_cell: dict[str, dict[str, dict]] = {}
    for r in read_run(tmp_path / "run"):
        by_cell.setdefault(r["config"], {})[r["sample_id"]] = r
    base = by_cell["params/openai:smollm2/zero-shot/-/k0/seed0/nall"]
    served = by_cell["params/smollm2+lora-a/zero-shot/-/k0/seed0/nall"]
    assert len(base) == len(served) == 2
    assert all(not r["error"] and r["reply"] for r in [*base.values(), *served.values()])
    assert {r["components"]["model"]["model"] for r in served.values()} == {"smollm2-lora-a"}
    # the server routed by name: the adapter's replies are not the base model's ...
    assert all(served[s]["reply"] != base[s]["reply"] for s in base)
    # ... they are llama.cpp's with that LoRA loaded (same engine, greedy: the same text)
    from ptychobench.data import load_dataset
    from ptychobench.models.assets import smollm2_gguf_path
    from ptychobench.models.chat import to_openai_messages
    from ptychobench.models.llamacpp import open_llama
    from ptychobench.tasks import get_task

    llm = open_llama(smollm2_gguf_path(), n_ctx=4096, lora_path=str(lora[1]), verbose=False)
    gen = cfg.generation()
    for s in load_dataset(tiny_dataset).samples("params", "test")[:2]:
        r = llm.create_chat_completion(
            messages=to_openai_messages(get_task("params").render(s)),
            max_tokens=gen.max_new_tokens,
            temperature=0.0,
            seed=gen.seed,
            stop=list(gen.stop) or None,
        )
        assert r["choices"][0]["message"]["content"].strip() == served[s.id]["reply"].strip()
    llm.close()
