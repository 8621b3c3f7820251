"""The cost of tiny-vlm's word-alignment stage (issue 27) on this CPU: the encoder features
of sim-v2's 312 train images, then the whole stage (300 projector steps; the features are
cached by then). Prefix with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` to emulate an
AVX2-only CPU.

    PYTHONPATH=src python benchmarks/bench_word_align.py
"""

from __future__ import annotations

import time

import torch

from ptychobench.data import load_dataset
from ptychobench.models import load_for_training
from ptychobench.strategies.sft import recipe_for
from ptychobench.strategies.sft.align import align_projector_to_words
from ptychobench.tasks import ARTIFACT_LABELS


def main() -> None:
    model, processor = load_for_training("tiny-vlm")
    train = sorted(load_dataset("sim-v2").samples("artifacts", "train"), key=lambda s: s.id)
    t0 = time.perf_counter()
    with torch.no_grad():
        model.model.grid_features(torch.stack([processor.preprocess_image(s.image) for s in train]))
    t1 = time.perf_counter()
    align_projector_to_words(model, processor, train, ARTIFACT_LABELS, recipe_for("lowdata", True))
    t2 = time.perf_counter()
    cpu = torch.backends.cpu.get_cpu_capability()
    print(f"CPU {cpu}, {torch.get_num_threads()} threads: features {t1 - t0:.1f} s, stage {t2 - t1:.1f} s")


if __name__ == "__main__":
    main()
