"""The one interface every model backend implements.

A backend sees chat messages only (the released format's turns) and never reaches into
tasks. Messages are ``list[dict]`` turns::

    {"role": "system" | "user" | "assistant",
     "content": [{"type": "text", "text": "..."}, {"type": "image", "image_path": "/abs.png"}]}

A failed generation is returned as a :class:`Generation` with ``error`` set, never raised
and never dropped, so the caller can record and count it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]
#: The training log ptychobench writes beside a LoRA adapter (settings, loss curve, wall
#: times). It documents the adapter but is not part of its identity: two trainings with the
#: same weights have the same fingerprint.
ADAPTER_MANIFEST = "ptychobench_adapter.json"
Conversation = list[Message]


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. Greedy by default, so a rerun gives the same reply."""

    max_new_tokens: int = 500
    do_sample: bool = False
    temperature: float = 0.3
    min_p: float = 0.1
    top_p: float = 1.0
    seed: int = 0
    #: Generation ends after any of these strings (the answer's closing tag by default):
    #: what follows it is never read, so generating it only costs time.
    stop: tuple[str, ...] = ("</answer>",)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        if not self.do_sample:  # sampling knobs do not change greedy output
            for key in ("temperature", "min_p", "top_p", "seed"):
                d.pop(key)
        return d


GREEDY = GenerationConfig()
#: The paper's decoding: sampling at temperature 0.3 with min_p 0.1, up to 500 new tokens.
PAPER_SAMPLING = GenerationConfig(do_sample=True, temperature=0.3, min_p=0.1)
DECODING_PRESETS: dict[str, GenerationConfig] = {"greedy": GREEDY, "paper": PAPER_SAMPLING}


@dataclass
class Generation:
    text: str = ""
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class Backend(Protocol):
    """``generate`` takes a batch of conversations and returns one Generation each, in order."""

    def fingerprint(self) -> dict[str, Any]:
        """Model, adapter, revision and anything else that changes the replies."""
        ...

    def generate(self, batch: list[Conversation], config: GenerationConfig = GREEDY) -> list[Generation]: ...


def text_of(message: Message) -> str:
    """All text parts of one turn, joined."""
    return "\n".join(p["text"] for p in message["content"] if p.get("type") == "text")


def image_paths(conversation: Conversation) -> list[str]:
    """Every image path in a conversation, in order of appearance."""
    return [p["image_path"] for m in conversation for p in m["content"] if p.get("type") == "image"]
