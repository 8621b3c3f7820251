"""A run's config: the YAML schema, and every value checked when the config is parsed.

Nothing runs before the whole config is known to be usable: names come from
:mod:`ptychobench.names` and the model catalog, nested options (``backend_options``,
``sft``, ``probe_options``, ``selector_options``) are checked against what their component
takes, and each mistake is one :class:`~ptychobench.errors.ConfigError` naming the file,
the experiment and the key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..data.dataset import SPLIT_NAME
from ..errors import ConfigError, ModelError
from ..models.base import DECODING_PRESETS, GenerationConfig
from ..models.catalog import BACKEND_OPTIONS, resolve_model
from ..names import (
    ADAPTER_STRATEGIES,
    BASELINES,
    DEMO_STRATEGIES,
    SELECTORS,
    STRATEGIES,
    canonical_selector,
)
from ..safeio import read_yaml
from ..secrets import remember, remember_env, remember_url
from ..strategies.sft.recipe import Recipe, coerce_option, recipe_for
from ..tasks import PARSE_MODES, PROMPT_MODES, TASKS
from . import options as option_values
from .options import check_values

CONFIG_DIR = Path(__file__).parent.parent / "configs"
#: ``sft:`` keys besides the Recipe's fields (they go to ``train_adapter``)
SFT_KEYS = frozenset({"profile", "demo_selector", "k", "selector_options"})
MAX_K = 32


def sft_recipe(sft: dict[str, Any], vision: bool, auto: str | None = None) -> Recipe:
    """The recipe an experiment's ``sft:`` block trains with (its profile, default ``cpu``, and
    the Recipe fields it overrides). ``auto``: the profile to read ``profile: auto`` as (the
    planner assumes ``gpu``); None resolves it on this machine, as training does."""
    profile = sft.get("profile", "cpu")
    if auto and profile == "auto":
        profile = auto
    return recipe_for(profile, vision=vision, **{k: v for k, v in sft.items() if k not in SFT_KEYS})


#: seeds go to numpy and torch, which take 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1


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
    #: what the machine must offer (``REQUIREMENTS``); elsewhere the experiment is left out and
    #: the run says so: a config can be smaller where it would be slow, never different per cell
    requires: list[str] = field(default_factory=list)

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
    #: the split every cell is evaluated on: ``test``, or a further test split such as
    #: ``test-ood`` (a held-out instrument); demonstrations and fine-tuning use train always
    split: str = "test"
    #: a cell whose errors + unparseable replies pass this share is failed (never starred; run exits 1)
    max_failure_rate: float = 0.2
    #: issue 12: on a simulated dataset, score params cells by reconstructing their advice
    payoff: bool = True
    payoff_seeds: int = 3
    payoff_workers: int = 1
    source: str = ""
    #: experiments left out because an environment variable they need is unset: (label, why)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: the mapping as read from the file (the run folder keeps a copy, secrets removed)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        exps = ", ".join(e.label for e in self.experiments)
        return (
            f"RunConfig({self.name!r}, dataset={self.dataset!r}, experiments=[{exps}], seeds={self.seeds}, "
            f"train_sizes={self.train_sizes}, decoding={self.decoding!r}, limit={self.limit}"
            + (f", split={self.split!r})" if self.split != "test" else ")")
        )

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


#: OpenAI model names known to take text only (others, and local servers, are checked when run)
_OPENAI_TEXT_ONLY = ("gpt-3.5", "gpt-4-0613", "gpt-4-32k", "o1-mini", "o3-mini", "text-", "davinci", "babbage")


def _hf_config(target: str) -> dict[str, Any] | None:
    """A hub model's config.json from a local folder or the local hub cache (no network)."""
    folder = Path(target).expanduser()
    path: Path | None = folder / "config.json" if folder.is_dir() else None
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(target, "config.json")
            path = Path(cached) if isinstance(cached, str) else None
        except Exception:  # noqa: BLE001 - a malformed id: the loader says so later
            path = None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def takes_images(model: str, backend: str, modality: str | None) -> bool | None:
    """Whether a model can read images, where that is known without loading it (None: unknown)."""
    if modality is not None:
        return modality == "vision"
    target = model.partition(":")[2]
    if backend == "llamacpp":
        return False  # the llama.cpp backend sends text messages only
    if backend == "openai":
        return False if target.lower().startswith(_OPENAI_TEXT_ONLY) else None
    if backend == "hf":
        conf = _hf_config(target)
        if conf is None:
            return None
        if "vision_config" in conf:
            return True
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        return conf.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    return None


def _looks_like_path(target: str) -> bool:
    return target.startswith(("/", "./", "../", "~")) or target.count("/") > 1


