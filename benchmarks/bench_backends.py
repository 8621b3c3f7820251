"""Backend speed: the same parameter-recommendation prompts through

1. the HF backend one sample at a time (as the released scripts run),
2. the HF backend batched (left padding, length-sorted batches),
3. llama.cpp on the GGUF file,

all greedy, on the offline SmolLM2-135M-Instruct. Reports samples/s, prompt tokens/s
(from a separate prefill-only pass: one new token) and generated tokens/s (the rest of
the time), and checks that batched and one-at-a-time give the same replies and the same
parsed labels.

    .venv/bin/python benchmarks/bench_backends.py --n 16 --batch-size 16 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

from ptychobench.data import Sample
from ptychobench.models import GenerationConfig, load_backend
from ptychobench.tasks import PARAMS

SAMPLE_TYPES = [
    "integrated circuit",
    "NCM battery particle",
    "biological cell",
    "zeolite crystal",
    "gold nanoparticle cluster",
    "Siemens star test pattern",
]
SYMPTOMS = [
    "the reconstructed object shows periodic grid-like features matching the scan step",
    "the data error stalls after a few hundred iterations and the probe looks blurred",
    "the object phase has a strong linear ramp and the edges of features are smeared",
    "the reconstruction is noisy with low contrast and the probe modes look identical",
    "scan positions drift visibly and features appear doubled at the field-of-view edge",
    "the diffraction patterns are off-centre and the reconstruction shows no clear structure",
]


def make_samples(n: int) -> list[Sample]:
    """Parameter-recommendation questions as a user would write them (~60-90 tokens of
    description after the task's ~300-token system turn)."""
    out = []
    for i in range(n):
        st = SAMPLE_TYPES[i % len(SAMPLE_TYPES)]
        text = (
            f"Sample: {st}. Beamline 2-ID-D, photon energy {6 + i % 7}.{i % 10} keV, "
            f"{300 + 37 * i} scan positions on a Fermat spiral with {40 + i % 9} nm step, detector "
            f"{128 * (1 + i % 3)}x{128 * (1 + i % 3)} pixels. Current settings: LSQML, batch size {20 + i}, "
            f"{2 + i % 3} probe modes, OPR modes {i % 2}, position correction {'on' if i % 2 else 'off'}, "
            f"{100 * (1 + i % 4)} iterations. Observation: {SYMPTOMS[i % len(SYMPTOMS)]}."
        )
        out.append(Sample(f"bench{i:03d}", "test", "params", st, text, None, frozenset({"K"}), {}))
    return out


@dataclass
class Row:
    backend: str
    mode: str
    samples: int
    wall_s: float
    prefill_s: float
    prompt_tokens: int
    completion_tokens: int

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s

    @property
    def prompt_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s

    @property
    def gen_tok_s(self) -> float:
        return self.completion_tokens / max(self.wall_s - self.prefill_s, 1e-9)


def run(backend, convs, config: GenerationConfig, one_at_a_time: bool):
    def go(cfg):
        t0 = time.perf_counter()
        gens = [backend.generate([c], cfg)[0] for c in convs] if one_at_a_time else backend.generate(convs, cfg)
        return gens, time.perf_counter() - t0

    _, prefill = go(GenerationConfig(max_new_tokens=1))
    gens, wall = go(config)
    bad = [g.error for g in gens if not g.ok]
    if bad:
        sys.exit(f"generation failed: {bad[:3]}")
    return gens, wall, prefill


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="prompts")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--skip-llamacpp", action="store_true")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()

    convs = [PARAMS.render(s) for s in make_samples(args.n)]
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)
    rows: list[Row] = []
    texts: dict[str, list[str]] = {}

    hf = load_backend("smollm2-135m", batch_size=args.batch_size)
    hf.generate(convs[:1], GenerationConfig(max_new_tokens=2))  # warm-up (allocator, kernels)
    for mode, single in (("one at a time", True), (f"batched ({args.batch_size})", False)):
        gens, wall, prefill = run(hf, convs, config, single)
        texts[mode] = [g.text for g in gens]
        rows.append(
            Row(
                "hf (transformers, fp32)",
                mode,
                len(convs),
                wall,
                prefill,
                sum(g.prompt_tokens for g in gens),
                sum(g.completion_tokens for g in gens),
            )
        )
    del hf

    if not args.skip_llamacpp:
        lc = load_backend("smollm2-135m-gguf")
        lc.generate(convs[:1], GenerationConfig(max_new_tokens=2))
        gens, wall, prefill = run(lc, convs, config, True)
        texts["llama.cpp"] = [g.text for g in gens]
        rows.append(
            Row(
                "llama.cpp (Q4_1 GGUF)",
                "one at a time",
                len(convs),
                wall,
                prefill,
                sum(g.prompt_tokens for g in gens),
                sum(g.completion_tokens for g in gens),
            )
        )

    base = rows[0].samples_per_s
    print(
        f"\n{args.n} prompts (mean {rows[0].prompt_tokens / args.n:.0f} prompt tokens), greedy, "
        f"max_new_tokens={args.max_new_tokens}\n"
    )
    print("| backend | mode | samples/s | speed-up | prompt tok/s | generated tok/s | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.backend} | {r.mode} | {r.samples_per_s:.3f} | {r.samples_per_s / base:.1f}x | "
            f"{r.prompt_tok_s:.0f} | {r.gen_tok_s:.1f} | {r.wall_s:.1f} |"
        )
    single, batched = list(texts.values())[:2]
    same_text = sum(a == b for a, b in zip(single, batched))
    same_labels = sum(PARAMS.parse(a).labels == PARAMS.parse(b).labels for a, b in zip(single, batched))
    answered = sum(bool(PARAMS.parse(a).labels) for a in single)
    print(
        f"\nbatched vs one at a time: identical replies {same_text}/{args.n}, "
        f"identical parsed labels {same_labels}/{args.n} ({answered}/{args.n} replies name any option)"
    )
    if "llama.cpp" in texts:
        same_lc = sum(PARAMS.parse(a).labels == PARAMS.parse(b).labels for a, b in zip(single, texts["llama.cpp"]))
        print(
            f"llama.cpp vs transformers (different numerics: Q4_1 kernels vs de-quantized fp32): "
            f"identical parsed labels {same_lc}/{args.n}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "rows": [
                        asdict(r)
                        | {"samples_per_s": r.samples_per_s, "prompt_tok_s": r.prompt_tok_s, "gen_tok_s": r.gen_tok_s}
                        for r in rows
                    ],
                    "identical_replies": same_text,
                    "identical_labels": same_labels,
                },
                f,
                indent=2,
            )
    ok = rows[1].samples_per_s >= 3 * base and same_labels == args.n
    print("PASS" if ok else "FAIL", "(batched >= 3x one at a time, identical parsed labels)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
