"""OpenAI-compatible chat API backend: GPT-4o, vLLM's, llama.cpp's and Ollama's servers.

Images go as base64 data URLs. Requests run concurrently (``concurrency`` at a time) and
are retried with exponential backoff and jitter on rate limits (429), server errors
(5xx), timeouts and refused or dropped connections; other errors (400, 401, 404) are not
retried. A request that still fails comes back as a Generation with ``error`` set, which
the prediction store records and a rerun tries again.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..secrets import remember, remember_url, scrub
from .base import GREEDY, Conversation, Generation, GenerationConfig
from .chat import to_openai_messages

OPENAI_URL = "https://api.openai.com/v1"
#: server error text kept in a record: enough to diagnose, never a whole HTML page
MAX_ERROR_CHARS = 500


def scrub_secrets(text: str) -> str:
    """``text`` with credentials, tokens and keys replaced by ``***`` (:func:`ptychobench.secrets.scrub`)."""
    return scrub(text)


def scrub_error(exc: BaseException) -> str:
    """One line naming the error, its secrets scrubbed and its length capped."""
    text = scrub_secrets(" ".join(f"{type(exc).__name__}: {exc}".split()))
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " ..."


def _retryable(exc: Exception) -> bool:
    import openai

    if isinstance(
        exc, (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError)
    ):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 409, 429) or status >= 500)


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 4,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 120.0,
        send_min_p: bool | None = None,
        client: Any = None,
    ):
        import openai

        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        remember(key)
        remember_url(self.base_url)
        if not key:
            if self.base_url == OPENAI_URL:
                raise RuntimeError(f"openai:{model} needs an API key: set OPENAI_API_KEY or pass api_key=")
            key = "none"  # local servers (llama.cpp, vLLM, Ollama) accept any key
        # Our own retry loop (below) sees every failure and counts attempts; the SDK's is off.
        self.client = client or openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=timeout_s)
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # OpenAI's API rejects unknown sampling parameters; vLLM and llama.cpp take min_p.
        self.send_min_p = (self.base_url != OPENAI_URL) if send_min_p is None else send_min_p
        self._rng = random.Random(0)
        self._rng_lock = threading.Lock()

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.model, "base_url": scrub_secrets(self.base_url), "adapter": None}

    def _request(self, conv: Conversation, config: GenerationConfig) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(conv),
            "max_tokens": config.max_new_tokens,
        }
        if config.stop:
            kwargs["stop"] = list(config.stop)  # the server leaves the stop string out
        if config.do_sample:
            kwargs.update(temperature=config.temperature, top_p=config.top_p, seed=config.seed)
            if self.send_min_p:
                kwargs["extra_body"] = {"min_p": config.min_p}
        else:
            kwargs.update(temperature=0.0, seed=config.seed)
        return kwargs

    def _sleep_before(self, attempt: int, exc: Exception) -> None:
        time.sleep(self._delay(attempt, exc))

    def _delay(self, attempt: int, exc: Exception) -> float:
        """Exponential backoff with jitter (concurrent workers do not retry in lockstep), but
        never shorter than the server's ``Retry-After``: asked to wait, we wait at least that."""
        delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        with self._rng_lock:
            delay *= 0.5 + self._rng.random()
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        try:
            retry_after = float(headers.get("retry-after", 0) or 0)
        except (TypeError, ValueError, AttributeError):
            retry_after = 0.0
        return max(delay, retry_after)

    def _one(self, conv: Conversation, config: GenerationConfig) -> Generation:
        t0 = time.perf_counter()
        try:
            kwargs = self._request(conv, config)
        except Exception as e:  # noqa: BLE001 - e.g. a missing image file
            return Generation(error=scrub_error(e))
        errors: list[str] = []
        for attempt in range(self.max_retries + 1):
            try:
                resp = self.client.chat.completions.create(**kwargs)
                choice = resp.choices[0]
                usage = resp.usage
                return Generation(
                    text=(choice.message.content or "").strip(),
                    prompt_tokens=getattr(usage, "prompt_tokens", None),
                    completion_tokens=getattr(usage, "completion_tokens", None),
                    seconds=time.perf_counter() - t0,
                    extra={
                        "attempts": attempt + 1,
                        "finish_reason": choice.finish_reason,
                        **({"retried_after": errors} if errors else {}),
                    },
                )
            except Exception as e:  # noqa: BLE001
                errors.append(scrub_error(e))
                if not _retryable(e) or attempt == self.max_retries:
                    break
                self._sleep_before(attempt, e)
        return Generation(
            error=errors[-1], seconds=time.perf_counter() - t0, extra={"attempts": len(errors), "errors": errors}
        )

    def generate(self, batch: list[Conversation], config: GenerationConfig = GREEDY) -> list[Generation]:
        if len(batch) <= 1 or self.concurrency == 1:
            return [self._one(c, config) for c in batch]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch))) as pool:
            return list(pool.map(lambda c: self._one(c, config), batch))