def _parse_experiment(e: Any, where: str) -> Experiment:
    _check(isinstance(e, dict), where, "must be a mapping")
    efields = {f.name for f in fields(Experiment)}
    bad = set(e) - efields
    _check(not bad, where, f"unknown key(s) {sorted(bad)}; allowed: {sorted(efields)}")
    _check(isinstance(e.get("task"), str) and e.get("task") in TASKS, where, f"task must be one of {list(TASKS)}")
    for key in ("model", "name", "adapter"):
        _check(e.get(key) is None or isinstance(e[key], str), where, f"{key} must be a string")
    e = dict(e)
    for key in ("strategies", "selectors", "k", "baselines", "requires_env", "requires"):
        if key in e:
            e[key] = _list(e[key])
    for key in ("selectors", "k"):
        _check(e.get(key, [None]) != [], where, f"{key} is empty; give at least one value or leave the key out")
    exp = Experiment(**e)
    _check(exp.prompt in PROMPT_MODES, where, f"prompt must be one of {list(PROMPT_MODES)}, got {exp.prompt!r}")
    _check(exp.parse in PARSE_MODES, where, f"parse must be one of {list(PARSE_MODES)}, got {exp.parse!r}")
    _check(
        all(isinstance(v, str) and v for v in exp.requires_env),
        where,
        "requires_env must be a list of environment variable names",
    )
    _check(
        all(v in REQUIREMENTS for v in exp.requires),
        where,
        f"requires: choose from {sorted(REQUIREMENTS)}, got {exp.requires!r}",
    )
    remember_env(exp.requires_env)
    modality = TASKS[exp.task].modality
    if exp.model:
        _check(
            bool(exp.strategies) or bool(exp.baselines),
            where,
            f"strategies is empty; give one of {list(STRATEGIES)} (or baselines)",
        )
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
        _check(
            need in ("any", modality), where, f"baseline {b!r} reads {need} input; the {exp.task} task gives {modality}"
        )
    _check(
        all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= MAX_K for k in exp.k),
        where,
        f"k must be integers in 0..{MAX_K}",
    )
    if any(s in DEMO_STRATEGIES for s in exp.strategies):
        _check(any(k > 0 for k in exp.k), where, "icl strategies need a k > 0")
    _check(exp.batch_size is None or _positive_int(exp.batch_size), where, "batch_size must be a positive integer")
    if exp.model:
        try:
            spec = resolve_model(exp.model)
        except ModelError as err:
            raise ConfigError(f"{where}: {err}") from None
        if spec.backend == "hf" and ":" in exp.model:
            target = exp.model.partition(":")[2]
            _check(
                not _looks_like_path(target) or Path(target).expanduser().is_dir(),
                where,
                f"model folder {target} does not exist",
            )
        if modality == "image":
            _check(
                takes_images(exp.model, spec.backend, spec.modality) is not False,
                where,
                f"model {exp.model!r} takes text only; the {exp.task} task needs a vision-language model",
            )
        _options(where, "backend_options", exp.backend_options, BACKEND_OPTIONS[spec.backend], exp.model)
        remember(exp.backend_options.get("api_key"))
        remember_url(exp.backend_options.get("base_url"))
        check_values(where, "backend_options", exp.backend_options, option_values.BACKEND)
        if exp.adapter is not None:
            _check(spec.takes_adapter, where, f"model {exp.model!r} takes no adapter (serve the adapted model)")
            _check(
                any(s in ADAPTER_STRATEGIES for s in exp.strategies),
                where,
                "'adapter' is used by the sft and sft+icl strategies only; add one of them or remove it",
            )
            _check(Path(exp.adapter).expanduser().is_dir(), where, f"adapter folder {exp.adapter} does not exist")
            _check(
                (Path(exp.adapter).expanduser() / "adapter_config.json").is_file(),
                where,
                f"adapter folder {exp.adapter} has no adapter_config.json; is it a LoRA adapter saved by "
                "ptychobench train (peft save_pretrained)?",
            )
    _options(where, "sft", exp.sft, SFT_KEYS | {f.name for f in fields(Recipe)}, "fine-tuning")
    try:
        exp.sft = {k: coerce_option(k, v) for k, v in exp.sft.items()}
    except ConfigError as e:
        raise ConfigError(f"{where}: sft: {e}") from None
    check_values(where, "sft", exp.sft, option_values.SFT)
    _options(
        where,
        "probe_options",
        exp.probe_options,
        frozenset().union(*(BASELINES[b].options for b in exp.baselines)),
        f"baselines {exp.baselines}",
    )
    check_values(where, "probe_options", exp.probe_options, option_values.PROBE)
    _options(
        where,
        "selector_options",
        exp.selector_options,
        frozenset().union(*(SELECTORS[s] for s in exp.selectors)),
        f"selectors {exp.selectors}",
    )
    check_values(where, "selector_options", exp.selector_options, option_values.SELECTOR)
    return exp


