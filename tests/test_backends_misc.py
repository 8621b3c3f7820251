"""Message conversion, the load_backend factory and presets, and the llama.cpp backend."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ptychobench.models import PRESETS, GenerationConfig, load_backend
from ptychobench.models.chat import (
    merge_system,
    render_with_fallback,
    to_openai_messages,
    to_text_messages,
    to_vision_messages,
)

SYSTEM = {"role": "system", "content": [{"type": "text", "text": "instructions"}]}


def user(*parts):
    return {"role": "user", "content": list(parts)}


def text(t):
    return {"type": "text", "text": t}


def image(p):
    return {"type": "image", "image_path": str(p)}


def test_merge_system_leads_the_first_user_turn():
    conv = [SYSTEM, user(text("q1")), {"role": "assistant", "content": [text("a1")]}, user(text("q2"))]
    merged = merge_system(conv)
    assert [m["role"] for m in merged] == ["user", "assistant", "user"]
    assert merged[0]["content"][0]["text"] == "instructions" and merged[0]["content"][1]["text"] == "q1"
    assert conv[1]["content"] == [text("q1")]  # the input is not modified


def test_render_with_fallback_merges_once_and_remembers():
    calls = []

    def render(c):
        calls.append([m["role"] for m in c])
        if c[0]["role"] == "system":
            raise ValueError("System role not supported")
        return "ok"

    state: dict = {}
    assert render_with_fallback(render, [SYSTEM, user(text("q"))], state) == "ok"
    assert state == {"merge_system": True}
    render_with_fallback(render, [SYSTEM, user(text("q"))], state)
    assert calls == [["system", "user"], ["user"], ["user"]]


def test_conversions(tmp_path: Path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG fake")
    conv = [
        SYSTEM,
        user(text("demo"), image(png)),
        {"role": "assistant", "content": [text("a")]},
        user(text("query"), image(png), text("which?")),
    ]
    msgs, paths = to_vision_messages(conv)
    assert paths == [str(png), str(png)]
    assert msgs[3]["content"] == [text("query"), {"type": "image"}, text("which?")]
    oa = to_openai_messages(conv)
    assert oa[0] == {"role": "system", "content": "instructions"}
    url = oa[1]["content"][1]["image_url"]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == png.read_bytes()
    with pytest.raises(ValueError, match="2 image"):
        to_text_messages(conv)
    assert to_text_messages([SYSTEM, user(text("a"), text("b"))])[1] == {"role": "user", "content": "a\nb"}


def test_factory_rejects_unknown_names_and_lists_presets():
    with pytest.raises(ValueError, match="smollm2-135m"):
        load_backend("no-such-model")
    with pytest.raises(ValueError, match="adapter"):
        load_backend("openai:gpt-4o", adapter="/tmp/x")
    for name in (
        "smollm2-135m",
        "tiny-vlm",
        "llama-3.2-11b-vision",
        "llama-3.2-90b-vision",
        "llama-3.1-8b",
        "llama-3.1-70b",
        "gpt-4o",
        "qwen2.5-vl-7b",
    ):
        assert name in PRESETS
    assert PRESETS["llama-3.2-11b-vision"].model == "meta-llama/Llama-3.2-11B-Vision-Instruct"


# ------------------------------------------------------------------ llama.cpp
@pytest.fixture(scope="module")
def gguf():
    pytest.importorskip("llama_cpp")
    return load_backend("smollm2-135m-gguf", n_ctx=2048)


def test_llamacpp_generates_deterministically(gguf, tmp_path: Path):
    from ptychobench.data import Sample
    from ptychobench.tasks import PARAMS

    s = Sample(
        "p0",
        "test",
        "params",
        "integrated circuit",
        "Integrated circuit, 500 scan positions.",
        None,
        frozenset({"K"}),
        {},
    )
    conv = PARAMS.render(s)
    cfg = GenerationConfig(max_new_tokens=8)
    a, b = gguf.generate([conv, conv], cfg)
    assert a.ok and a.text and a.text == b.text
    assert a.prompt_tokens > 300 and 0 < a.completion_tokens <= 8
    fp = gguf.fingerprint()
    assert fp["backend"] == "llamacpp" and fp["model"] == "smollm2-135m-gguf" and fp["revision"]
    (bad,) = gguf.generate([[SYSTEM, user(text("look"), image(tmp_path / "x.png"))]], cfg)
    assert not bad.ok and "text only" in bad.error


def test_llamacpp_by_path():
    pytest.importorskip("llama_cpp")
    from ptychobench.models.assets import smollm2_gguf_path

    b = load_backend(f"llamacpp:{smollm2_gguf_path()}", n_ctx=512)
    (g,) = b.generate([[user(text("Say hi."))]], GenerationConfig(max_new_tokens=4))
    assert g.ok and b.fingerprint()["model"] == smollm2_gguf_path().name


def test_text_training_batch_labels_answers_only():
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from ptychobench.models.assets import smollm2_transformers_dir
    from ptychobench.models.collate import conversation_batch

    tok = AutoTokenizer.from_pretrained(smollm2_transformers_dir())
    conv = [SYSTEM, user(text("q1")), {"role": "assistant", "content": [text("<answer>G, K</answer>")]}]
    batch = conversation_batch(tok, [conv, conv[:1] + [user(text("a longer question here"))] + conv[2:]])
    labels = batch["labels"]
    assert [tok.decode(row[row != -100]) for row in labels] == ["<answer>G, K</answer><|im_end|>"] * 2
    assert "pixel_values" not in batch and batch["attention_mask"].sum() < batch["attention_mask"].numel()


def test_llamacpp_loads_without_extra_buffers_on_amx(monkeypatch):
    """llama-cpp-python 0.3.36's AMX kernels segfault on the SmolLM2 Q4_1 GGUF: on AMX CPUs
    models load with ``use_extra_bufts`` off, and the library's defaults come back after."""
    lib = pytest.importorskip("llama_cpp.llama_cpp")
    from ptychobench.models import llamacpp

    monkeypatch.setattr(llamacpp, "cpu_has_amx", lambda: True)
    assert lib.llama_model_default_params().use_extra_bufts
    with llamacpp.without_extra_buffers():
        assert not lib.llama_model_default_params().use_extra_bufts
    assert lib.llama_model_default_params().use_extra_bufts
    monkeypatch.setattr(llamacpp, "cpu_has_amx", lambda: False)
    with llamacpp.without_extra_buffers():
        assert lib.llama_model_default_params().use_extra_bufts
