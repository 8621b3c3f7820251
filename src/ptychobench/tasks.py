"""The two PtychoBench tasks: their fixed label spaces, prompts, targets and parsing.

One :meth:`Task.render` serves evaluation and fine-tuning, so training and inference
prompts never drift apart. Labels travel as canonical strings: the artifact names for
artifact detection, the option letters ``"A".."X"`` for parameter recommendation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .data import Sample

ARTIFACT_LABELS: tuple[str, ...] = (
    "Grid artifacts",
    "Halo artifacts",
    "Line artifacts",
    "Local distortion",
    "Low contrast",
    "No clear structure",
    "Noisy artifacts",
    "Non-uniform background",
    "Phase ramp",
    "Singularity artifacts",
    "Blurring",
    "No obvious artifacts",
)
NO_ARTIFACTS = "No obvious artifacts"

PARAM_OPTIONS: dict[str, str] = {
    "A": "Change number of batches to 1",
    "B": "Disable momentum acceleration",
    "C": "Disable multimodal update",
    "D": "Disable position correction",
    "E": "Enable momentum acceleration",
    "F": "Enable multimodal update",
    "G": "Enable position correction",
    "H": "Increase batch size",
    "I": "Increase number of OPR modes",
    "J": "Increase number of probe modes",
    "K": "Increase the number of iterations",
    "L": "No changes needed",
    "M": "Recenter diffraction patterns",
    "N": "Reduce batch size",
    "O": "Reduce diffraction pattern size by factor of 2",
    "P": "Reduce or disable regularization",
    "Q": "Try other diffraction pattern orientations",
    "R": "Turn off affine constraint",
    "S": "Turn off variable probe correction (set OPR modes to 0)",
    "T": "Turn on variable probe correction (set OPR modes to 1)",
    "U": "Use Gaussian noise model",
    "V": "Use compact batch selection scheme",
    "W": "Use multislice model",
    "X": "Use sparse batch selection scheme",
}

_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.IGNORECASE | re.DOTALL)


def _norm(s: str) -> str:
    """Lower-case, drop punctuation and collapse spaces, for tolerant matching."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", s.lower()).split())


@dataclass(frozen=True)
class ParseResult:
    labels: frozenset[str]
    ok: bool  # False: nothing recognisable; the sample scores as an empty prediction


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    modality: str  # "image" or "text"
    labels: tuple[str, ...]
    #: Labels dropped before scoring (the paper drops "No obvious artifacts": it is the
    #: absence of the others, so scoring it would reward the trivial answer twice).
    unscored: frozenset[str]
    question: str
    answer_example: str

    @property
    def scored_labels(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label not in self.unscored)

    # ----------------------------------------------------------------- prompts
    def system_prompt(self) -> str:
        """The task's instructions, said once per conversation rather than per demo."""
        if self.name == "params":
            options = "\n".join(f"{k}. {v}" for k, v in PARAM_OPTIONS.items())
        else:
            options = "\n".join(f"- {label}" for label in self.labels)
        return (
            f"{self.question}\n\nOptions:\n{options}\n\n"
            "Choose every option that applies. Reply with the chosen options inside "
            f"<answer></answer> tags, for example: {self.answer_example}"
        )

    def user_turn(self, sample: Sample) -> dict:
        content: list[dict] = []
        if sample.text:
            content.append({"type": "text", "text": sample.text})
        if self.modality == "image":
            if sample.image is None:
                raise ValueError(f"sample {sample.id!r} of task {self.name!r} has no image")
            content.append({"type": "image", "image_path": str(sample.image)})
            content.append({"type": "text", "text": "Which artifacts does this reconstruction show?"})
        else:
            content.append({"type": "text", "text": "Which parameter changes do you recommend?"})
        return {"role": "user", "content": content}

    def target(self, labels: frozenset[str] | Sequence[str]) -> str:
        """The assistant's answer for a label set, in the released format."""
        ordered = [label for label in self.labels if label in set(labels)]
        if self.name == "params":
            return f"<answer>{', '.join(ordered)}</answer>"
        return f"<answer>[{', '.join(ordered)}]</answer>"

    def render(self, sample: Sample, demos: Sequence[Sample] = ()) -> list[dict]:
        """Chat messages for a query: system turn, one user/assistant pair per demo, query."""
        messages: list[dict] = [
            {"role": "system", "content": [{"type": "text", "text": self.system_prompt()}]}
        ]
        for demo in demos:
            messages.append(self.user_turn(demo))
            messages.append(
                {"role": "assistant", "content": [{"type": "text", "text": self.target(demo.labels)}]}
            )
        messages.append(self.user_turn(sample))
        return messages

    # ----------------------------------------------------------------- parsing
    def parse(self, reply: str) -> ParseResult:
        """Labels from a model's reply; tolerant of case, spacing, brackets, letters or
        names, and a missing closing tag. Text outside ``<answer>`` is read only when
        there is no tag at all."""
        if reply is None:
            return ParseResult(frozenset(), False)
        matches = _ANSWER_RE.findall(reply)
        body = matches[-1] if matches else reply
        found = self._labels_in(body, strict=not matches)
        return ParseResult(frozenset(found), bool(found))

    def _labels_in(self, body: str, strict: bool) -> set[str]:
        found: set[str] = set()
        pieces = [p for p in re.split(r"[,;\n\[\]|/]+|\band\b", body) if p.strip()]
        for piece in pieces:
            key = label_key(piece)
            if self.name == "params":
                found |= option_letters(key, allow_letter_runs=not strict)
            else:
                found |= {
                    label for label in self.labels
                    if f" {label_key(label)} " in f" {key} " or _ARTIFACT_ALIASES.get(key) == label
                }
        return found


