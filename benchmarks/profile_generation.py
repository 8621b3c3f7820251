"""Where one `ptychobench run` of the generation benchmark spends its time (issue 28).

Runs the CLI in this process on ``benchmarks/generation.yaml`` (smollm2-135m, float32,
sim-v1's 44 parameter test prompts, zero-shot, greedy, 32 new tokens, batch 8, payoff off)
with timers wrapped around the functions of each phase, then prints seconds per phase.
Each second is counted once: a phase nested in another (the tokenizer inside model
loading, a forward pass inside generate) is taken out of the outer one. Prefill is every
forward pass over more than one new token, decode every pass over one; "generate loop"
is what ``generate()`` spends outside the model (logits processing, stop strings, cache
copies).

    PTYCHOBENCH_HOME=/tmp/x HF_HUB_OFFLINE=1 python benchmarks/profile_generation.py --out /tmp/prof

``--cpu`` counts CPU seconds of this process (``time.process_time``) instead of wall
seconds: on a shared machine, with ``OMP_NUM_THREADS=1``, the steadier measure.

A first run also converts the GGUF (counted in "model load"); run twice for the steady state.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
START = time.perf_counter()
#: the clock of every phase: wall seconds, or CPU seconds with --cpu
_clock: Callable[[], float] = time.perf_counter
_totals: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_stack: list[list[Any]] = []  # [phase, start, seconds of nested phases]


def _timed(phase: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        name = phase(*args, **kwargs) if callable(phase) else phase
        frame = [name, _clock(), 0.0]
        _stack.append(frame)
        try:
            return fn(*args, **kwargs)
        finally:
            _stack.pop()
            spent = _clock() - frame[1]
            _totals[name] += spent - frame[2]
            _calls[name] += 1
            if _stack:
                _stack[-1][2] += spent

    return wrapper


def _patch(owner: Any, attr: str, phase: str | Callable[..., str]) -> None:
    setattr(owner, attr, _timed(phase, getattr(owner, attr)))


def _forward_phase(*args: Any, **kwargs: Any) -> str:
    ids = kwargs.get("input_ids")
    if ids is None and len(args) > 1:
        ids = args[1]
    return "prefill" if ids is not None and ids.shape[-1] > 1 else "decode"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(HERE / "generation.yaml"))
    ap.add_argument("--out", required=True, help="run folder (emptied first)")
    ap.add_argument("--json", help="also write the phases here")
    ap.add_argument("--cpu", action="store_true", help="CPU seconds of this process, not wall seconds")
    args = ap.parse_args()
    global _clock
    start = 0.0
    if args.cpu:
        _clock = time.process_time
    else:
        start = START
    shutil.rmtree(args.out, ignore_errors=True)

    t = _clock()
    import matplotlib.pyplot  # noqa: F401 - the report's import, counted here
    import torch
    import transformers.models.llama.modeling_llama as llama
    from transformers import PreTrainedTokenizerBase
    from transformers.generation.utils import GenerationMixin

    import ptychobench.cli as cli
    import ptychobench.data
    import ptychobench.models
    import ptychobench.models.cpu
    import ptychobench.report
    import ptychobench.run.runner as runner
    from ptychobench.eval.store import PredictionStore
    from ptychobench.models.hf import HFBackend
    from ptychobench.tasks import Task

    _totals["imports"] = _clock() - t

    _patch(runner, "load_dataset", "dataset")
    _patch(ptychobench.models, "load_backend", "model load")
    _patch(ptychobench.models.cpu, "cpu_threads", "thread choice")
    for attr in ("_render", "_encode", "_prefix_inputs"):
        if hasattr(HFBackend, attr):
            _patch(HFBackend, attr, "tokenization")
    for attr in ("__call__", "decode", "batch_decode", "apply_chat_template"):
        _patch(PreTrainedTokenizerBase, attr, "tokenization")
    _patch(llama.LlamaForCausalLM, "forward", _forward_phase)
    _patch(GenerationMixin, "generate", "generate loop")
    _patch(Task, "parse", "parse")
    _patch(PredictionStore, "append", "store")
    _patch(ptychobench.report, "write_report", "report")

    t = _clock()
    try:
        cli.app(["run", args.config, "--out", args.out], standalone_mode=False)
    except SystemExit:
        pass
    run_wall = _clock() - t
    counted = sum(v for k, v in _totals.items() if k != "imports")
    _totals["other (runner, scoring, CLI)"] = run_wall - counted
    total = _clock() - start
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"\nCPU capability {capability}, torch threads at exit {torch.get_num_threads()}")
    print(f"{'phase':32s} {'seconds':>8s} {'calls':>6s}")
    for name, secs in sorted(_totals.items(), key=lambda kv: -kv[1]):
        print(f"{name:32s} {secs:8.2f} {_calls.get(name, 1):6d}")
    print(f"{'total (this process)':32s} {total:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"phases": _totals, "calls": _calls, "total": total}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
