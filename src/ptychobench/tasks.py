"""The two PtychoBench tasks: their fixed label spaces, prompts, targets and parsing.

One :meth:`Task.render` serves evaluation and fine-tuning, so training and inference
prompts never drift apart. Labels travel as canonical strings: the artifact names for
artifact detection, the option letters ``"A".."X"`` for parameter recommendation.

Two switches reproduce the authors' released scripts when asked (docs/paper.md):

- ``prompt``: ``ours`` (default: the instructions and option list once, in a system turn;
  a short question per sample) or ``released`` (no system turn; each user turn is the
  released question verbatim, each demo's answer the released answer string verbatim,
  the image before the text as the authors' VLM script sends it).
- ``parse``: ``tolerant`` (default: case, spacing, names or letters, a missing closing tag,
  and free text without a tag read with negations skipped) or ``strict`` (the authors'
  inference scripts: the first match of ``<answer>[...]</answer>`` (brackets required for
  the artifact task, optional for the parameter task), case-sensitive, on one line,
  comma-split, exact names only; items outside the label space are kept aside in
  :attr:`ParseResult.extra`, since the authors' scorer counts them as labels of their own),
  or ``bootstrap`` (the parser of the authors' bootstrap scorer, whose mean the paper
  reports: every answer tag and bracket removed from the whole reply, the rest split at
  commas, exact names only, anything else ignored).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
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
#: The authors' answer patterns: no DOTALL, case-sensitive, the first match wins.
_STRICT_RE = {
    "artifacts": re.compile(r"<answer>\[(.*?)\]</answer>"),
    "params": re.compile(r"<answer>\[?(.*?)\]?</answer>"),
}
PROMPT_MODES = ("ours", "released")
PARSE_MODES = ("tolerant", "strict", "bootstrap")
#: Words that, earlier in the same clause, turn a label mention into its denial
#: ("there are no grid artifacts", "without blurring", "I would not enable G").
_NEGATION = re.compile(
    r"\b(no|not|never|without|none|neither|nor|absent|absence|lack|lacks|lacking|free of|"
    r"isn t|aren t|doesn t|don t|didn t|won t|shouldn t|cannot|can t)\b"
)
#: Free text is read clause by clause so a denial does not reach past its clause.
#: (Not at commas: "no grid artifacts, halos or blurring" denies all three.)
_CLAUSE = re.compile(r"(?:[.;:!?](?=\s|$)|[\n()])+|\bbut\b|\bhowever\b|\bwhereas\b|\bwhile\b", re.IGNORECASE)
#: A denial right after the mention: "grid artifacts are absent", "blurring is not visible".
_DENIED_AFTER = re.compile(
    r"^\s*(?:artifact\s+)?(?:(?:is|are|was|were|seems|seem|appears|appear)\s+)?"
    r"(?:not\b|absent\b|missing\b|none\b|no longer\b)"
)


def _norm(s: str) -> str:
    """Lower-case, drop punctuation and collapse spaces, for tolerant matching."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", s.lower()).split())


