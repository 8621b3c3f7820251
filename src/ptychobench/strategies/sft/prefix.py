"""Run a batch's shared prompt prefix once: the loss and the trainer that uses it."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any


def shared_prefix_length(input_ids: Any, attention_mask: Any, labels: Any, stop_ids: Sequence[int] = ()) -> int:
    """How many leading tokens every row of a right-padded batch shares, stopping before
    the first position whose next token is a label (that position's output is needed)
    and before any ``stop_ids`` token (image slots: their embeddings need the pixels)."""
    import torch

    same = (input_ids == input_ids[:1]).all(0) & (attention_mask == 1).all(0)
    for t in stop_ids:
        same &= ~(input_ids == t).any(0)
    differs = torch.nonzero(~same)
    common = int(differs[0]) if len(differs) else input_ids.shape[1]
    labelled = torch.nonzero((labels != -100).any(0))
    first_label = int(labelled[0]) if len(labelled) else input_ids.shape[1]
    return max(0, min(common, first_label - 1))


def shared_prefix_loss(model: Any, inputs: dict, p: int) -> tuple[Any, Any]:
    """(sum of the answer tokens' cross-entropy, their count) for a right-padded batch
    whose rows share their first ``p`` tokens: the prefix runs once, the rest of every row
    on top of its key/value cache repeated over the batch (the prefix's keys and values
    stay in the autograd graph, so loss and gradients equal the plain forward's), and the
    LM head runs only where there is a label (the full logits would be most of the memory
    traffic). ``model``: a causal LM or a peft model of one (LoRA layers sit in place)."""
    import torch
    from transformers import DynamicCache

    ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "labels")}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone, head = base.base_model, base.get_output_embeddings()
    decoder = getattr(backbone, "language_model", backbone)
    # transformers 5 renames past_key_values to cache; take whichever the decoder knows
    key = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
    cache = DynamicCache()  # filled in place by the prefix pass
    backbone(input_ids=ids[:1, :p], attention_mask=mask[:1, :p], use_cache=True, **{key: cache})
    cache.batch_repeat_interleave(ids.shape[0])
    out = backbone(input_ids=ids[:, p:], attention_mask=mask, use_cache=True, **{key: cache}, **rest)
    hidden = out.last_hidden_state[:, :-1]
    target = labels[:, p + 1 :].to(hidden.device)
    keep = target != -100
    logits = head(hidden[keep])
    loss_sum = torch.nn.functional.cross_entropy(logits.float(), target[keep], reduction="sum")
    return loss_sum, keep.sum()


def shared_prefix_trainer(trainer_cls: type, min_prefix: int = 32) -> type:
    """``trainer_cls`` whose loss is :func:`shared_prefix_loss` when the batch shares a
    prefix (the system turn: the instructions and the option list, half or more of a
    prompt here). On the CPU, where compute is the bottleneck, it is most of the speed."""
    import torch

    class SharedPrefixTrainer(trainer_cls):
        computed_tokens = 0  # tokens actually run through the model (prefix once per batch)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
            image_token = getattr(getattr(self.model, "config", None), "image_token_id", None)
            p = shared_prefix_length(ids, mask, labels, () if image_token is None else (image_token,))
            if p < min_prefix or ids.shape[0] < 2 or return_outputs:
                self.computed_tokens += int(mask.sum())
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self.computed_tokens += p + int(mask[:, p:].sum())
            unwrapped = self.accelerator.unwrap_model(model)
            with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=bool(self.args.bf16)):
                loss_sum, n = shared_prefix_loss(unwrapped, inputs, p)
            if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
                loss = loss_sum / num_items_in_batch
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes
            else:
                loss = loss_sum / n.clamp(min=1)
            return loss

    SharedPrefixTrainer.__name__ = f"SharedPrefix{trainer_cls.__name__}"
    return SharedPrefixTrainer
