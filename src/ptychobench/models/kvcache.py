"""A key-value cache that grows in place, for generation on the CPU.

transformers' ``DynamicCache`` appends each new token's keys and values with ``torch.cat``,
which copies the whole cache of every layer at every decoding step: for smollm2-135m,
batch 8 and ~700-token prompts that is ~260 MB read and written per token, as much memory
traffic as the weights themselves (``torch.cat`` took 17% of a profiled batch,
docs/backends.md). ``GrowingCache`` keeps each layer in a buffer with room for the tokens
still to come and hands attention a view of its filled part. The view holds exactly the
values ``torch.cat`` would have produced, with the same shape, so attention computes the
same numbers; only the copies go. (A ``StaticCache`` would also avoid the copies, but it
shows attention its whole padded length, a different computation, and pays off only
under ``torch.compile``, whose compile time on a small CPU exceeds a whole run here.)
"""

from __future__ import annotations

from typing import Any, cast

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in a buffer with ``reserve`` free token slots; a write
    past its end moves to a buffer large enough plus ``reserve`` (one copy, not one per token)."""

    def __init__(self, reserve: int = 64) -> None:
        super().__init__()
        self.reserve = max(0, int(reserve))
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def _in_buffer(self, batch: int, length: int) -> bool:
        buf = self._buffers
        if buf is None or buf[0].shape[0] != batch or length > buf[0].shape[-2]:
            return False
        # crop / batch_select_indices / reorder_cache replace keys by tensors of their own
        return self.get_seq_length() == 0 or self.keys.data_ptr() == buf[0].data_ptr()  # type: ignore[union-attr]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        batch, heads, _, dim = key_states.shape
        if not self._in_buffer(batch, end):
            shape = (batch, heads, end + self.reserve, dim)
            keys, values = key_states.new_empty(shape), value_states.new_empty(shape)
            if start and self.keys is not None and self.values is not None:
                keys[:, :, :start] = self.keys
                values[:, :, :start] = self.values
            self._buffers = (keys, values)
        keys, values = self._buffers  # type: ignore[misc]
        keys[:, :, start:end] = key_states
        values[:, :, start:end] = value_states
        self.keys, self.values = keys[:, :, :end], values[:, :, :end]
        return self.keys, self.values

    def reset(self) -> None:
        self._buffers = None
        super().reset()


class GrowingCache(DynamicCache):
    """A ``DynamicCache`` of :class:`GrowingLayer`: same results, no per-token copies.

    ``reserve``: the free slots a layer keeps after its first write (the prompt), i.e. the
    number of tokens still to be generated; more tokens still fit, at the price of one copy."""

    def __init__(self, reserve: int = 64) -> None:
        # Cache calls layer_class_to_replicate() for each new layer: any factory serves
        factory = cast("type[CacheLayerMixin]", lambda: GrowingLayer(reserve))
        Cache.__init__(self, layer_class_to_replicate=factory)

    @classmethod
    def from_prefix(cls, prefix: DynamicCache, batch: int, reserve: int) -> GrowingCache:
        """A cache holding ``prefix`` (one row) repeated for ``batch`` rows, with room for
        ``reserve`` more tokens per row; ``prefix`` itself is left as it is."""
        cache = cls(reserve)
        for i, layer in enumerate(prefix.layers):
            keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
            if keys is None or values is None:
                raise ValueError(f"prefix cache layer {i} holds no keys and values")
            cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), i)
        return cache


def supports_growing_cache(model: Any) -> bool:
    """Full attention in every layer (no sliding windows, no linear-attention layers):
    the layouts a plain ``DynamicLayer`` serves, so a ``GrowingLayer`` does too."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    if getattr(text, "sliding_window", None) or getattr(text, "attention_chunk_size", None):
        return False
    kinds = set(getattr(text, "layer_types", None) or ["full_attention"])
    return kinds == {"full_attention"}