@dataclass(frozen=True)
class ParseResult:
    labels: frozenset[str]
    ok: bool  # False: nothing recognisable; the sample scores as an empty prediction
    #: strict mode: answer items outside the label space, verbatim (the authors' scorer
    #: binarises over every string seen, so each is a false positive of its own there)
    extra: tuple[str, ...] = ()


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
    #: ``ours`` or ``released`` (see the module doc); set with :meth:`with_modes`
    prompt_mode: str = "ours"
    #: ``tolerant`` or ``strict`` (see the module doc); set with :meth:`with_modes`
    parse_mode: str = "tolerant"

    def with_modes(self, prompt: str | None = None, parse: str | None = None) -> Task:
        """This task with another prompt and/or parse mode (a run's per-experiment switch)."""
        prompt, parse = prompt or self.prompt_mode, parse or self.parse_mode
        if prompt not in PROMPT_MODES:
            raise ValueError(f"prompt mode {prompt!r}: choose one of {', '.join(PROMPT_MODES)}")
        if parse not in PARSE_MODES:
            raise ValueError(f"parse mode {parse!r}: choose one of {', '.join(PARSE_MODES)}")
        return replace(self, prompt_mode=prompt, parse_mode=parse)

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

    def target(self, labels: frozenset[str] | Sequence[str], rng: random.Random | None = None) -> str:
        """The assistant's answer for a label set, in the released format: the labels in the
        option list's order, or shuffled by ``rng`` (training in random order, issue 27)."""
        ordered = [label for label in self.labels if label in set(labels)]
        if rng is not None:
            rng.shuffle(ordered)
        if self.name == "params":
            return f"<answer>{', '.join(ordered)}</answer>"
        return f"<answer>[{', '.join(ordered)}]</answer>"

    # ------------------------------------------------ the released prompt (verbatim)
    def released_text(self, sample: Sample) -> str:
        """The user text of the released record: kept verbatim on import; for generated
        data, the text an export writes (the sample's text, then the instructions)."""
        text = (sample.metadata or {}).get("released_text")
        if isinstance(text, str):
            return text
        return self.system_prompt() if not sample.text else f"{sample.text}\n\n{self.system_prompt()}"

    def released_answer(self, sample: Sample) -> str:
        """The released answer string (its label order and spelling) when imported, else
        :meth:`target` of the labels."""
        answer = (sample.metadata or {}).get("released_answer")
        if isinstance(answer, str):
            m = _ANSWER_RE.search(answer)
            if m and self._labels_in(m.group(1)) == set(sample.labels):  # not relabelled since
                return answer
        return self.target(sample.labels)

    def released_user_turn(self, sample: Sample) -> dict:
        text = {"type": "text", "text": self.released_text(sample)}
        if self.modality != "image":
            return {"role": "user", "content": [text]}
        if sample.image is None:
            raise ValueError(f"sample {sample.id!r} of task {self.name!r} has no image")
        # the authors' Llama-Vision script sends the image part first, then the question
        return {"role": "user", "content": [{"type": "image", "image_path": str(sample.image)}, text]}

    def render(self, sample: Sample, demos: Sequence[Sample] = ()) -> list[dict]:
        """Chat messages for a query: system turn, one user/assistant pair per demo, query.
        In ``released`` prompt mode: no system turn, released texts and answers verbatim."""
        messages: list[dict]
        if self.prompt_mode == "released":
            messages = []
            for demo in demos:
                messages.append(self.released_user_turn(demo))
                messages.append(
                    {"role": "assistant", "content": [{"type": "text", "text": self.released_answer(demo)}]}
                )
            messages.append(self.released_user_turn(sample))
            return messages
        messages = [{"role": "system", "content": [{"type": "text", "text": self.system_prompt()}]}]
        for demo in demos:
            messages.append(self.user_turn(demo))
            messages.append({"role": "assistant", "content": [{"type": "text", "text": self.target(demo.labels)}]})
        messages.append(self.user_turn(sample))
        return messages

    # ----------------------------------------------------------------- parsing
    def parse(self, reply: str | None, mode: str | None = None) -> ParseResult:
        """Labels from a model's reply, in this task's parse mode (or ``mode``).

        ``tolerant``: case, spacing, brackets, letters or names, a missing closing tag; the
        last ``<answer>`` is read; text outside a tag is read only when there is no tag at
        all, and then clause by clause with denied mentions skipped. ``strict``: the
        authors' parser (module doc)."""
        if (mode or self.parse_mode) == "strict":
            return self.parse_strict(reply)
        if (mode or self.parse_mode) == "bootstrap":
            return self.parse_bootstrap(reply)
        if reply is None:
            return ParseResult(frozenset(), False)
        matches = _ANSWER_RE.findall(reply)
        found = self._labels_in(matches[-1]) if matches else self._labels_in_free_text(reply)
        return ParseResult(frozenset(found), bool(found))

    def parse_strict(self, reply: str | None) -> ParseResult:
        """The authors' inference-script parser: first pattern match, comma split, items
        stripped, exact (case-sensitive) names or letters. ``ok`` is whether the pattern
        matched; unknown items go to ``extra``. "No obvious artifacts" stays a label here
        (the task drops it before scoring, as the authors' parser does on reading)."""
        m = _STRICT_RE[self.name].search(reply or "")
        if not m:
            return ParseResult(frozenset(), False)
        items = [x.strip() for x in m.group(1).split(",")] if m.group(1).strip() else []
        items = [x for x in items if x]
        known = set(self.labels)
        return ParseResult(
            frozenset(x for x in items if x in known), True, tuple(dict.fromkeys(x for x in items if x not in known))
        )

    def parse_bootstrap(self, reply: str | None) -> ParseResult:
        """The authors' bootstrap-scorer parser (``evaluation/ptychobench_loader.py``): the
        tags and brackets removed wherever they are, the whole reply split at commas, items
        stripped and kept when exactly a label ("No obvious artifacts" included: that scorer
        counts it as a class). Text around the tag merges into the first or last item, which
        then matches nothing. ``ok``: some item matched."""
        text = (reply or "").replace("<answer>", "").replace("</answer>", "").replace("[", "").replace("]", "")
        found = {x.strip() for x in text.split(",")} & set(self.labels)
        return ParseResult(frozenset(found), bool(found))

    def _labels_in(self, body: str) -> set[str]:
        """Labels inside an answer tag: each comma (etc.) separated item names one, or for
        the parameter task a run of letters ("G J K")."""
        found: set[str] = set()
        pieces = [p for p in re.split(r"[,;\n\[\]|/]+|\band\b", body) if p.strip()]
        for piece in pieces:
            key = label_key(piece)
            if self.name == "params":
                found |= option_letters(key, allow_letter_runs=True)
            else:
                found |= {
                    label
                    for label in self.labels
                    if f" {label_key(label)} " in f" {key} " or _ARTIFACT_ALIASES.get(key) == label
                }
        return found

    def _labels_in_free_text(self, text: str) -> set[str]:
        """Labels named in a reply without an answer tag: every mention not denied earlier
        in its clause ("there are no grid artifacts" names none); for the parameter task
        also every standalone option letter ("I recommend G and K": G and K)."""
        found: set[str] = set()
        names = _OPTION_KEYS if self.name == "params" else {label: label_key(label) for label in self.labels}
        for clause in _CLAUSE.split(text):
            if not clause or not clause.strip():
                continue
            key = f" {label_key(clause)} "
            for label, name in names.items():
                at = key.find(f" {name} ")
                if at >= 0 and not _denied(key[:at]) and not _DENIED_AFTER.match(key[at + len(name) + 2 :]):
                    found.add(label)
            if self.name == "params":
                found |= _free_letters(clause)
            else:
                words = key.split()
                for j, w in enumerate(words):  # a lone alias: "blurry", "halo", "noise"
                    alias = _ARTIFACT_ALIASES.get(w)
                    if (
                        alias
                        and alias != NO_ARTIFACTS
                        and not _denied(" ".join(words[:j]))
                        and not _DENIED_AFTER.match(" " + " ".join(words[j + 1 :]))
                    ):
                        found.add(alias)
        return found


