"""Predicted option letters -> one parameter set, applied jointly.

Rules (documented in docs and the report):

* "L" (no changes needed) is dropped; advice with nothing else keeps the current params.
* Contradictory pairs (the two options undo each other): increase vs reduce batch size
  (A/N, H/N), enable vs disable momentum (E/B), multimodal update on/off (F/C), position
  correction on/off (G/D), OPR on/off (T/S, I/S), compact vs uniform batching (V/X). When
  both of a pair are advised, NEITHER is applied (we cannot know which the advisor meant)
  and the pair is recorded as ``contradictory``.
* An option that does not apply to the current params (``sim.options.candidates`` gives
  nothing, e.g. "enable momentum" with momentum on) is recorded as ``not_applicable``.
* The rest are composed in alphabetical order, each applied to the params the previous
  ones produced; one that no longer changes anything (H after A) is ``subsumed``. "Try
  other orientations" (Q) is applied last and yields one variant per orientation; the
  reconstruction keeps the variant with the lowest final data loss, as the dataset's
  trials do (never the truth).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sim.options import candidates
from ..sim.recon import ReconParams

NO_CHANGE = "L"
CONTRADICTORY_PAIRS: tuple[tuple[str, str], ...] = (
    ("A", "N"),
    ("H", "N"),
    ("E", "B"),
    ("F", "C"),
    ("G", "D"),
    ("T", "S"),
    ("I", "S"),
    ("V", "X"),
)


@dataclass
class Advice:
    """What a set of predicted letters means for one experiment."""

    letters: tuple[str, ...]  # as predicted, sorted
    applied: tuple[str, ...] = ()
    contradictory: tuple[tuple[str, str], ...] = ()
    not_applicable: tuple[str, ...] = ()
    subsumed: tuple[str, ...] = ()
    variants: list[ReconParams] = field(default_factory=list)  # >1 only with Q

    @property
    def changes(self) -> bool:
        return bool(self.applied)

    def summary(self) -> dict:
        return {
            "letters": list(self.letters),
            "applied": list(self.applied),
            "contradictory": ["/".join(p) for p in self.contradictory],
            "not_applicable": list(self.not_applicable),
            "subsumed": list(self.subsumed),
        }


def apply_advice(
    letters: frozenset[str] | set[str] | list[str],
    params: ReconParams,
    n_pos: int,
    com_offset: tuple[float, float] = (1.0, 1.0),
) -> Advice:
    """Canonical joint application of ``letters`` to ``params`` (rules in the module doc)."""
    wanted = sorted(set(letters) - {NO_CHANGE})
    pairs = tuple(p for p in CONTRADICTORY_PAIRS if p[0] in wanted and p[1] in wanted)
    dropped = {x for p in pairs for x in p}
    not_app = tuple(x for x in wanted if x not in dropped and not candidates(x, params, n_pos, com_offset))
    todo = [x for x in wanted if x not in dropped and x not in not_app]
    todo.sort(key=lambda x: (x == "Q", x))  # Q last: it branches
    p = params
    applied: list[str] = []
    subsumed: list[str] = []
    variants = [params]
    for x in todo:
        cands = candidates(x, p, n_pos, com_offset)
        if x == "Q":
            variants = cands
            applied.append(x)
            continue
        if not cands or cands[0] == p:
            subsumed.append(x)
            continue
        p = cands[0]
        applied.append(x)
        variants = [p]
    return Advice(tuple(sorted(set(letters))), tuple(applied), pairs, not_app, tuple(subsumed), variants)
