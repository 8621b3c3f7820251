"""The inference settings behind the embedded default (issue 12's time target), timed on
sim-v2's test split: dtype, batch size and attention kernel of the two offline models.

Each line: model, settings, seconds for N greedy replies (max 40 new tokens), and the first
reply, so a setting that changes the answers shows it. Run on an idle machine:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_default_choices.py --n 16
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from ptychobench.data import load_dataset, resolve_dataset
from ptychobench.models import load_backend
from ptychobench.models.base import GREEDY
from ptychobench.tasks import get_task

#: (task, model, options) in the order they are timed
SETTINGS = [
    ("params", "smollm2-135m", {"dtype": "bfloat16", "batch_size": 8}),
    ("params", "smollm2-135m", {"dtype": "float32", "batch_size": 8}),
    ("params", "smollm2-135m", {"dtype": "bfloat16", "batch_size": 16}),
    ("params", "smollm2-135m", {"dtype": "bfloat16", "batch_size": 8, "attn_implementation": "eager"}),
    ("artifacts", "tiny-vlm", {"dtype": "bfloat16", "batch_size": 8}),
    ("artifacts", "tiny-vlm", {"dtype": "float32", "batch_size": 8}),
    ("artifacts", "tiny-vlm", {"dtype": "bfloat16", "batch_size": 16}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16, help="test samples per setting")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    args = ap.parse_args()
    ds = load_dataset(resolve_dataset("sim-v2"))
    config = dataclasses.replace(GREEDY, max_new_tokens=args.max_new_tokens)
    for task_name, model, options in SETTINGS:
        task = get_task(task_name)
        convs = [task.render(s) for s in ds.samples(task_name, "test")[: args.n]]
        backend = load_backend(model, **options)
        start = time.perf_counter()
        out = backend.generate(convs, config)
        seconds = time.perf_counter() - start
        print(f"{model:13s} {options}: {seconds:5.1f} s for {len(convs)}; first reply {out[0].text[:60]!r}")


if __name__ == "__main__":
    main()