#: ``requires`` names: what each means, and how it is checked on this machine
REQUIREMENTS = {
    "bf16": "local models run in a 16-bit format here: a GPU, or a CPU where dtype auto measures bf16 faster",
}


def _has(requirement: str) -> bool:
    if requirement == "bf16":
        from ..models.hf import pick_device
        from ..models.precision import auto_dtype

        return str(auto_dtype(pick_device("auto"))) != "torch.float32"
    return False


def _unmet(e: Experiment) -> str:
    """Why ``e`` is left out on this machine ('' when it runs): an unset environment
    variable it needs, or a ``requires`` the machine does not meet."""
    unset = [v for v in e.requires_env if not os.environ.get(v)]
    if unset:
        return f"needs {', '.join(unset)}"
    unmet = [r for r in e.requires if not _has(r)]
    if unmet:
        from ..models.precision import describe_choice

        return f"needs {', '.join(unmet)} ({'; '.join(REQUIREMENTS[r] for r in unmet)}); {describe_choice()}"
    return ""


def parse_config(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    try:
        return _parse_config(data, source)
    except (TypeError, AttributeError) as e:  # a list or mapping where a name belongs, and the like
        raise ConfigError(f"{source}: a value has the wrong type ({e}); see the config reference") from None


def _parse_config(data: dict[str, Any], source: str) -> RunConfig:
    _check(isinstance(data, dict), source, "the config must be a YAML mapping")
    known = {f.name for f in fields(RunConfig)} - {"source", "raw", "skipped"}
    unknown = set(data) - known
    _check(not unknown, source, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    _check("name" in data and "dataset" in data, source, "needs 'name' and 'dataset'")
    for key in ("name", "dataset"):
        _check(isinstance(data[key], str) and data[key].strip() != "", source, f"{key} must be a non-empty string")
    _check(isinstance(data.get("decoding", "greedy"), str), source, "decoding must be a name")
    _check(
        "/" not in data["name"] and "\\" not in data["name"] and not data["name"].startswith("."),
        source,
        f"name {data['name']!r} must be a plain name (it names the default run folder runs/<name>)",
    )
    _check("experiments" in data and data["experiments"], source, "needs a non-empty 'experiments' list")
    _check(
        data.get("decoding", "greedy") in DECODING_PRESETS, source, f"decoding must be one of {list(DECODING_PRESETS)}"
    )
    exps = [_parse_experiment(e, f"{source}: experiments[{i}]") for i, e in enumerate(_list(data["experiments"]))]
    skipped = [(e.label, why) for e in exps if (why := _unmet(e))]
    exps = [e for e in exps if not _unmet(e)]
    _check(bool(exps), source, f"every experiment is left out on this machine: {skipped}")
    cfg = RunConfig(
        **{
            **{k: v for k, v in data.items() if k != "experiments"},
            "experiments": exps,
            "source": source,
            "skipped": skipped,
            "raw": data,
        }
    )
    cfg.seeds = _list(cfg.seeds)
    cfg.train_sizes = _list(cfg.train_sizes)
    _check(
        bool(cfg.seeds)
        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in cfg.seeds),
        source,
        f"seeds must be integers in 0..{MAX_SEED}, at least one, got {cfg.seeds}",
    )
    _check(bool(cfg.train_sizes), source, "train_sizes is empty; give at least one size or leave the key out")
    for n in cfg.train_sizes:
        _check(n == "all" or _positive_int(n), source, f"train size {n!r} must be 'all' or a positive int")
    _check(
        cfg.limit is None or _positive_int(cfg.limit), source, f"limit must be a positive integer, got {cfg.limit!r}"
    )
    _check(
        cfg.max_new_tokens is None or _positive_int(cfg.max_new_tokens),
        source,
        f"max_new_tokens must be a positive integer, got {cfg.max_new_tokens!r}",
    )
    _check(
        isinstance(cfg.split, str) and SPLIT_NAME.match(cfg.split) is not None and cfg.split != "train",
        source,
        f"split must be test or a further test split test-<word> (e.g. test-ood), got {cfg.split!r}; "
        "train is what demonstrations and fine-tuning use, never scored",
    )
    _check(_positive_int(cfg.batch_size), source, f"batch_size must be a positive integer, got {cfg.batch_size!r}")
    rate = cfg.max_failure_rate
    _check(
        isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate <= 1,
        source,
        f"max_failure_rate must be a number in 0..1, got {rate!r}",
    )
    _check(isinstance(cfg.payoff, bool), source, f"payoff must be true or false, got {cfg.payoff!r}")
    for key in ("payoff_seeds", "payoff_workers"):
        _check(_positive_int(getattr(cfg, key)), source, f"{key} must be a positive integer, got {getattr(cfg, key)!r}")
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
    return parse_config(read_yaml(p, ConfigError, "config file"), str(p))
