"""The store's record: one prediction, typed and versioned, naming what made it.

A record says which cell it belongs to (``config``, the store key with ``sample_id``),
what the model answered and what was parsed, and in ``components`` every setting that
shaped the answer: the model's fingerprint, the adapter and its training, the demo
selector with its options and embedder, the decoding, the probe, the dataset. Reading a
store checks each line against this schema, so a damaged or foreign line is reported by
file and line instead of surfacing later as a ``KeyError``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import StoreError
from ..tasks import TASKS

#: 1: the first round's untyped dicts (no ``version`` key); 2: adds ``version`` and ``components``;
#: 3: adds ``settings``, the hash of every setting that changes the prediction (``run.settings``).
RECORD_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


@dataclass(frozen=True)
class PredictionRecord:
    config: str
    sample_id: str
    task: str
    sample_type: str = "unknown"
    gold: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    parse_ok: bool = True
    reply: str = ""
    error: str | None = None
    seconds: float = 0.0
    prompt_hash: str | None = None
    demos: list[str] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: the cell: task, model, strategy, selector, k, seed, train size, family, n_train
    meta: dict[str, Any] = field(default_factory=dict)
    #: the settings of every component that made the prediction (see module doc)
    components: dict[str, Any] = field(default_factory=dict)
    #: hash of the cell's settings: a rerun reuses this record only under the same hash
    settings: str | None = None
    version: int = RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TYPES: dict[str, tuple[type, ...]] = {
    "config": (str,),
    "sample_id": (str,),
    "task": (str,),
    "sample_type": (str,),
    "gold": (list,),
    "labels": (list,),
    "parse_ok": (bool,),
    "reply": (str,),
    "error": (str, type(None)),
    "seconds": (int, float),
    "prompt_hash": (str, type(None)),
    "demos": (list,),
    "prompt_tokens": (int, type(None)),
    "completion_tokens": (int, type(None)),
    "meta": (dict,),
    "components": (dict,),
    "settings": (str, type(None)),
    "version": (int,),
}
_REQUIRED = ("config", "sample_id", "task", "gold", "labels")


def check_record(rec: Any, where: str) -> dict[str, Any]:
    """``rec`` as read from a store line, checked for the fields scoring needs and their
    types; raises :class:`StoreError` naming ``where`` (file:line) and the field."""
    if not isinstance(rec, dict):
        raise StoreError(f"{where}: a prediction record must be a JSON object")
    version = rec.get("version", 1)
    if version not in READABLE_VERSIONS:
        raise StoreError(
            f"{where}: record version {version!r} is not one this ptychobench reads "
            f"({', '.join(map(str, READABLE_VERSIONS))}); upgrade ptychobench"
        )
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        raise StoreError(f"{where}: prediction record lacks {', '.join(missing)}")
    if rec["task"] not in TASKS:
        raise StoreError(f"{where}: unknown task {rec['task']!r}; known: {', '.join(TASKS)}")
    known = {f.name for f in fields(PredictionRecord)}
    for key, value in rec.items():
        if key in known and not isinstance(value, _TYPES[key]):
            raise StoreError(
                f"{where}: field {key!r} is {type(value).__name__}, expected "
                f"{' or '.join(t.__name__ for t in _TYPES[key])}"
            )
    allowed = set(TASKS[rec["task"]].labels)
    for key in ("gold", "labels"):
        if not all(isinstance(x, str) for x in rec[key]):
            raise StoreError(f"{where}: field {key!r} must be a list of label strings")
        outside = sorted(set(rec[key]) - allowed)
        if outside:
            raise StoreError(
                f"{where}: field {key!r} holds {outside[:3]}, outside the {rec['task']} task's label space; "
                "is the store from another version of the task?"
            )
    return rec
