"""Training batches from released-format chat conversations, for any chat model.

Shared by fine-tuning (``strategies.sft``) and the tiny VLM's processor, so the rule for
which tokens carry the loss (the assistant's answers, nothing else) lives in one place.
"""

from __future__ import annotations

import bisect
from typing import Any

import torch

from .chat import load_image, to_text_messages, to_vision_messages

IGNORE_INDEX = -100


def conversation_batch(
    processor: Any, conversations: list[list[dict]], *, loss_on: str = "all", max_length: int | None = None
) -> dict[str, torch.Tensor]:
    """Training batch for a chat model from released-format conversations; works with a
    ``TinyVLMProcessor`` (images become pixel values; recognised by its
    ``expand_image_tokens``) or a plain text tokenizer (then the
    conversations must be text only). Assistant spans are found in character space on the
    rendered text and mapped to tokens by their offsets, so BPE merges at turn boundaries
    cannot shift them."""
    if loss_on not in ("all", "last"):
        raise ValueError("loss_on must be 'all' or 'last'")
    vision = hasattr(processor, "expand_image_tokens")
    tokenizer = processor.tokenizer if vision else processor

    def render(turns: list[dict], gen: bool) -> str:
        if vision:
            return processor.expand_image_tokens(
                processor.apply_chat_template(to_vision_messages(turns)[0], add_generation_prompt=gen)
            )
        return tokenizer.apply_chat_template(to_text_messages(turns), tokenize=False, add_generation_prompt=gen)

    texts, spans, images = [], [], []
    for conv in conversations:
        if not conv or conv[-1]["role"] != "assistant":
            raise ValueError("a training conversation must end with the assistant's answer")
        full = render(conv, False)
        conv_spans = []
        for i, m in enumerate(conv):
            if m["role"] != "assistant":
                continue
            start = len(render(conv[:i], True))
            end = len(render(conv[: i + 1], False).rstrip())
            if full[:start] != render(conv[:i], True):
                raise ValueError("the chat template does not render conversations prefix-consistently")
            conv_spans.append((start, end))
        spans.append(conv_spans if loss_on == "all" else conv_spans[-1:])
        texts.append(full)
        images.append([load_image(p) for p in to_vision_messages(conv)[1]])
    enc = tokenizer(
        texts,
        padding=False,
        add_special_tokens=False,
        return_offsets_mapping=True,
        truncation=max_length is not None,
        max_length=max_length,
    )
    pad_id = tokenizer.pad_token_id
    width = max(len(ids) for ids in enc["input_ids"])
    input_ids = torch.full((len(texts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(texts), width), dtype=torch.long)
    labels = torch.full((len(texts), width), IGNORE_INDEX, dtype=torch.long)
    for row, (ids, offsets, conv_spans) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], spans)):
        n = len(ids)
        input_ids[row, :n] = torch.tensor(ids)
        attention[row, :n] = 1
        starts = [s for s, _ in conv_spans]
        for j, (tok, (a, b)) in enumerate(zip(ids, offsets)):
            k = bisect.bisect_right(starts, a) - 1
            # a token belongs to the answer if it begins inside the span (which ends at the
            # turn's end token: the separator after it is not the model's to learn)
            if k >= 0 and a < conv_spans[k][1] and tok != getattr(processor, "image_token_id", None):
                labels[row, j] = tok
    out = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    if vision:
        # truncation may cut image slots: keep only the images whose slots all survived
        kept = []
        for row, ims in enumerate(images):
            slots = int((input_ids[row] == processor.image_token_id).sum())
            if slots % processor.config.image_tokens:
                raise ValueError(f"max_length={max_length} cuts an image of conversation {row} in half")
            kept.append(ims[: slots // processor.config.image_tokens])
        flat = [processor.preprocess_image(im) for ims in kept for im in ims]
        if flat:
            out["pixel_values"] = torch.stack(flat)
    return out