def label_key(s: str) -> str:
    """Normalised, crudely singularised words: 'Singularities' and 'singularity' agree."""
    words = _norm(s).split()
    return " ".join(re.sub(r"ies$", "y", w) if len(w) > 4 else w for w in words).replace("artifacts", "artifact")


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
_LABEL_WORDS = frozenset(
    " ".join([*map(label_key, ARTIFACT_LABELS), *_OPTION_KEYS.values(), *_ARTIFACT_ALIASES]).split()
) - frozenset("the of to or by on off set no non number 0 1 2".split())


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


#: Words a denial reaches across: "no obvious signs of grid artifacts, halos or blurring".
_FILLER = frozenset(
    "any obvious visible significant clear sign signs of or and nor a an apparent evident "
    "noticeable see seen detect detected present option options".split()
)


def _denied(before: str) -> bool:
    """Whether a mention is denied by the normalised clause text ``before`` it: a denial
    word, followed by at most three words that are neither label words nor fillers (so
    "no grid artifacts, halos or blurring" denies blurring, "without halos, the main
    problem is low contrast" does not deny low contrast)."""
    cues = list(_NEGATION.finditer(before))
    if not cues:
        return False
    rest = before[cues[-1].end() :].split()
    other = [
        w
        for w in rest
        if w not in _FILLER
        and w not in _LABEL_WORDS
        and w.rstrip("s") not in _LABEL_WORDS
        and not re.fullmatch(r"[a-x]", w)
    ]
    return len(other) <= 3


def _free_letters(clause: str) -> set[str]:
    """Option letters standing alone in free text, unless denied earlier in the clause.
    "I" and "A" count only in a list ("A, G", "I and K", "option A"), never as the
    pronoun or the article ("I recommend", "A change")."""
    found: set[str] = set()
    for m in re.finditer(r"(?<![\w'])([A-X])(?![\w'])", clause):
        letter = m.group(1)
        before, after = clause[: m.start()], clause[m.end() :]
        if letter in "AI":
            listed = re.match(r"\s*(?:[,;/)]|\.(?:\s|$)|$|and\b|or\b)", after) or re.search(
                r"(?:\boptions?|[,;/(]|\band|\bor)\s*$", before, re.IGNORECASE
            )
            if not listed:
                continue
        if _denied(label_key(before)):
            continue
        found.add(letter)
    return found


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
