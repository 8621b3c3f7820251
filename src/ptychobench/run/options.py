"""The values a config's nested options may take, checked when the config is parsed.

:mod:`ptychobench.names` and :mod:`ptychobench.models.catalog` say which option names each
component takes; this module says what each option's value must be, once for every
component that takes it, so ``n_neighbors: -4``, ``concurrency: abc``, ``base_url: 12345``
or ``learning_rate: nan`` stop the run before a record is stored or a model is loaded
(they failed late, with tracebacks). Options not listed here (``dtype``, ``device_map``,
``quantization_config``, ...) are checked by their backend.
"""

from __future__ import annotations

import math
from typing import Any, Callable
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..names import SELECTORS, SFT_PROFILES, TYPE_ONLY_RULES

Check = Callable[[Any], str | None]  # None: fine; else what the value must be


def _int(low: int, high: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)
        return None if ok else f"a whole number {'>= ' + str(low) if high is None else f'in {low}..{high}'}"

    return check


def _number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, str):
            try:
                v = float(v)  # YAML 1.1 reads 3e-3 as a string
            except ValueError:
                pass
        ok = (
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and (v > low if low_open else v >= low)
            and (high is None or (v < high if high_open else v <= high))
        )
        lo = f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high:g}"
        return None if ok else f"a finite number {lo}{hi}"

    return check


def _optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _text(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "a non-empty string"


def _one_of(*choices: Any) -> Check:
    return lambda v: None if v in choices else f"one of {list(choices)}"


def _url(v: Any) -> str | None:
    if not isinstance(v, str):
        return "an http(s) URL such as http://localhost:8000/v1"
    try:
        parts = urlsplit(v.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    return None if ok else "an http(s) URL such as http://localhost:8000/v1"


def _selector(v: Any) -> str | None:
    from ..names import canonical_selector

    try:
        canonical_selector(v)
    except ConfigError:
        return f"one of {list(SELECTORS)}"
    return None


def _modules(v: Any) -> str | None:
    ok = (isinstance(v, str) and v.strip()) or (
        isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v)
    )
    return None if ok else "a list of module names (or one comma-separated string)"


#: backend options (models/catalog.BACKEND_OPTIONS names them)
BACKEND: dict[str, Check] = {
    "base_url": _url,
    "api_key": _text,
    "concurrency": _int(1, 1024),
    "max_retries": _int(0, 100),
    "backoff_s": _number(0),
    "max_backoff_s": _number(0),
    "timeout_s": _number(0, low_open=True),
    "send_min_p": _optional(_bool),
    "batch_size": _int(1),
    "n_ctx": _int(1),
    "n_threads": _int(1),
    "n_batch": _int(1),
    "n_gpu_layers": _int(-1),
    "revision": _text,
    "device": _text,
    "kind": _text,
    "trust_remote_code": _bool,
    "prefix_cache": _bool,
    "packed_weights": _bool,
    "low_cpu_mem_usage": _bool,
    "attn_implementation": _text,
}
#: probe options (names.BASELINES names them)
PROBE: dict[str, Check] = {
    "C": _number(0, low_open=True),
    "folds": _int(2, 100),
    "objective": _one_of("micro", "label"),
    "at_least_one": _bool,
    "backbone": _text,
    "text_model": _text,
    "n_neighbors": _int(1, 10_000),
    "modality": _one_of("text", "image"),
    "rule": _one_of(*TYPE_ONLY_RULES),
}
#: demo selector options (names.SELECTORS names them)
SELECTOR: dict[str, Check] = {
    "text_model": _text,
    "image_backbone": _text,
    "lam": _number(0, 1),
    "label_weight": _number(0),
    "fetch_k": _int(1, 10_000),
}
#: fine-tuning options (``sft:``: the Recipe's fields and train_adapter's own)
SFT: dict[str, Check] = {
    "epochs": _number(0, low_open=True),
    "learning_rate": _number(0, low_open=True),
    "lora_r": _int(1, 4096),
    "lora_alpha": _number(0, low_open=True),
    "lora_dropout": _number(0, 1, high_open=True),
    "target_modules": _modules,
    "lora_layers": _optional(_int(1)),
    "train_vision": _bool,
    "batch_size": _int(1),
    "grad_accum": _int(1),
    "weight_decay": _number(0),
    "scheduler": _text,
    "warmup_steps": _int(0),
    "max_length": _int(1),
    "optim": _text,
    "bf16": _optional(_bool),
    "gradient_checkpointing": _bool,
    "max_train_samples": _optional(_int(1)),
    "time_budget_s": _optional(_number(0, low_open=True)),
    "logging_steps": _int(1),
    "share_prefix": _bool,
    "loss_on": _one_of("answer", "answers", "sequence"),
    "quantize": _one_of(None, "4bit"),
    "balance": _number(0, 2),
    "shuffle_labels": _bool,
    "align_epochs": _number(0),
    "align_learning_rate": _number(0, low_open=True),
    "word_align_steps": _int(0),
    "word_align_learning_rate": _number(0, low_open=True),
    "profile": _one_of("auto", *SFT_PROFILES),
    "demo_selector": _selector,
    "k": _int(0, 32),
    "selector_options": lambda v: None if isinstance(v, dict) else "a mapping",
}


def check_values(where: str, key: str, given: dict[str, Any], table: dict[str, Check]) -> None:
    """ConfigError naming the first option of ``given`` whose value ``table`` refuses."""
    for name, value in given.items():
        check = table.get(name)
        want = check(value) if check else None
        if want is not None:
            raise ConfigError(f"{where}: {key}: {name} must be {want}, got {value!r}")
