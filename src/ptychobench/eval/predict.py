"""Run a backend over samples into the store: demos, prompts, one record per sample.

A batch whose generation raises is recorded as one error per sample, never dropped, so a
score always covers every test sample it claims to."""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from typing import Any, Callable, Iterable, Sequence

from ..data import Sample
from ..data.dataset import require_train
from ..models.base import GREEDY, Backend, Generation, GenerationConfig
from ..models.openai_api import scrub_error, scrub_secrets
from ..tasks import Task
from .record import PredictionRecord
from .store import PredictionStore

DemoFn = Callable[[Sample], Sequence[Sample]]


def prompt_hash(messages: list[dict], fingerprint: dict[str, Any]) -> str:
    blob = json.dumps({"messages": messages, "model": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_record(
    task: Task,
    sample: Sample,
    config: str,
    meta: dict[str, Any],
    *,
    reply: str = "",
    labels: Iterable[str] | None = None,
    parse_ok: bool = True,
    error: str | None = None,
    seconds: float = 0.0,
    prompt: str | None = None,
    demos: Sequence[str] = (),
    components: dict[str, Any] | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    settings: str | None = None,
) -> PredictionRecord:
    """One store line. ``labels`` None means: parse them from ``reply``."""
    if labels is None:
        parsed = task.parse(reply) if not error else None
        labels = parsed.labels if parsed else frozenset()
        parse_ok = bool(parsed and parsed.ok)
    return PredictionRecord(
        config=config,
        sample_id=sample.id,
        task=task.name,
        sample_type=sample.sample_type,
        gold=[x for x in task.labels if x in sample.labels],
        labels=[x for x in task.labels if x in set(labels)],
        parse_ok=parse_ok and not error,
        reply=reply,
        error=error,
        seconds=round(seconds, 4),
        prompt_hash=prompt,
        demos=list(demos),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        meta=meta,
        components=components or {},
        settings=settings,
    )


def predict(
    task: Task,
    samples: Sequence[Sample],
    backend: Backend,
    store: PredictionStore,
    config: str,
    meta: dict[str, Any],
    generation: GenerationConfig = GREEDY,
    demos_for: DemoFn | None = None,
    batch_size: int = 8,
    components: dict[str, Any] | None = None,
    on_done: Callable[[int], None] | None = None,
    settings: str | None = None,
) -> int:
    """Generate for every sample not yet stored under ``config`` (and ``settings``, the
    cell's settings hash); returns how many were generated now. A batch whose call raises
    is recorded as one error per sample, its message scrubbed of secrets."""
    todo = [s for s in samples if not store.is_done(config, s.id, settings)]
    # Similar lengths in one batch: a batch is padded to its longest prompt, so a batch of
    # long and short prompts computes the short ones' padding (the backend sorts only
    # within the batch it is given). Stable, so equal lengths keep their order.
    todo.sort(key=lambda s: len(s.text or ""))
    fingerprint = backend.fingerprint()
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        demos = [list(demos_for(s)) if demos_for else [] for s in chunk]
        for ds in demos:
            require_train(ds, "demonstrations")
        convs = [task.render(s, d) for s, d in zip(chunk, demos)]
        t0 = time.perf_counter()
        try:
            gens = backend.generate(convs, generation)
            if len(gens) != len(chunk):
                raise RuntimeError(f"backend returned {len(gens)} replies for {len(chunk)} prompts")
        except Exception as e:  # noqa: BLE001 - recorded and counted, never dropped
            msg = scrub_error(e)
            gens = [
                Generation(error=msg, extra={"traceback": scrub_secrets(traceback.format_exc(limit=3))}) for _ in chunk
            ]
        wall = time.perf_counter() - t0
        for s, d, conv, g in zip(chunk, demos, convs, gens):
            store.append(
                make_record(
                    task,
                    s,
                    config,
                    meta,
                    reply=g.text or "",
                    error=g.error,
                    seconds=g.seconds or wall / len(chunk),
                    prompt=prompt_hash(conv, fingerprint),
                    demos=[x.id for x in d],
                    components=components,
                    prompt_tokens=g.prompt_tokens,
                    completion_tokens=g.completion_tokens,
                    settings=settings,
                )
            )
        if on_done:
            on_done(len(chunk))
    return len(todo)
