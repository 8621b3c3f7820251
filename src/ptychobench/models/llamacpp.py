"""llama.cpp backend (llama-cpp-python) for GGUF language models on the CPU.

Uses the chat template stored in the GGUF file. llama.cpp keeps the key-value cache of
the previous prompt, so conversations sharing a prefix (the task's system turn) skip
recomputing it. Text only: a conversation with images is answered with an error.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .assets import file_sha256
from .base import GREEDY, Conversation, Generation, GenerationConfig
from .chat import is_role_error, render_with_fallback, to_text_messages


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX tiles (Sapphire Rapids and later), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_int8" in line.split()
    except OSError:
        pass
    return False


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def without_extra_buffers() -> Iterator[None]:
    """Load llama.cpp models without its extra CPU buffer types (AMX, weight repacking).

    llama-cpp-python 0.3.36's AMX matrix multiply segfaults on the first decode of the
    offline SmolLM2 Q4_1 GGUF on an AMX CPU (seen on a Xeon with AMX: ``ggml_backend_amx_mul_mat``).
    llama.cpp's ``use_extra_bufts`` model parameter turns those buffers off, but
    llama-cpp-python's ``Llama`` does not expose it, so its default parameters are wrapped
    while a model loads. Only on AMX CPUs: elsewhere the repacked weights stay (faster).
    """
    if not cpu_has_amx():
        yield
        return
    import llama_cpp.llama_cpp as lib

    with _PARAMS_LOCK:
        original = lib.llama_model_default_params

        def params() -> Any:
            p = original()
            p.use_extra_bufts = False
            return p

        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def open_llama(model_path: str | Path, **kwargs: Any) -> Any:
    """``llama_cpp.Llama(model_path, **kwargs)``, safe on AMX CPUs (see ``without_extra_buffers``)."""
    from llama_cpp import Llama

    with without_extra_buffers():
        return Llama(model_path=str(model_path), **kwargs)


class LlamaCppBackend:
    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        name: str | None = None,
        **llama_kwargs: Any,
    ):
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "the llamacpp backend needs llama-cpp-python: pip install 'ptychobench[llamacpp]'"
            ) from None
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"GGUF file {self.model_path} not found")
        self.name = name or self.model_path.name
        self.n_ctx = n_ctx
        self.llama = open_llama(
            self.model_path,
            n_ctx=n_ctx,
            n_threads=n_threads or _cpu_threads(),
            n_batch=n_batch,
            n_gpu_layers=n_gpu_layers,
            verbose=False,
            **llama_kwargs,
        )
        self._template_state: dict[str, bool] = {}

    def fingerprint(self) -> dict[str, Any]:
        return {
            "backend": "llamacpp",
            "model": self.name,
            "revision": file_sha256(self.model_path)[:16],
            "adapter": None,
        }

    def _complete(self, messages: Conversation, config: GenerationConfig) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_tokens": config.max_new_tokens, "stop": list(config.stop) or None}
        if config.do_sample:
            kwargs.update(
                temperature=config.temperature, min_p=config.min_p, top_p=config.top_p, top_k=0, seed=config.seed
            )
        else:
            kwargs.update(temperature=0.0)  # llama.cpp's greedy sampler
        # llama-cpp's typed dicts describe the same role/content messages; typed as Any so mypy
        # passes with llama-cpp-python installed (CI) or not (the default install)
        chat: Any = to_text_messages(messages)
        reply: Any = self.llama.create_chat_completion(messages=chat, **kwargs)
        return reply

    def generate(self, batch: list[Conversation], config: GenerationConfig = GREEDY) -> list[Generation]:
        out = []
        for conv in batch:  # llama-cpp-python's high-level API runs one sequence at a time
            t0 = time.perf_counter()
            try:
                to_text_messages(conv)  # a conversation with images fails here, once
                resp = render_with_fallback(
                    lambda c: self._complete(c, config), conv, self._template_state, retry_if=is_role_error
                )
                usage = resp.get("usage") or {}
                out.append(
                    Generation(
                        text=(resp["choices"][0]["message"].get("content") or "").strip(),
                        prompt_tokens=usage.get("prompt_tokens"),
                        completion_tokens=usage.get("completion_tokens"),
                        seconds=time.perf_counter() - t0,
                        extra={"finish_reason": resp["choices"][0].get("finish_reason")},
                    )
                )
            except Exception as e:  # noqa: BLE001 - reported per sample
                out.append(
                    Generation(
                        error=f"{type(e).__name__}: {e}",
                        seconds=time.perf_counter() - t0,
                        extra={"traceback": traceback.format_exc(limit=3)},
                    )
                )
        return out
