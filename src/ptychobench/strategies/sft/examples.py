"""Training examples: the evaluation prompt plus the target answer, and the collators that
turn them into batches with the loss on the query's answer only."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ...data.dataset import require_train


def training_conversations(
    task: str,
    samples: Sequence[Any],
    demo_selector: str | None = None,
    k: int = 0,
    seed: int = 0,
    selector_options: dict | None = None,
    prompt: str = "ours",
    shuffle_labels: bool = False,
) -> list[list[dict]]:
    """One conversation per sample: the evaluation prompt (with ``k`` demos drawn from the
    other training samples when a selector is named) followed by the target answer. With
    ``prompt="released"``: the released question and the released answer string verbatim,
    as the authors train. ``shuffle_labels``: each target answer's labels in a seeded random
    order (the demos' answers, which are prompt, keep the evaluation's order)."""
    from ...tasks import get_task
    from ..selectors import make_selector

    spec = get_task(task).with_modes(prompt=prompt)
    require_train(samples, "fine-tuning")
    selector = make_selector(demo_selector, seed=seed, **(selector_options or {})) if demo_selector and k else None
    rng = random.Random(f"labels:{seed}") if shuffle_labels and prompt != "released" else None
    convs = []
    for s in samples:
        demos = selector.select(s, samples, k) if selector else []
        answer = spec.released_answer(s) if prompt == "released" else spec.target(s.labels, rng)
        convs.append([*spec.render(s, demos), {"role": "assistant", "content": [{"type": "text", "text": answer}]}])
    return convs


def balanced_draw(samples: Sequence[Any], balance: float, seed: int = 0) -> list[int]:
    """Indices of one epoch (as many as ``samples``) drawn with replacement, each sample with
    probability proportional to count(its label set) ** -balance: 0 keeps every sample once
    (in order), 1 makes every distinct answer equally likely. Seeded, so an adapter does not
    depend on anything but its settings."""
    if not balance:
        return list(range(len(samples)))
    counts = Counter(frozenset(s.labels) for s in samples)
    weights = [counts[frozenset(s.labels)] ** -balance for s in samples]
    return random.Random(f"balance:{seed}").choices(range(len(samples)), weights=weights, k=len(samples))


class Collator:
    """Released-format conversations (JSON strings) -> a training batch; counts tokens."""

    def __init__(self, processor: Any, max_length: int | None, loss_on: str = "answer"):
        self.processor = processor
        self.max_length = max_length
        self.loss_on = loss_on
        self.tokens = 0
        self.answer_tokens = 0
        self.samples = 0

    def __call__(self, rows: list[dict]) -> dict:
        from ...models.collate import conversation_batch

        convs = [json.loads(r["conversation"]) for r in rows]
        batch = conversation_batch(
            self.processor, convs, loss_on="all" if self.loss_on == "answers" else "last", max_length=None
        )
        if self.loss_on == "sequence":
            batch["labels"] = whole_sequence_labels(batch["input_ids"], batch["attention_mask"], self.processor)
        if self.max_length and batch["input_ids"].shape[1] > self.max_length:
            lengths = batch["attention_mask"].sum(1).tolist()
            raise ValueError(
                f"a training example has {max(lengths)} tokens, over max_length={self.max_length}; "
                "raise max_length or use fewer demos (k): truncating would cut the answer off"
            )
        self.samples += len(convs)
        self.tokens += int(batch["attention_mask"].sum())
        self.answer_tokens += int((batch["labels"] != -100).sum())
        return batch


class HubVLMCollator(Collator):
    """Training batches for a hub VLM and its ``AutoProcessor``: the conversation rendered
    by the processor's chat template as the backend renders it, images passed to the
    processor (which expands image tokens its own way), labels on the last answer only.
    The prompt's token count comes from processing the prompt alone, so any expansion of
    image tokens is counted exactly."""

    def __call__(self, rows: list[dict]) -> dict:
        from ...models.chat import load_image, render_with_fallback, to_vision_messages

        convs = [json.loads(r["conversation"]) for r in rows]
        state: dict[str, bool] = {}
        proc = self.processor
        proc.tokenizer.padding_side = "right"

        def render(turns: list[dict], gen: bool) -> str:
            return render_with_fallback(
                lambda c: proc.apply_chat_template(to_vision_messages(c)[0], tokenize=False, add_generation_prompt=gen),
                turns,
                state,
            )

        texts, prompts, images = [], [], []
        for conv in convs:
            texts.append(render(conv, False))
            prompts.append(render(conv[:-1], True))
            images.append([load_image(p) for p in to_vision_messages(conv)[1]])
        kw = dict(padding=True, return_tensors="pt", add_special_tokens=False)
        batch = dict(proc(text=texts, images=images if any(images) else None, **kw))
        labels = whole_sequence_labels(batch["input_ids"], batch["attention_mask"], proc)
        for row, (prompt, ims) in enumerate(zip(prompts, images)):
            if self.loss_on == "sequence":
                break
            n_prompt = int(proc(text=[prompt], images=[ims] if ims else None, **kw)["attention_mask"].sum())
            labels[row, :n_prompt] = -100
        batch["labels"] = labels
        if self.max_length and batch["input_ids"].shape[1] > self.max_length:
            raise ValueError(
                f"a training example has {batch['input_ids'].shape[1]} tokens, over "
                f"max_length={self.max_length}; raise max_length or use fewer demos (k)"
            )
        self.samples += len(convs)
        self.tokens += int(batch["attention_mask"].sum())
        self.answer_tokens += int((labels != -100).sum())
        return batch


def whole_sequence_labels(input_ids: Any, attention_mask: Any, processor: Any) -> Any:
    """Labels on every real token (the authors' loss): padding and image placeholder
    tokens (``processor.image_token_id`` where the processor has one) carry none."""
    labels = input_ids.clone()
    labels[attention_mask == 0] = -100
    image_token = getattr(processor, "image_token_id", None)
    if isinstance(image_token, int):
        labels[input_ids == image_token] = -100
    return labels


def as_dataset(convs: list[list[dict]]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"conversation": [json.dumps(c) for c in convs]})
