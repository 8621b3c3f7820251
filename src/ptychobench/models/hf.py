"""Hugging Face transformers backend, for language and vision-language models.

Any hub id or local folder: ``AutoModelForImageTextToText`` + ``AutoProcessor`` when the
config is a vision-language one, ``AutoModelForCausalLM`` + ``AutoTokenizer`` otherwise;
a peft (LoRA) adapter on top. ``dtype: auto`` is chosen by measurement (``precision``). Batched generation with
left padding: conversations are sorted by length and cut into batches of ``batch_size``
so little padding is computed; replies come back in the caller's order. The prompts'
shared start (the task's system turn) is computed once and its KV cache reused, and the
cache grows in place (``kvcache.GrowingCache``) rather than being copied at every token.
Float32 weights on the CPU get a pre-packed copy for the few-row products of decoding
(``packed``).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .base import ADAPTER_MANIFEST, GREEDY, Conversation, Generation, GenerationConfig
from .chat import load_image, render_with_fallback, to_text_messages, to_vision_messages


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """The text up to and including the first stop string (a batch runs on past it)."""
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return text[: min(ends)] if ends else text


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: Any, device: str):
    """The torch dtype for ``dtype`` on ``device``: ``auto`` is measured (``precision``)."""
    from .precision import resolve_dtype

    return resolve_dtype(dtype, device)


def is_vision_config(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    return getattr(config, "model_type", None) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft wraps a model calling transformers' ``is_gradient_checkpointing``, which
    transformers 5 deprecates with a FutureWarning on every adapter load; not ours to fix,
    and noise in every run's output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def dir_fingerprint(path: Path | str) -> str:
    """A content hash of a local model or adapter folder: configs in full, weight files by
    name and size (hashing gigabytes of weights on every start would cost minutes). An
    adapter's training log (wall times) is left out, so retraining to the same weights gives
    the same fingerprint."""
    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if not f.is_file() or f.name.startswith(".") or f.name == ADAPTER_MANIFEST:
            continue
        rel = f.relative_to(path).as_posix()
        h.update(rel.encode())
        if f.suffix in (".json", ".jinja", ".txt", ".model") or f.stat().st_size < (8 << 20):
            h.update(f.read_bytes())
        else:
            h.update(str(f.stat().st_size).encode())
    return h.hexdigest()[:16]


def load_hf_model(
    model_id: str,
    *,
    adapter: str | Path | None = None,
    kind: str = "auto",
    device: str = "auto",
    dtype: Any = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
    for_training: bool = False,
    **model_kwargs: Any,
) -> tuple[Any, Any, bool]:
    """(model, processor-or-tokenizer, is_vision) for a hub id or local folder.

    ``kind``: "auto" (decided from the config), "causal" or "vision". With ``adapter``, a
    peft adapter folder is loaded on top (trainable when ``for_training``). The tokenizer
    pads on the left, as batched generation needs; a trainer may set it back."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    config = AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    vision = is_vision_config(config) if kind == "auto" else kind == "vision"
    auto_model: Any = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype,
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        **model_kwargs,
    }
    if device == "cuda":
        kwargs.setdefault("device_map", "auto")  # spreads a 70B/90B model over the GPUs
    model: Any = auto_model.from_pretrained(model_id, **kwargs)
    if device != "cuda" and "device_map" not in model_kwargs:
        model.to(device)
    if vision:
        processor = AutoProcessor.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
        tokenizer = processor.tokenizer
    else:
        processor = tokenizer = AutoTokenizer.from_pretrained(
            model_id, revision=revision, trust_remote_code=trust_remote_code
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter is not None:
        from peft import PeftModel

        with quiet_peft():
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=for_training)
    if not for_training:
        model.eval()
    return model, processor, vision


