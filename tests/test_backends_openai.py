"""OpenAI-compatible backend: retry logic against a fake client, then real HTTP on loopback
against llama-cpp-python's server serving the offline GGUF, including a server that goes
away mid-run and comes back."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from ptychobench.models import GenerationConfig, load_backend
from ptychobench.models.openai_api import OpenAIBackend

openai = pytest.importorskip("openai")
try:  # openai 3.x ships its HTTP client as httpx2; older versions use httpx
    import httpx2 as httpx
except ImportError:
    httpx = pytest.importorskip("httpx")

SHORT = GenerationConfig(max_new_tokens=8)


# ------------------------------------------------------------------ retry logic, no server
def _status_error(cls, status: int):
    req = httpx.Request("POST", "http://x/v1/chat/completions")
    return cls(f"HTTP {status}", response=httpx.Response(status, request=req), body=None)


class FakeCompletions:
    def __init__(self, script):
        self.script = list(script)
        self.calls = []
        self.lock = threading.Lock()

    def create(self, **kwargs):
        with self.lock:
            self.calls.append(kwargs)
            step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        msg = SimpleNamespace(content=f" reply to {kwargs['messages'][-1]['content']!s:.20} ")
        return SimpleNamespace(
            choices=[SimpleNamespace(message=msg, finish_reason="stop")],
            usage=SimpleNamespace(prompt_tokens=5, completion_tokens=2),
        )


def fake_backend(script, **kw):
    completions = FakeCompletions(script)
    client = SimpleNamespace(chat=SimpleNamespace(completions=completions))
    kw.setdefault("backoff_s", 0.001)
    return OpenAIBackend("m", base_url="http://fake/v1", client=client, **kw), completions


def conv(text: str = "hi", image: str | None = None):
    content = [{"type": "text", "text": text}]
    if image:
        content.append({"type": "image", "image_path": image})
    return [{"role": "system", "content": [{"type": "text", "text": "be brief"}]}, {"role": "user", "content": content}]


def test_retries_rate_limit_and_server_errors_then_succeeds():
    b, _ = fake_backend(
        [
            _status_error(openai.RateLimitError, 429),
            _status_error(openai.InternalServerError, 503),
            openai.APIConnectionError(request=httpx.Request("POST", "http://x")),
        ]
    )
    (g,) = b.generate([conv()], SHORT)
    assert g.ok and g.text.startswith("reply to")
    assert g.extra["attempts"] == 4 and len(g.extra["retried_after"]) == 3
    assert (g.prompt_tokens, g.completion_tokens) == (5, 2)


def test_client_errors_are_not_retried_and_come_back_as_errors():
    b, calls = fake_backend([_status_error(openai.BadRequestError, 400)])
    (g,) = b.generate([conv()], SHORT)
    assert not g.ok and "BadRequestError" in g.error and len(calls.calls) == 1


def test_gives_up_after_max_retries_without_raising():
    b, calls = fake_backend([_status_error(openai.InternalServerError, 500)] * 10, max_retries=2)
    (g,) = b.generate([conv()], SHORT)
    assert not g.ok and g.extra["attempts"] == 3 and len(calls.calls) == 3


def test_concurrent_batch_keeps_order_and_isolates_failures(tmp_path: Path):
    b, _ = fake_backend([], concurrency=4)
    batch = [conv(f"q{i}") for i in range(6)] + [conv("img", image=str(tmp_path / "missing.png"))]
    gens = b.generate(batch, SHORT)
    assert [g.text for g in gens[:6]] == [f"reply to q{i}" for i in range(6)]
    assert not gens[6].ok and "missing.png" in gens[6].error


def test_request_shape_images_and_sampling(tmp_path: Path):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("L", (4, 4), 7).save(img)
    b, calls = fake_backend([])
    b.generate([conv("look", image=str(img))], GenerationConfig(do_sample=True, temperature=0.3, min_p=0.1))
    req = calls.calls[0]
    assert req["messages"][0] == {"role": "system", "content": "be brief"}
    parts = req["messages"][1]["content"]
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == img.read_bytes()
    assert req["temperature"] == 0.3 and req["extra_body"] == {"min_p": 0.1}
    b.generate([conv()], SHORT)
    assert calls.calls[1]["temperature"] == 0.0 and "extra_body" not in calls.calls[1]


def test_openai_url_needs_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        load_backend("gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    b = load_backend("gpt-4o")
    assert b.fingerprint()["model"] == "gpt-4o" and not b.send_min_p


# ------------------------------------------------------------------ a real server on loopback
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama-cpp-python's server (through our AMX-safe entry point) serving the offline SmolLM2 GGUF on a fixed port."""

    def __init__(self, port: int, log: Path):
        from ptychobench.models.assets import smollm2_gguf_path

        self.port, self.log, self.gguf = port, log, smollm2_gguf_path()
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 60) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ptychobench.models.llamacpp_server",
                "--model",
                str(self.gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                "4096",
                "--model_alias",
                "smollm2",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: see {self.log}")
            try:
                urllib.request.urlopen(f"{self.base_url}/models", timeout=1)
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout} s: see {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(tmp_path: Path):
    pytest.importorskip("llama_cpp.server.app")
    s = LlamaServer(_free_port(), tmp_path / "server.log")
    s.start()
    yield s
    s.stop()


def param_samples(n: int):
    from ptychobench.data import Sample

    return [
        Sample(
            f"q{i:02d}",
            "test",
            "params",
            "integrated circuit",
            f"Integrated circuit at 8.8 keV, {200 + 50 * i} scan positions; the data error "
            f"stalls after {40 + i} iterations.",
            None,
            frozenset({"K"}),
            {},
        )
        for i in range(n)
    ]


def test_real_server_generates_over_http(server):
    from ptychobench.tasks import PARAMS

    b = load_backend("openai:smollm2", base_url=server.base_url, concurrency=2)
    gens = b.generate([PARAMS.render(s) for s in param_samples(3)], SHORT)
    assert all(g.ok and g.text for g in gens), gens
    assert all(g.prompt_tokens > 300 and 0 < g.completion_tokens <= 8 for g in gens)


def test_server_stopped_mid_run_then_restarted_rerun_completes_store(server, tmp_path: Path):
    from ptychobench.eval.predict import predict
    from ptychobench.eval.store import PredictionStore
    from ptychobench.tasks import PARAMS

    samples = param_samples(6)
    store = PredictionStore(tmp_path / "predictions.jsonl")
    b = load_backend(
        "openai:smollm2", base_url=server.base_url, concurrency=2, max_retries=1, backoff_s=0.05, timeout_s=20
    )
    done = []

    def stop_after_first_batch(n: int) -> None:
        done.append(n)
        if len(done) == 1:
            server.stop()

    predict(PARAMS, samples, b, store, "cfg", {}, SHORT, batch_size=2, on_done=stop_after_first_batch)
    recs = store.records()
    assert len(recs) == 6  # every sample is in the store: none dropped
    failed = [r for r in recs if r["error"]]
    assert len(failed) == 4 and all("Connection" in r["error"] for r in failed)
    assert sum(store.is_done("cfg", s.id) for s in samples) == 2

    server.start()
    regenerated = predict(PARAMS, samples, b, PredictionStore(store.path), "cfg", {}, SHORT, batch_size=2)
    assert regenerated == 4  # only the failed ones ran again
    final = PredictionStore(store.path)
    assert all(final.is_done("cfg", s.id) for s in samples)
    assert all(r["reply"] for r in final.records())


def test_outage_shorter_than_the_backoff_is_ridden_out(server):
    from ptychobench.tasks import PARAMS

    server.stop()
    restart = threading.Timer(1.0, server.start)
    restart.start()
    b = load_backend(
        "openai:smollm2", base_url=server.base_url, concurrency=2, max_retries=8, backoff_s=0.5, max_backoff_s=4
    )
    try:
        gens = b.generate([PARAMS.render(s) for s in param_samples(2)], SHORT)
    finally:
        restart.join()
    assert all(g.ok for g in gens), [g.error for g in gens]
    assert max(g.extra["attempts"] for g in gens) > 1
