"""The main job: run (with --plan and shards) and submit (a scheduler array)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import command, console, fail


@command("run")
def run_command(
    config: Optional[str] = typer.Argument(
        None, help="YAML config file or shipped config name (default: the embedded default)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<config name>)."),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="i/n, auto (from the Slurm/PBS job array) or auto/N: "
        "run only this worker's share of the grid, balanced by estimated cost.",
    ),
    plan: bool = typer.Option(
        False,
        "--plan",
        help="Print which cells go to which shard and their estimated cost; "
        "run nothing (with --shard i/n or auto: the plan over n shards).",
    ),
    shards: int = typer.Option(0, "--shards", help="With --plan: plan over this many shards."),
    gpus_per_shard: int = typer.Option(
        0,
        "--gpus-per-shard",
        help="Shards sharing a node each take this many of "
        "its GPUs (by local rank or shard index); 0: as the scheduler set them.",
    ),
    report: bool = typer.Option(
        True, "--report/--no-report", help="Write the report when the run ends (not for shards)."
    ),
    allow_failures: bool = typer.Option(
        False,
        "--allow-failures",
        help="Exit 0 even when cells fail (errors + unparseable replies above max_failure_rate).",
    ),
) -> None:
    """Run a grid of experiments into a prediction store, then write the report.

    Without a config: the embedded default (shipped sim-v2, offline models, both tasks).
    Killed or interrupted, the same command picks up where it stopped.

    Example: ptychobench run                       # embedded default -> runs/default/report.html
    Example: ptychobench run paper --out runs/paper --shard 0/4
    Example: ptychobench run paper --plan --shards 4      # the plan only (docs/cluster.md)
    Example: ptychobench run paper --out runs/paper --shard auto   # in a Slurm/PBS job array
    """
    from ..run import Runner, load_config
    from ..run.scheduler import pin_devices, resolve_shard

    try:
        cfg = load_config(config)
        sh = resolve_shard(shard)
        if plan:
            _print_plan(cfg, shards or (sh[1] if sh else 1))
            return
        devices = pin_devices(sh, gpus_per_shard or None)
        if sh is not None:
            console.print(f"shard {sh[0]}/{sh[1]}" + (f", GPUs {','.join(devices)}" if devices else ""))
        run_dir = out or Path("runs") / cfg.name
        console.print(f"report: [bold]{(run_dir / 'report.html').resolve()}[/]")
        runner = Runner(cfg, run_dir, sh, console)
        summary = runner.run()
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/]: finished predictions are in the store; rerun the same command to continue"
        )
        raise typer.Exit(130)
    console.print(f"ran {summary['ran']} of {summary['cells']} cells in {summary['seconds']} s")
    if cfg.payoff and sh is None:  # issue 12: params advice scored by reconstruction (simulated data only)
        from .loop import compute_run_payoff

        compute_run_payoff(run_dir, cfg.dataset, cfg.payoff_seeds, cfg.payoff_workers)
    if report and sh is None:
        from ..report import write_report

        paths = write_report(run_dir)
        console.print(f"report: [bold]{paths['html'].resolve()}[/] (and {paths['md'].name})")
    elif sh is not None:
        console.print(f"shard {sh[0]}/{sh[1]} done; when all shards are done: ptychobench report {run_dir}")
    if summary.get("failed") and not allow_failures:
        fail(
            f"{len(summary['failed'])} cell(s) failed (errors + unparseable replies above max_failure_rate "
            f"{cfg.max_failure_rate:g}): {', '.join(summary['failed'][:3])}"
            f"{' ...' if len(summary['failed']) > 3 else ''}; see the store's 'error' fields, or pass "
            "--allow-failures",
            code=1,
        )


def _print_plan(cfg, n: int) -> None:
    from ..data import load_dataset
    from ..run.grid import check_shard_count
    from ..run.plan import cell_table, plan_run, plan_table

    check_shard_count(n, "--shards")
    p = plan_run(cfg, load_dataset(cfg.dataset, check_images=False), n)
    console.print(cell_table(p))
    console.print(plan_table(p, cfg, title=f"plan of {cfg.name}"))
    console.print(
        f"largest shard {max(s.cost for s in p.shards) / p.mean - 1:+.1%} of the mean, smallest "
        f"{min(s.cost for s in p.shards) / p.mean - 1:+.1%}; {p.loads} model loads "
        f"({len({c.group for s in p.shards for c in s.cells})} groups)"
    )


@command("submit")
def submit_command(
    config: str = typer.Argument(..., help="YAML config file or shipped config name."),
    shards: int = typer.Option(..., "--shards", help="Number of jobs; each runs one balanced shard."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<config name>)."),
    cluster: Optional[str] = typer.Option(
        None,
        "--cluster",
        help="slurm, local (jobs as processes here) or debug; default: slurm where sbatch is, else local.",
    ),
    partition: Optional[str] = typer.Option(None, "--partition", help="Slurm partition."),
    account: Optional[str] = typer.Option(None, "--account", help="Slurm account."),
    hours: float = typer.Option(24.0, "--hours", help="Wall-time limit of each job."),
    gpus_per_node: int = typer.Option(0, "--gpus-per-node", help="Cap on GPUs a job may ask for (0: no cap)."),
    wait: bool = typer.Option(
        True,
        "--wait/--no-wait",
        help="Wait for the jobs, then write the merged report "
        "(without: a report job runs after all shards succeed, on Slurm).",
    ),
) -> None:
    """Submit the grid as N jobs through submitit, each with its shard's model resources,
    and merge their stores into one report when all finish.

    Example: ptychobench submit paper --shards 4 --partition gpu --out runs/paper
    """
    from ..report import write_report
    from ..run import load_config
    from ..run.submit import submit

    cfg = load_config(config)
    run_dir = out or Path("runs") / cfg.name
    result = submit(
        cfg,
        run_dir,
        shards,
        cluster=cluster,
        partition=partition,
        account=account,
        hours=hours,
        gpus_per_node=gpus_per_node or None,
        wait=wait,
        report=write_report,
        console=console,
    )
    if result.get("report"):
        console.print(f"report: [bold]{Path(result['report']).resolve()}[/]")
