"""Turn the released format's turns into what each kind of model API takes.

Every backend renders through these helpers, so a hub VLM, ``tiny-vlm``, a local GGUF and
an API model see the same conversation: the same turns, images in the same places, and a
system turn merged into the first user turn only where the model's chat template refuses
a system role.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .base import Conversation, Message, image_paths, text_of

T = TypeVar("T")


def merge_system(conversation: Conversation) -> Conversation:
    """The conversation without system turns: their text leads the first user turn.

    For chat templates that reject a system role (Gemma, Mistral's older ones, ...)."""
    system = [text_of(m) for m in conversation if m["role"] == "system"]
    rest = [m for m in conversation if m["role"] != "system"]
    if not system:
        return list(conversation)
    if not rest or rest[0]["role"] != "user":
        raise ValueError("a conversation with a system turn needs a user turn after it")
    first = dict(rest[0])
    first["content"] = [{"type": "text", "text": "\n\n".join(system)}, *rest[0]["content"]]
    return [first, *rest[1:]]


def is_role_error(exc: BaseException) -> bool:
    """Whether an exception looks like a chat template refusing the turns' roles (Gemma:
    "System role not supported"; Mistral: "Conversation roles must alternate ...")."""
    try:
        from jinja2 import TemplateError
    except ImportError:  # pragma: no cover - jinja2 comes with transformers
        TemplateError = ()  # type: ignore[assignment,misc]
    msg = str(exc).lower()
    return isinstance(exc, TemplateError) or (isinstance(exc, ValueError) and ("system" in msg or "role" in msg))


def render_with_fallback(
    render: Callable[[Conversation], T],
    conversation: Conversation,
    state: dict[str, bool],
    retry_if: Callable[[BaseException], bool] = lambda e: True,
) -> T:
    """``render(conversation)``; if the template refuses it (``retry_if``) and there is a
    system turn, render again with the system turn merged, and remember that."""
    has_system = any(m["role"] == "system" for m in conversation)
    if state.get("merge_system") and has_system:
        return render(merge_system(conversation))
    try:
        return render(conversation)
    except Exception as e:
        if not has_system or not retry_if(e):
            raise
        out = render(merge_system(conversation))
        state["merge_system"] = True
        return out


def to_text_messages(conversation: Conversation) -> list[dict[str, str]]:
    """Plain ``{"role", "content": str}`` turns for a text-only model.

    Raises ValueError when the conversation carries images: a text model cannot see them,
    and silently dropping them would score a different task."""
    n = len(image_paths(conversation))
    if n:
        raise ValueError(
            f"this model takes text only, but the conversation has {n} image(s); "
            "use a vision-language model (hf:<VLM>, tiny-vlm, gpt-4o)"
        )
    return [{"role": m["role"], "content": text_of(m)} for m in conversation]


def to_vision_messages(conversation: Conversation) -> tuple[list[dict[str, Any]], list[str]]:
    """Processor chat-template turns (``{"type": "image"}`` placeholders, text parts) and
    the image paths in order of appearance, which the processor takes separately."""
    messages: list[dict[str, Any]] = []
    paths: list[str] = []
    for m in conversation:
        content: list[dict[str, Any]] = []
        for part in m["content"]:
            if part.get("type") == "image":
                content.append({"type": "image"})
                paths.append(part["image_path"])
            elif part.get("type") == "text":
                content.append({"type": "text", "text": part["text"]})
            else:
                raise ValueError(f"unknown content part type {part.get('type')!r} in a {m['role']} turn")
        messages.append({"role": m["role"], "content": content})
    return messages, paths


def load_image(path: str | Path):
    """An image as RGB (ptychographic phase images are usually single-channel)."""
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {p} not found (referenced by the conversation)")
    with Image.open(p) as im:
        return im.convert("RGB")


def data_url(path: str | Path) -> str:
    """A base64 data URL of an image file, as the OpenAI chat API takes images."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {p} not found (referenced by the conversation)")
    mime = mimetypes.guess_type(p.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(p.read_bytes()).decode('ascii')}"


def to_openai_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """OpenAI chat-completions messages. Text-only turns are sent as plain strings, which
    every OpenAI-compatible server accepts; turns with images as content-part lists."""
    out: list[dict[str, Any]] = []
    for m in conversation:
        if not any(p.get("type") == "image" for p in m["content"]):
            out.append({"role": m["role"], "content": text_of(m)})
            continue
        parts: list[dict[str, Any]] = []
        for p in m["content"]:
            if p.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": data_url(p["image_path"])}})
            else:
                parts.append({"type": "text", "text": p["text"]})
        out.append({"role": m["role"], "content": parts})
    return out


def describe(conversation: Conversation) -> str:
    """A short description of a conversation for error messages."""
    roles = "/".join(m["role"] for m in conversation)
    return f"{len(conversation)} turns ({roles}), {len(image_paths(conversation))} image(s)"


__all__ = [
    "Message",
    "data_url",
    "describe",
    "is_role_error",
    "load_image",
    "merge_system",
    "render_with_fallback",
    "to_openai_messages",
    "to_text_messages",
    "to_vision_messages",
]
