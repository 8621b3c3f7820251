"""The one registry of names a config, the runner and the report share: strategies,
demo selectors with their options and aliases, baselines with their options and the
input they need. Tasks live in :mod:`ptychobench.tasks`, models in
:mod:`ptychobench.models.catalog`; everything else that has a name is here, once.

Only data and a lookup helper: no heavy imports, so parsing a config costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

#: adaptation strategies, in the order the report lists their families
STRATEGIES = ("zero-shot", "icl", "sft", "sft+icl")
#: strategies whose cells use a fine-tuned adapter
ADAPTER_STRATEGIES = frozenset({"sft", "sft+icl"})
#: strategies whose cells show demonstrations (k > 0)
DEMO_STRATEGIES = frozenset({"icl", "sft+icl"})
#: strategy families as the report orders them (every baseline is one family)
FAMILY_ORDER = (*STRATEGIES, "baseline")

#: fine-tuning profiles (``sft: {profile: ...}``; strategies.sft.recipe defines each):
#: cpu (short LoRA runs), lowdata (cpu plus the low-data stages of issue 27), gpu (the
#: paper's hyper-parameters), paper (the authors' scripts exactly)
SFT_PROFILES = ("cpu", "lowdata", "gpu", "paper")

#: demo selectors and the options each takes (``selectors:`` / ``selector_options:``)
SELECTORS: dict[str, frozenset[str]] = {
    "random": frozenset(),
    "sample-type": frozenset(),
    "knn": frozenset({"text_model", "image_backbone"}),
    "knn-diverse": frozenset({"text_model", "image_backbone", "lam", "label_weight", "fetch_k"}),
}
#: the paper's names and other spellings users write
SELECTOR_ALIASES = {
    "rfs": "random",
    "ssfs": "sample-type",
    "context-aware": "sample-type",
    "sample_type": "sample-type",
    "knn_diverse": "knn-diverse",
    "mmr": "knn-diverse",
}


@dataclass(frozen=True)
class Baseline:
    name: str
    #: the input it reads: "image" (image task only), "text" (text task only) or "any"
    modality: str
    options: frozenset[str]
    description: str


#: the ``type-only`` baseline's rules (``probe_options: {rule: ...}``; strategies/type_only.py)
TYPE_ONLY_RULES = ("best-set", "majority")

_PROBE = frozenset({"C", "folds", "objective", "at_least_one"})
BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in [
        Baseline(
            "vision-probe",
            "image",
            _PROBE | {"backbone"},
            "logistic-regression probe on frozen vision-backbone features (the paper's DINOv3 classifier)",
        ),
        Baseline(
            "text-probe",
            "text",
            _PROBE | {"text_model"},
            "logistic-regression probe on frozen sentence-embedding features",
        ),
        Baseline(
            "knn-vote",
            "any",
            frozenset({"n_neighbors", "modality", "backbone", "text_model", "at_least_one"}),
            "label vote of the nearest training samples",
        ),
        Baseline(
            "type-only",
            "any",
            frozenset({"at_least_one", "rule"}),
            "a label set per sample type, fit on the training split (how far the type alone goes)",
        ),
    ]
}


def canonical_selector(name: str) -> str:
    """A selector's canonical name from any accepted spelling; ConfigError otherwise."""
    key = SELECTOR_ALIASES.get(str(name).lower(), str(name).lower())
    if key not in SELECTORS:
        aliases = ", ".join(f"{a}={b}" for a, b in SELECTOR_ALIASES.items())
        raise ConfigError(f"unknown demo selector {name!r}; choose one of {', '.join(SELECTORS)} (aliases: {aliases})")
    return key


def family(strategy: str) -> str:
    """The report's family of a cell's strategy (every baseline is 'baseline')."""
    return "baseline" if strategy in BASELINES else strategy
