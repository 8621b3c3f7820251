"""What makes a cell's predictions what they are, hashed, so a rerun never reuses
predictions made under other settings; and the run's config as kept on disk, secrets out.

A cell's name (``Cell.config``) says where it sits in the grid; its settings hash says how
its predictions were made: the model (name, revision and every option that changes a
reply: dtype, device, kind, quantization, server URL), the adapter (its folder's content
or the fine-tuning settings that make it), the decoding, the task's prompt, the demo
selector with its options and k, the seed, the training-set size, the dataset's
content hash and the evaluated split (``split:``, when not ``test``). Each record
stores the hash; the store reuses a record only under the same hash, so changing
``max_new_tokens`` or ``dtype`` and rerunning into the same folder computes the changed cells anew.

Options that change how fast or how robustly a reply comes but not the reply (retries,
timeouts, concurrency, threads, batch size, memory limits) and secrets (API keys) are not
part of the hash: changing them does not redo work, and no key is ever written down.

The hash is computed from the config without loading a model, so a rerun knows what is
done before it loads anything; the loaded backend's full fingerprint is still recorded in
each record's ``components``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from ..models.openai_api import scrub_secrets
from ..names import BASELINES
from ..strategies.sft.recipe import recipe_settings
from ..tasks import get_task
from .config import Experiment, RunConfig, sft_recipe
from .grid import Cell

#: backend options that change speed or robustness, not replies
OPERATIONAL_OPTIONS = frozenset(
    {
        "concurrency",
        "max_retries",
        "backoff_s",
        "max_backoff_s",
        "timeout_s",
        "n_threads",
        "n_batch",
        "batch_size",
        "low_cpu_mem_usage",
        "max_memory",
        "prefix_cache",
        "packed_weights",
    }
)
#: backend options that are secrets: never hashed, never written
SECRET_OPTIONS = frozenset({"api_key"})


def short_hash(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _adapter_content(path: str) -> str | None:
    """A user-given adapter folder's content hash (configs in full, weights by size), so a
    retrained adapter at the same path is a new setting."""
    from ..models.hf import dir_fingerprint  # light: transformers is imported only on use

    p = Path(path).expanduser()
    return dir_fingerprint(p) if p.is_dir() else None


def cell_settings(cfg: RunConfig, cell: Cell, exp: Experiment, dataset_hash: str | None) -> dict[str, Any]:
    """Every setting that changes this cell's predictions (see module doc)."""
    s: dict[str, Any] = {
        "task": cell.task,
        "strategy": cell.strategy,
        "seed": cell.seed,
        "train_size": cell.train_size,
        "dataset": dataset_hash,
    }
    if cfg.split != "test":  # the evaluated split (the default keeps earlier hashes)
        s["split"] = cfg.split
    if cell.strategy in BASELINES:
        s["probe"] = {"name": cell.strategy, "options": exp.probe_options}
        return s
    opts = {k: v for k, v in exp.backend_options.items() if k not in OPERATIONAL_OPTIONS | SECRET_OPTIONS}
    if "base_url" in opts:
        opts["base_url"] = scrub_secrets(str(opts["base_url"]))
    s["model"] = {"name": exp.model, "options": opts}
    s["decoding"] = cfg.generation().as_dict()
    s["prompt"] = short_hash(get_task(cell.task).system_prompt())
    if cell.uses_adapter:
        s["adapter"] = (
            {"path": str(Path(exp.adapter).expanduser()), "content": _adapter_content(exp.adapter)}
            if exp.adapter
            # the recipe the sft block resolves to: a profile whose stages change in the code
            # trains another adapter, so the cells it answers are new settings too
            else {
                "sft": exp.sft,
                "recipe": recipe_settings(sft_recipe(exp.sft, get_task(cell.task).modality == "image")),
            }
        )
    if cell.k > 0:
        s["selector"] = {"name": cell.selector, "options": exp.selector_options, "k": cell.k}
        if not cell.uses_adapter and spans_demo_pools(cfg):
            # an earlier runner drew such a cell's demos from its model group's first cell's
            # subset: predictions stored by it are from another pool, so not reused
            s["selector"]["pool"] = "the cell's own training subset"
    return s


def spans_demo_pools(cfg: RunConfig) -> bool:
    """Whether a base model's cells can have different demo pools: more than one training
    size, or a subset (not "all") drawn for more than one seed."""
    return len(cfg.train_sizes) > 1 or (len(cfg.seeds) > 1 and any(n != "all" for n in cfg.train_sizes))


def settings_hash(cfg: RunConfig, cell: Cell, exp: Experiment, dataset_hash: str | None) -> str:
    return short_hash(cell_settings(cfg, cell, exp, dataset_hash))


def scrubbed_config(raw: dict[str, Any]) -> dict[str, Any]:
    """The config as the user wrote it, without API keys and with URL passwords masked."""
    data = copy.deepcopy(raw)
    for exp in data.get("experiments") or []:
        if isinstance(exp, dict) and isinstance(exp.get("backend_options"), dict):
            opts = exp["backend_options"]
            for key in SECRET_OPTIONS & set(opts):
                del opts[key]
            if "base_url" in opts:
                opts["base_url"] = scrub_secrets(str(opts["base_url"]))
    return data


def config_copy_text(cfg: RunConfig) -> str:
    return scrub_secrets(yaml.safe_dump(scrubbed_config(cfg.raw), sort_keys=False, allow_unicode=True))