class HFBackend:
    """Backend over a loaded transformers model (or one that behaves like one, such as
    ``tiny-vlm``) and its processor or tokenizer."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        vision: bool,
        name: str,
        revision: str | None = None,
        adapter: str | Path | None = None,
        batch_size: int = 8,
        extra_fingerprint: dict[str, Any] | None = None,
        prefix_cache: bool = True,
        packed_weights: bool = True,
    ):
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.vision = vision
        self.name = name
        self.revision = revision
        self.adapter = str(adapter) if adapter else None
        self.batch_size = max(1, int(batch_size))
        self._extra_fingerprint = extra_fingerprint or {}
        self._template_state: dict[str, bool] = {}
        self._adapter_hash = dir_fingerprint(adapter) if adapter else None
        #: Text models: run the prompts' shared start (the task's system turn) once and reuse
        #: its KV cache for every prompt of every batch (see _prefix_inputs).
        self.prefix_cache = prefix_cache and not vision
        self._prefix: tuple[tuple[int, ...], Any] | None = None
        #: float32 linear layers on the CPU with a packed weight for decoding (``packed``);
        #: text models only: on tiny-vlm an adapter trained in memory and the same adapter
        #: loaded from disk replied differently with packing (not yet explained) and alike
        #: without it (tests/test_backends_tinyvlm.py::test_training_step_adapter_round_trip)
        self.packed_layers = 0
        if packed_weights and not vision:
            from .packed import pack_linears

            self.packed_layers = pack_linears(model, rows=self.batch_size)

    @classmethod
    def load(
        cls,
        model_id: str,
        adapter: str | Path | None = None,
        *,
        batch_size: int = 8,
        revision: str | None = None,
        name: str | None = None,
        prefix_cache: bool = True,
        packed_weights: bool = True,
        **options: Any,
    ) -> HFBackend:
        model, processor, vision = load_hf_model(model_id, adapter=adapter, revision=revision, **options)
        if revision is None and Path(model_id).is_dir():
            revision = "local:" + dir_fingerprint(model_id)
        elif revision is None:
            revision = getattr(model.config, "_commit_hash", None)
        return cls(
            model,
            processor,
            vision=vision,
            name=name or model_id,
            revision=revision,
            adapter=adapter,
            batch_size=batch_size,
            prefix_cache=prefix_cache,
            packed_weights=packed_weights,
        )

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> dict[str, Any]:
        return {
            "backend": "hf",
            "model": self.name,
            "revision": self.revision,
            "adapter": self.adapter,
            "adapter_hash": self._adapter_hash,
            "dtype": str(getattr(self.model, "dtype", "")).replace("torch.", ""),
            **self._extra_fingerprint,
        }

    # ------------------------------------------------------------------ rendering
    def _render(self, conversation: Conversation) -> tuple[str, list[Any]]:
        """The prompt text (chat template applied, generation prompt added) and images."""
        if self.vision:
            images = [load_image(p) for p in to_vision_messages(conversation)[1]]
            text = render_with_fallback(
                lambda c: self.processor.apply_chat_template(
                    to_vision_messages(c)[0], tokenize=False, add_generation_prompt=True
                ),
                conversation,
                self._template_state,
            )
            return text, images
        to_text_messages(conversation)  # raises on images
        text = render_with_fallback(
            lambda c: self.tokenizer.apply_chat_template(
                to_text_messages(c), tokenize=False, add_generation_prompt=True
            ),
            conversation,
            self._template_state,
        )
        return text, []

    def prompt_text(self, conversation: Conversation) -> str:
        """The exact prompt string a conversation becomes (for inspection and tests)."""
        return self._render(conversation)[0]

    def _encode(self, texts: list[str], images: list[list[Any]]):
        # The chat template already wrote BOS and the role markers: add no special tokens.
        if self.vision:
            return self.processor(
                text=texts,
                images=images if any(images) else None,
                padding=True,
                return_tensors="pt",
                add_special_tokens=False,
            )
        return self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)

    # ------------------------------------------------------------------ generation
    def _hf_generation_config(self, config: GenerationConfig):
        from transformers import GenerationConfig as HFGenerationConfig

        base = getattr(self.model, "generation_config", None)
        gc = HFGenerationConfig(**base.to_dict()) if base is not None else HFGenerationConfig()
        # A model's own defaults (Llama 3.1 ships do_sample=True, temperature 0.6) must not
        # leak in: our config says everything about decoding.
        gc.update(
            max_new_tokens=config.max_new_tokens,
            do_sample=config.do_sample,
            temperature=config.temperature if config.do_sample else None,
            top_p=config.top_p if config.do_sample else None,
            min_p=config.min_p if config.do_sample else None,
            top_k=None,
            num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(config.stop) or None,
        )
        if gc.eos_token_id is None:
            gc.eos_token_id = self.tokenizer.eos_token_id
        return gc

    def _eos_ids(self, gc: Any) -> set[int]:
        eos = gc.eos_token_id
        ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        return ids | {self.tokenizer.eos_token_id} - {None}

    def _device(self) -> Any:
        return getattr(self.model, "device", None) or next(self.model.parameters()).device

    @functools.cached_property
    def _cache_kwarg(self) -> str:
        """transformers 5 renamed generate()'s and forward()'s ``past_key_values`` to ``cache``."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        base = getattr(base, "_causal_lm", base)  # tiny-vlm hands generation to its language model
        return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    @functools.cached_property
    def _growing_cache(self) -> bool:
        """Whether generation gets a :class:`~.kvcache.GrowingCache` (no per-token copies):
        text models and tiny-vlm whose layers all attend fully. Hub VLMs keep their own."""
        from .kvcache import supports_growing_cache

        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        tiny = getattr(getattr(base, "config", None), "model_type", None) == "ptychobench-tiny-vlm"
        return (tiny or not self.vision) and supports_growing_cache(base)

    def _new_cache(self, reserve: int) -> dict[str, Any]:
        """The cache argument for ``generate``: a growing cache with room for ``reserve``
        tokens after the prompt, or nothing (transformers' default cache)."""
        if not self._growing_cache:
            return {}
        from .kvcache import GrowingCache

        return {self._cache_kwarg: GrowingCache(reserve)}

    def _prefix_inputs(self, texts: list[str], max_new_tokens: int = 0) -> dict[str, Any] | None:
        """Inputs that reuse the cached KV of the prompts' shared start, or None where there
        is too little to share. The rows are [shared start][padding][own rest]: padding sits
        between the two, masked out, so every row's tokens keep the positions they have
        alone (positions come from the attention mask) and the cached start serves all."""
        import copy

        import torch

        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        shortest = min(len(x) for x in ids)
        n = 0
        while n < shortest - 1 and all(x[n] == ids[0][n] for x in ids):
            n += 1
        if self._prefix is not None:  # reuse the cached start where every row has it
            key = self._prefix[0]
            # the part of the cached start these rows share (a batch may share less than the
            # one that filled the cache): its keys and values are the cached ones, cut short
            same = next((i for i, (a, b) in enumerate(zip(key, ids[0])) if a != b), min(len(key), len(ids[0])))
            shared = min(n, same)
            if shared >= 0.9 * n and shared >= 32:
                if shared < len(key):
                    self._prefix[1].crop(shared - len(key))  # negative: tokens to drop
                    self._prefix = (key[:shared], self._prefix[1])
                n = shared
            else:
                self._prefix = None
        if n < 32:
            return None
        device = self._device()
        if self._prefix is None:
            from transformers import DynamicCache

            cache = DynamicCache()
            # only the cache is wanted: skip the logits of all but the last position
            keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(self.model.forward).parameters else {}
            with torch.inference_mode():
                self.model(
                    input_ids=torch.tensor([ids[0][:n]], device=device),
                    use_cache=True,
                    **keep,
                    **{self._cache_kwarg: cache},
                )
            self._prefix = (tuple(ids[0][:n]), cache)
        rest = [x[n:] for x in ids]
        width = n + max(len(r) for r in rest)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, r in enumerate(rest):
            input_ids[i, :n] = torch.tensor(ids[i][:n])
            mask[i, :n] = 1
            input_ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        if self._growing_cache:
            from .kvcache import GrowingCache

            cache = GrowingCache.from_prefix(self._prefix[1], len(ids), reserve=width - n + max_new_tokens)
        else:
            cache = copy.deepcopy(self._prefix[1])
            if len(ids) > 1:
                cache.batch_repeat_interleave(len(ids))
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), self._cache_kwarg: cache}

    def _generate_chunk(self, items: list[tuple[int, str, list[Any]]], config: GenerationConfig) -> list[Generation]:
        import torch

        texts = [t for _, t, _ in items]
        images = [ims for _, _, ims in items]
        gc = self._hf_generation_config(config)

        def run(inputs: Any) -> Any:
            if config.do_sample:
                torch.manual_seed(config.seed)
            with torch.inference_mode():
                # the tokenizer lets generate() match stop strings across token boundaries
                return self.model.generate(
                    **inputs, generation_config=gc, tokenizer=self.tokenizer if config.stop else None
                )

        t0 = time.perf_counter()
        out: Any = None
        inputs: Any = None
        if self.prefix_cache:
            try:
                inputs = self._prefix_inputs(texts, config.max_new_tokens)
                if inputs is not None:
                    out = run(inputs)
            except Exception as e:  # noqa: BLE001 - a model whose cache cannot be reused this way
                warnings.warn(
                    f"{self.name}: prefix caching failed ({type(e).__name__}: {e}); generating without it from now on",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.prefix_cache, self._prefix, out = False, None, None
        if out is None:
            inputs = self._encode(texts, images).to(self._device())
            if "pixel_values" in inputs and hasattr(self.model, "dtype"):
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            out = run({**inputs, **self._new_cache(config.max_new_tokens)})
        seconds = (time.perf_counter() - t0) / len(items)
        n_in = inputs["input_ids"].shape[1]
        new = out[:, n_in:].tolist()
        eos = self._eos_ids(gc)
        prompt_lens = inputs["attention_mask"].sum(dim=1).tolist()
        gens = []
        for row, n_prompt in zip(new, prompt_lens):
            n_gen = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            text = cut_at_stop(self.tokenizer.decode(row[:n_gen], skip_special_tokens=True), config.stop)
            gens.append(
                Generation(
                    text=text.strip(),
                    prompt_tokens=int(n_prompt),
                    completion_tokens=n_gen,
                    seconds=seconds,
                    extra={"batch": len(items)},
                )
            )
        return gens

    def generate(self, batch: list[Conversation], config: GenerationConfig = GREEDY) -> list[Generation]:
        results: list[Generation | None] = [None] * len(batch)
        ready: list[tuple[int, str, list[Any]]] = []
        for i, conv in enumerate(batch):
            try:
                text, images = self._render(conv)
                ready.append((i, text, images))
            except Exception as e:  # noqa: BLE001 - a bad sample is reported, not raised
                results[i] = Generation(error=f"{type(e).__name__}: {e}")
        # Similar lengths together: less padding computed. Stable, so ties keep input order.
        ready.sort(key=lambda it: len(it[1]) + 1000 * len(it[2]))
        for start in range(0, len(ready), self.batch_size):
            chunk = ready[start : start + self.batch_size]
            for (i, _, _), g in zip(chunk, self._generate_isolating(chunk, config)):
                results[i] = g
        return [g if g is not None else Generation(error="no generation") for g in results]

    def _generate_isolating(
        self, chunk: list[tuple[int, str, list[Any]]], config: GenerationConfig
    ) -> list[Generation]:
        """Generate a chunk; if it fails as a whole, retry one by one so a single bad
        sample (or an out-of-memory batch) costs only its own reply."""
        try:
            return self._generate_chunk(chunk, config)
        except Exception as e:  # noqa: BLE001
            if len(chunk) == 1:
                return [
                    Generation(error=f"{type(e).__name__}: {e}", extra={"traceback": traceback.format_exc(limit=3)})
                ]
            return [self._generate_isolating([item], config)[0] for item in chunk]
