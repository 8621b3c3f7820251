"""``ptychobench reconstruct``: a measured CXI scan through pty-chi, and the truth-free
payoff of parameter advice on it (the work is in :mod:`ptychobench.realdata`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import DatasetError
from .app import command, console


@command("reconstruct")
def reconstruct(
    data: Annotated[str, typer.Argument(help="A CXI file, or 'p25' for the shipped PETRA III P25 near-field scan.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for object.h5, half1/2.h5, params.yaml.")] = Path("recon"),
    near_field: Annotated[
        bool | None,
        typer.Option("--near-field/--far-field", help="Geometry (default: the file's entry_1 attribute, else far)."),
    ] = None,
    focus_to_sample: Annotated[
        float | None,
        typer.Option("--focus-to-sample", help="Near field, divergent beam: focus-to-sample distance in metres."),
    ] = None,
    params: Annotated[
        Path | None, typer.Option("--params", help="Parameters (YAML/JSON of ReconParams fields, as diagnose reads).")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="LSQML epochs (overrides --params).")] = None,
    probe_modes: Annotated[int | None, typer.Option("--probe-modes", help="Incoherent probe modes.")] = None,
    halves: Annotated[bool, typer.Option("--halves/--no-halves", help="Also reconstruct two half scans (FRC).")] = True,
    apply: Annotated[
        str | None,
        typer.Option("--apply", help="Advice letters (e.g. 'J,K'): reconstruct with and without them and compare."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Reconstruct a measured ptychography scan (CXI) with pty-chi LSQML, near field included.

    Example: ptychobench reconstruct p25 --epochs 20 --out runs/p25/current, then
    ptychobench diagnose runs/p25/current/object.h5 --params runs/p25/current/params.yaml,
    ptychobench diagnose runs/p25/current/half1.h5 --half runs/p25/current/half2.h5 --near-field,
    and ptychobench reconstruct p25 --epochs 20 --apply K --out runs/p25 (the advice's payoff).
    """
    from .. import realdata
    from ..sim.recon import ReconParams

    base = realdata.P25_PARAMS if data == "p25" else ReconParams()
    if params is not None:
        from ..diagnose.advice import load_params

        base = ReconParams(**load_params(params).params)
    if epochs is not None:
        if epochs < 1:
            raise DatasetError(f"--epochs {epochs}: expected at least 1")
        base = base.with_(n_epochs=epochs)
    if probe_modes is not None:
        if not 1 <= probe_modes <= 8:
            raise DatasetError(f"--probe-modes {probe_modes}: expected 1 to 8")
        base = base.with_(n_probe_modes=probe_modes)
    say = console.print
    if apply:
        letters = [x.strip().upper() for x in apply.split(",") if x.strip()]
        from ..tasks import PARAM_OPTIONS

        bad = [x for x in letters if x not in PARAM_OPTIONS]
        if bad:
            raise DatasetError(f"--apply {apply}: unknown option letter(s) {bad}; expected letters A to X")
        res = realdata.advice_payoff(
            data, out, base, letters, near_field=near_field, focus_to_sample_m=focus_to_sample, seed=seed, progress=say
        )
        typer.echo(json.dumps(res, indent=1))
        return
    summary = realdata.run(
        data,
        out,
        base,
        near_field=near_field,
        focus_to_sample_m=focus_to_sample,
        with_halves=halves,
        seed=seed,
        progress=say,
    )
    typer.echo(json.dumps(summary, indent=1))