def label_key(s: str) -> str:
    """Normalised, crudely singularised words: 'Singularities' and 'singularity' agree."""
    words = _norm(s).split()
    return " ".join(re.sub(r"ies$", "y", w) if len(w) > 4 else w for w in words).replace(
        "artifacts", "artifact"
    )


_ARTIFACT_ALIASES = {
    # a whole answer item naming only the kind: "Grid", "singularities", "halo"
    **{label_key(label).removesuffix(" artifact"): label for label in ARTIFACT_LABELS if label.endswith("artifacts")},
    "noise": "Noisy artifacts",
    "noise artifact": "Noisy artifacts",
    "blur": "Blurring",
    "blurry": "Blurring",
    "blurred": "Blurring",
    "none": NO_ARTIFACTS,
    "no artifact": NO_ARTIFACTS,
}

_OPTION_KEYS = {letter: label_key(text) for letter, text in PARAM_OPTIONS.items()}


def option_letters(key: str, allow_letter_runs: bool) -> set[str]:
    """Letters named in one comma-separated piece: 'g', 'option g', 'g enable position
    correction', the option text alone, or (inside an answer tag) 'g j k'."""
    m = re.fullmatch(r"(?:options? )?([a-x])(?: (.*))?", key)
    if m:
        letter, rest = m.group(1).upper(), (m.group(2) or "")
        if not rest or _OPTION_KEYS[letter].startswith(rest) or rest.startswith(_OPTION_KEYS[letter]):
            return {letter}
    named = {letter for letter, text in _OPTION_KEYS.items() if f" {text} " in f" {key} "}
    if named:
        return named
    if allow_letter_runs and re.fullmatch(r"(?:[a-x] )*[a-x]", key):
        return {c.upper() for c in key.split()}
    return set()


ARTIFACTS = Task(
    name="artifacts",
    title="Visual artifact detection",
    modality="image",
    labels=ARTIFACT_LABELS,
    unscored=frozenset({NO_ARTIFACTS}),
    question=(
        "You are an expert in X-ray ptychography. The image is the phase of a ptychographic "
        "reconstruction of the object. Identify the artifacts it shows."
    ),
    answer_example="<answer>[Grid artifacts, Blurring]</answer>",
)

PARAMS = Task(
    name="params",
    title="Reconstruction parameter recommendation",
    modality="text",
    labels=tuple(PARAM_OPTIONS),
    unscored=frozenset(),
    question=(
        "You are an expert in X-ray ptychography using the Pty-Chi LSQML reconstruction "
        "workflow. Given the experiment and the current reconstruction described by the "
        "user, recommend which changes to the reconstruction parameters to make."
    ),
    answer_example="<answer>G, J, K</answer>",
)

TASKS: dict[str, Task] = {t.name: t for t in (ARTIFACTS, PARAMS)}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
