"""diagnose's own texts of a simulated dataset's params experiments.

Each experiment is reconstructed with its current parameters (seed 0, as the dataset did)
and diagnosed as a user's run would be: the field a user would look at
(``sim.pipeline.field``) and the run's facts (parameters, loss curve, scan, counts, centre
of mass; never the truth or the dataset's labels; ``--scan-step`` on raster scans). The
text the advisor reads (``diagnose.advice.advice_text``: the detector's labels after the
measurements, and the measurement line) is written one JSON line per experiment.

The train split's texts are shipped (``src/ptychobench/diagnose/advisor_texts/``): the
text probe is fitted on them, so it reads at use the kind of text it was fitted on. A
rerun resumes: experiments already in ``--out`` are skipped.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diagnose_texts.py --dataset sim-v2 --split train \\
        --out src/ptychobench/diagnose/advisor_texts/sim-v2-train.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def run_facts(exp: Any, acq: Any, loss: list[float] | None = None) -> Any:
    """The run's facts a user would give ``--params``: parameters, instrument, scan, counts,
    centre of mass, loss curve (never the truth or the dataset's labels)."""
    from ptychobench.diagnose.advice import CurrentParams
    from ptychobench.sim.defects import centre_of_mass_offset, instrument_for

    inst = instrument_for(exp)
    com = centre_of_mass_offset(acq.patterns)
    extras = {
        "sample_type": exp.sample_type,
        "instrument": f"{inst.beam}, {inst.energy_kev:g} keV",
        "scan": f"{'raster grid' if exp.scan == 'raster' else 'Fermat spiral'}, {len(acq.positions)} points",
        "n_positions": len(acq.positions),
        "detector_px": inst.detector_px,
        "com_offset_px": [float(com[0]), float(com[1])],
        "mean_counts": float(acq.patterns.sum((1, 2)).mean()),
    }
    if loss is not None:
        extras["loss"] = [float(v) for v in loss]
    return CurrentParams(exp.params.to_dict(), extras)


def diagnose_experiment(exp: Any) -> tuple[Any, Any, str]:
    """(Diagnosis without advice, the run's CurrentParams, the text the advisor reads) for
    one simulated experiment, from its current reconstruction only."""
    from ptychobench.diagnose.advice import advice_text
    from ptychobench.diagnose.api import diagnose_many
    from ptychobench.loop.cache import acquisition
    from ptychobench.sim.defects import instrument_for
    from ptychobench.sim.pipeline import field, run_recon

    acq = acquisition(exp)
    r = run_recon(exp, acq, exp.params, seed_index=0)
    obj = field(r["result"].obj, exp, r["factor"])
    cur = run_facts(exp, acq, r["loss"])
    step = instrument_for(exp).step_px if exp.scan == "raster" else None
    d = diagnose_many([obj], params=cur, scan_step=step, advisor=None)[0]
    return d, cur, advice_text(d.name, d.labels, d.measurements, cur)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="sim-v2")
    ap.add_argument("--split", default="train")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()

    from ptychobench.data import load_dataset
    from ptychobench.loop.payoff import dataset_scale, experiment_of

    ds = load_dataset(args.dataset)
    scale = dataset_scale(ds)
    samples = ds.samples("params", args.split)[: args.limit]
    done = set()
    if args.out.is_file():
        done = {json.loads(x)["id"] for x in args.out.read_text().splitlines() if x.strip()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for i, s in enumerate(samples):
        exp = experiment_of(s, scale)
        if exp is None or s.id in done:
            continue
        d, _, text = diagnose_experiment(exp)
        with args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"id": s.id, "text": text}) + "\n")
        print(f"{i + 1}/{len(samples)} {s.id}: {d.labels} warnings {len(d.warnings)} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
