"""A run's config: the YAML schema, and every value checked when the config is parsed.

Nothing runs before the whole config is known to be usable: names come from
:mod:`ptychobench.names` and the model catalog, nested options (``backend_options``,
``sft``, ``probe_options``, ``selector_options``) are checked against what their component
takes, and each mistake is one :class:`~ptychobench.errors.ConfigError` naming the file,
the experiment and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, ModelError
from ..models.base import DECODING_PRESETS, GenerationConfig
from ..models.catalog import BACKEND_OPTIONS, resolve_model
from ..names import ADAPTER_STRATEGIES, BASELINES, DEMO_STRATEGIES, SELECTORS, STRATEGIES, canonical_selector
from ..strategies.sft.recipe import Recipe
from ..tasks import PARSE_MODES, PROMPT_MODES, TASKS

CONFIG_DIR = Path(__file__).parent.parent / "configs"
#: ``sft:`` keys besides the Recipe's fields (they go to ``train_adapter``)
SFT_KEYS = frozenset({"profile", "demo_selector", "k", "selector_options"})
MAX_K = 32


@dataclass
class Experiment:
    task: str
    model: str | None = None
    name: str | None = None
    adapter: str | None = None
    strategies: list[str] = field(default_factory=lambda: ["zero-shot"])
    selectors: list[str] = field(default_factory=lambda: ["random"])
    k: list[int] = field(default_factory=lambda: [0])
    baselines: list[str] = field(default_factory=list)
    backend_options: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)
    probe_options: dict[str, Any] = field(default_factory=dict)
    selector_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    #: ``ours`` or ``released`` (the authors' prompt verbatim; docs/paper.md)
    prompt: str = "ours"
    #: ``tolerant`` or ``strict`` (the authors' parser; docs/paper.md)
    parse: str = "tolerant"
    #: environment variables the experiment needs (an API key); when one is unset the
    #: experiment is left out of the grid and the run says so, rather than failing
    requires_env: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or (self.model or "baseline")


@dataclass
class RunConfig:
    name: str
    dataset: str
    experiments: list[Experiment]
    seeds: list[int] = field(default_factory=lambda: [0])
    train_sizes: list[int | str] = field(default_factory=lambda: ["all"])
    decoding: str = "greedy"
    max_new_tokens: int | None = None
    batch_size: int = 8
    limit: int | None = None  # first N test samples only (smoke tests)
    source: str = ""
    #: experiments left out because an environment variable they need is unset: (label, why)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def generation(self) -> GenerationConfig:
        gen = DECODING_PRESETS[self.decoding]
        return replace(gen, max_new_tokens=self.max_new_tokens) if self.max_new_tokens else gen


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}")


def _list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _options(where: str, key: str, given: Any, allowed: frozenset[str] | set[str], owner: str) -> None:
    _check(isinstance(given, dict), where, f"{key} must be a mapping")
    bad = sorted(set(given) - set(allowed))
    _check(not bad, where, f"{key}: unknown option(s) {bad} for {owner}; allowed: {sorted(allowed) or 'none'}")


def _parse_experiment(e: Any, where: str) -> Experiment:
    _check(isinstance(e, dict), where, "must be a mapping")
    efields = {f.name for f in fields(Experiment)}
    bad = set(e) - efields
    _check(not bad, where, f"unknown key(s) {sorted(bad)}; allowed: {sorted(efields)}")
    _check(e.get("task") in TASKS, where, f"task must be one of {list(TASKS)}")
    e = dict(e)
    for key in ("strategies", "selectors", "k", "baselines", "requires_env"):
        if key in e:
            e[key] = _list(e[key])
    exp = Experiment(**e)
    _check(exp.prompt in PROMPT_MODES, where, f"prompt must be one of {list(PROMPT_MODES)}, got {exp.prompt!r}")
    _check(exp.parse in PARSE_MODES, where, f"parse must be one of {list(PARSE_MODES)}, got {exp.parse!r}")
    _check(all(isinstance(v, str) and v for v in exp.requires_env), where,
           "requires_env must be a list of environment variable names")
    modality = TASKS[exp.task].modality
    if not exp.model:
        _check(bool(exp.baselines), where, "needs a 'model' or 'baselines'")
        _check(exp.adapter is None, where, "'adapter' needs a 'model'")
        exp.strategies = []
    for s in exp.strategies:
        _check(s in STRATEGIES, where, f"unknown strategy {s!r}; choose from {list(STRATEGIES)}")
    try:
        exp.selectors = [canonical_selector(s) for s in exp.selectors]
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    for b in exp.baselines:
        _check(b in BASELINES, where, f"unknown baseline {b!r}; choose from {list(BASELINES)}")
        need = BASELINES[b].modality
        _check(need in ("any", modality), where,
               f"baseline {b!r} reads {need} input; the {exp.task} task gives {modality}")
    _check(all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= MAX_K for k in exp.k), where,
           f"k must be integers in 0..{MAX_K}")
    if any(s in DEMO_STRATEGIES for s in exp.strategies):
        _check(any(k > 0 for k in exp.k), where, "icl strategies need a k > 0")
    _check(exp.batch_size is None or _positive_int(exp.batch_size), where, "batch_size must be a positive integer")
    if exp.model:
        try:
            spec = resolve_model(exp.model)
        except ModelError as err:
            raise ConfigError(f"{where}: {err}") from None
        if modality == "image":
            _check(spec.modality != "text", where,
                   f"model {exp.model!r} takes text only; the {exp.task} task needs a vision-language model")
        _options(where, "backend_options", exp.backend_options, BACKEND_OPTIONS[spec.backend], exp.model)
        if exp.adapter is not None:
            _check(spec.takes_adapter, where, f"model {exp.model!r} takes no adapter (serve the adapted model)")
            _check(any(s in ADAPTER_STRATEGIES for s in exp.strategies), where,
                   "'adapter' is used by the sft and sft+icl strategies only; add one of them or remove it")
            _check(Path(exp.adapter).expanduser().is_dir(), where, f"adapter folder {exp.adapter} does not exist")
    _options(where, "sft", exp.sft, SFT_KEYS | {f.name for f in fields(Recipe)}, "fine-tuning")
    _options(where, "probe_options", exp.probe_options,
             frozenset().union(*(BASELINES[b].options for b in exp.baselines)), f"baselines {exp.baselines}")
    _options(where, "selector_options", exp.selector_options,
             frozenset().union(*(SELECTORS[s] for s in exp.selectors)), f"selectors {exp.selectors}")
    return exp


def parse_config(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    _check(isinstance(data, dict), source, "the config must be a YAML mapping")
    known = {f.name for f in fields(RunConfig)} - {"source", "skipped"}
    unknown = set(data) - known
    _check(not unknown, source, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    _check("name" in data and "dataset" in data, source, "needs 'name' and 'dataset'")
    _check("experiments" in data and data["experiments"], source, "needs a non-empty 'experiments' list")
    _check(data.get("decoding", "greedy") in DECODING_PRESETS, source,
           f"decoding must be one of {list(DECODING_PRESETS)}")
    exps = [_parse_experiment(e, f"{source}: experiments[{i}]") for i, e in enumerate(_list(data["experiments"]))]
    skipped = [(e.label, f"needs {', '.join(v for v in e.requires_env if not os.environ.get(v))}")
               for e in exps if any(not os.environ.get(v) for v in e.requires_env)]
    exps = [e for e in exps if all(os.environ.get(v) for v in e.requires_env)]
    _check(bool(exps), source, f"every experiment needs an unset environment variable: {skipped}")
    cfg = RunConfig(**{**{k: v for k, v in data.items() if k != "experiments"}, "experiments": exps,
                       "source": source, "skipped": skipped})
    cfg.seeds = _list(cfg.seeds)
    cfg.train_sizes = _list(cfg.train_sizes)
    _check(all(isinstance(s, int) and not isinstance(s, bool) for s in cfg.seeds), source,
           f"seeds must be integers, got {cfg.seeds}")
    for n in cfg.train_sizes:
        _check(n == "all" or _positive_int(n), source, f"train size {n!r} must be 'all' or a positive int")
    _check(cfg.limit is None or _positive_int(cfg.limit), source, f"limit must be a positive integer, got {cfg.limit!r}")
    _check(cfg.max_new_tokens is None or _positive_int(cfg.max_new_tokens), source,
           f"max_new_tokens must be a positive integer, got {cfg.max_new_tokens!r}")
    _check(_positive_int(cfg.batch_size), source, f"batch_size must be a positive integer, got {cfg.batch_size!r}")
    return cfg


def load_config(path: str | Path | None) -> RunConfig:
    """A YAML file, or the name of a shipped config ('default', 'paper', 'gpt4o', ...)."""
    if path is None:
        path = "default"
    p = Path(path)
    if not p.is_file():
        shipped = CONFIG_DIR / f"{path}.yaml"
        if not shipped.is_file():
            names = ", ".join(x.stem for x in sorted(CONFIG_DIR.glob("*.yaml")))
            raise ConfigError(f"{path}: no such config file (shipped configs: {names})")
        p = shipped
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e.reason})") from None
    return parse_config(data, str(p))
