"""``ptychobench submit``: the grid as N scheduler jobs through submitit, then one report.

Why submitit rather than a generated sbatch script: it submits a Python call, so each
job runs exactly the Runner a local ``run --shard i/n`` runs, sized by what its shard's
models need (:func:`ptychobench.run.plan.shard_resources`), and it hands back each job's
result or traceback. Its ``local`` executor runs the same jobs as processes on this
machine, which is how the tests exercise this path without a cluster.

Jobs are separate submissions, not one array: shards differ in what they ask for (a shard
holding the 90B model asks for three GPUs, a baseline shard for none), and an array's
tasks all ask for the same. Job logs go to ``RUN/jobs/``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, PtychoBenchError
from .config import RunConfig
from .grid import check_shard_count

#: the clusters submitit runs on (None: slurm where sbatch is, else local)
CLUSTERS = (None, "slurm", "local", "debug")
#: the longest wall time a job may ask for
MAX_HOURS = 24 * 90


def run_shard(cfg: RunConfig, run_dir: str, shard: tuple[int, int]) -> dict[str, Any]:
    """One job's work (runs on the compute node): this shard of the grid into its store."""
    from rich.console import Console

    from .runner import Runner

    return Runner(cfg, Path(run_dir), shard, Console(soft_wrap=True)).run()


def _executor(folder: Path, cluster: str | None):
    try:
        import submitit
    except ImportError:
        raise ConfigError("ptychobench submit needs submitit: pip install 'ptychobench[cluster]'") from None
    return submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)


def submit(
    cfg: RunConfig,
    run_dir: Path,
    n: int,
    *,
    cluster: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    hours: float = 24.0,
    gpus_per_node: int | None = None,
    wait: bool = True,
    report: Callable[[Path], dict[str, Path]] | None = None,
    console: Any = None,
) -> dict[str, Any]:
    """Submit the ``n`` shards of ``cfg`` as jobs; with ``wait``, wait for all, then merge them
    with ``report`` (``ptychobench.report.write_report``, passed in because the report
    layer sits above this one). Returns the job ids, each shard's summary and the report's
    path."""
    from ..data import load_dataset
    from .plan import plan_run, shard_resources

    check_shard_count(n, "--shards")
    if cluster not in CLUSTERS:
        raise ConfigError(f"--cluster {cluster!r}: choose one of {', '.join(c for c in CLUSTERS if c)}")
    if not (isinstance(hours, (int, float)) and math.isfinite(hours) and 0 < hours <= MAX_HOURS):
        raise ConfigError(f"--hours {hours}: a job's wall time must be a number of hours in (0, {MAX_HOURS}]")
    run_dir = Path(run_dir)
    plan = plan_run(cfg, load_dataset(cfg.dataset, check_images=False), n)
    executor = _executor(run_dir / "jobs", cluster)
    jobs = []
    for s in plan.shards:
        if not s.cells:
            continue
        r = shard_resources(s, cfg)
        if gpus_per_node and r.gpus > gpus_per_node:
            raise ConfigError(
                f"shard {s.index} needs {r.gpus} GPUs ({', '.join(s.models)}), more than "
                f"--gpus-per-node {gpus_per_node}; use nodes with more GPUs or more memory"
            )
        params: dict[str, Any] = dict(
            name=f"ptychobench-{cfg.name}-{s.index}of{n}",
            timeout_min=int(hours * 60),
            gpus_per_node=r.gpus,
            cpus_per_task=r.cpus,
            mem_gb=r.mem_gb,
            tasks_per_node=1,
            nodes=1,
        )
        if partition:
            params["slurm_partition"] = partition
        if account:
            params["slurm_account"] = account
        executor.update_parameters(**params)
        jobs.append((s.index, executor.submit(run_shard, cfg, str(run_dir), (s.index, n))))
    if console:
        for i, job in jobs:
            console.print(
                f"shard {i}/{n}: job {job.job_id}, {len(plan.shards[i].cells)} cells, logs {job.paths.stdout.parent}"
            )
    result: dict[str, Any] = {"jobs": {i: job.job_id for i, job in jobs}, "plan": plan}
    if not wait:
        if executor.cluster == "slurm" and jobs and report is not None:
            executor.update_parameters(
                name=f"ptychobench-{cfg.name}-report",
                gpus_per_node=0,
                cpus_per_task=2,
                mem_gb=8,
                timeout_min=60,
                slurm_additional_parameters={"dependency": "afterok:" + ":".join(j.job_id for _, j in jobs)},
            )
            report_job = executor.submit(report, run_dir)
            result["report_job"] = report_job.job_id
            if console:
                console.print(f"report job {report_job.job_id} runs when all shards succeed")
        elif console:
            console.print(f"when all jobs finish: ptychobench report {run_dir}")
        return result
    summaries = {}
    failed = []
    for i, job in jobs:
        try:
            summaries[i] = job.result()
        except Exception as e:  # noqa: BLE001 - every shard is waited for; failures are listed together
            failed.append(f"shard {i} (job {job.job_id}, log {job.paths.stderr}): {str(e).strip().splitlines()[-1]}")
    result["summaries"] = summaries
    if failed:
        raise PtychoBenchError("; ".join(failed) + ". Finished shards are in their stores; resubmit to run the rest")
    if report is not None:
        result["report"] = str(report(run_dir)["html"])
    return result
