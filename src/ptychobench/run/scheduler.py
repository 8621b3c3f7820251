"""Which shard am I, and which GPUs are mine: read from the scheduler's environment.

Why: under a job array the same command runs N times and only the environment tells
the copies apart. ``--shard auto`` reads it, so one sbatch/qsub script serves any N:

- Slurm job arrays: ``SLURM_ARRAY_TASK_ID`` of ``SLURM_ARRAY_TASK_COUNT``. The index is
  taken as it is (number the array from 0), so resubmitting one failed task
  (``--array=2`` with ``--shard auto/4``) runs shard 2 again;
- PBS Pro ``PBS_ARRAY_INDEX`` or Torque ``PBS_ARRAYID``; PBS does not export the array's
  size, so give it: ``--shard auto/4`` or ``PTYCHOBENCH_SHARDS=4``;
- several tasks of one job (``srun -n 4``: ``SLURM_PROCID``/``SLURM_NTASKS``) or of a
  launcher (``torchrun``: ``RANK``/``WORLD_SIZE``).

GPUs: a scheduler that gives each array task its own GPUs already narrows
``CUDA_VISIBLE_DEVICES``; several shards sharing a node (``srun -n 4`` on a 4-GPU node,
``torchrun --nproc_per_node 4``, or shards started by hand) each take their own slice of
the node's devices by local rank (``LOCAL_RANK``, ``SLURM_LOCALID``) or shard index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Mapping

from ..errors import ConfigError
from .grid import check_shard_count, parse_shard

ENV_COUNT = "PTYCHOBENCH_SHARDS"


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--shard auto: {name}={value!r} is not an integer") from None


def detect_shard(env: Mapping[str, str] | None = None, count: int | None = None) -> tuple[int, int]:
    """(index, count) of this process from the scheduler's environment (see module doc);
    ``count`` (from ``auto/N``) wins over the environment's."""
    env = os.environ if env is None else env
    count = count or _int(env, ENV_COUNT)
    index: int | None
    n: int | None
    if (task := _int(env, "SLURM_ARRAY_TASK_ID")) is not None:
        index = task
        n = count or _int(env, "SLURM_ARRAY_TASK_COUNT")
        source = "SLURM_ARRAY_TASK_ID"
    elif (task := _int(env, "PBS_ARRAY_INDEX") if "PBS_ARRAY_INDEX" in env else _int(env, "PBS_ARRAYID")) is not None:
        index, n = task, count
        source = "PBS_ARRAY_INDEX" if "PBS_ARRAY_INDEX" in env else "PBS_ARRAYID"
        if n is None:
            raise ConfigError(
                f"--shard auto: {source}={task} but PBS does not say how many shards there are; "
                f"use --shard auto/N or set {ENV_COUNT}=N (N = the array's size)"
            )
    elif (_int(env, "SLURM_NTASKS") or 1) > 1 and _int(env, "SLURM_PROCID") is not None:
        index, n, source = _int(env, "SLURM_PROCID"), count or _int(env, "SLURM_NTASKS"), "SLURM_PROCID"
    elif _int(env, "RANK") is not None and _int(env, "WORLD_SIZE") is not None:
        index, n, source = _int(env, "RANK"), count or _int(env, "WORLD_SIZE"), "RANK"
    else:
        raise ConfigError(
            "--shard auto: no job array in the environment (SLURM_ARRAY_TASK_ID, PBS_ARRAY_INDEX, "
            "PBS_ARRAYID, SLURM_PROCID or RANK); submit a job array or use --shard i/n"
        )
    assert index is not None
    if n is None or n < 1:
        raise ConfigError(f"--shard auto: the number of shards is unknown; use --shard auto/N or set {ENV_COUNT}")
    if not 0 <= index < n:
        raise ConfigError(
            f"--shard auto: {source} gives shard {index}, outside 0..{n - 1} of {n} shards "
            "(number the array from 0: --array=0-N-1, -J 0-N-1)"
        )
    return index, n


def resolve_shard(text: str | None, env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``--shard``'s value: None, ``i/n``, ``auto`` or ``auto/N``."""
    if text is None or text == "":
        return None
    if text == "auto" or text.startswith("auto/"):
        count = None
        if text.startswith("auto/"):
            try:
                count = int(text[5:])
            except ValueError:
                raise ConfigError(f"--shard {text!r}: expected auto or auto/N, e.g. auto/4") from None
            if count < 1:
                raise ConfigError(f"--shard {text!r}: N must be at least 1")
        index, n = detect_shard(env, count)
        check_shard_count(n, f"--shard {text}")
        return index, n
    return parse_shard(text)


def visible_devices(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` where set, else every GPU
    ``nvidia-smi`` lists (none on a machine without one)."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() not in ("", "-1")]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def shard_devices(
    shard: tuple[int, int] | None,
    gpus_per_shard: int | None = None,
    env: Mapping[str, str] | None = None,
    devices: list[str] | None = None,
) -> list[str] | None:
    """This process's slice of the node's GPUs, or None to leave ``CUDA_VISIBLE_DEVICES`` as
    the scheduler set it.

    The slot on the node: the local rank (``LOCAL_RANK``, else ``SLURM_LOCALID`` when
    several tasks share the node), else the shard index; the slice: ``gpus_per_shard``
    devices, or an even share of the node by ``LOCAL_WORLD_SIZE``/``SLURM_NTASKS_PER_NODE``.
    Nothing changes where the process already sees only what it needs."""
    env = os.environ if env is None else env
    devices = visible_devices(env) if devices is None else devices
    local = _int(env, "LOCAL_RANK")
    slots = _int(env, "LOCAL_WORLD_SIZE")
    if local is None and (_int(env, "SLURM_NTASKS_PER_NODE") or _int(env, "SLURM_NTASKS") or 1) > 1:
        local = _int(env, "SLURM_LOCALID")
        slots = _int(env, "SLURM_NTASKS_PER_NODE")
    if local is None:
        if shard is None or not gpus_per_shard:
            return None
        local = shard[0]
    per = gpus_per_shard or (len(devices) // slots if slots else 0)
    if per < 1 or len(devices) <= per:
        return None
    fit = len(devices) // per
    slot = local % fit
    return devices[slot * per : (slot + 1) * per]


def pin_devices(shard: tuple[int, int] | None, gpus_per_shard: int | None = None) -> list[str] | None:
    """Narrow ``CUDA_VISIBLE_DEVICES`` to this shard's GPUs before anything starts CUDA;
    returns the devices chosen (None: left as they were)."""
    chosen = shard_devices(shard, gpus_per_shard)
    if chosen is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    return chosen


def relaunch_distributed(processes: int, argv: list[str] | None = None) -> int:
    """Run this same ``ptychobench`` command again as ``processes`` data-parallel copies
    under torchrun (``torch.distributed.run``, part of torch); returns its exit code.

    Each copy sees ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``: the Trainer then runs DDP (NCCL
    on GPUs, each copy on its ``LOCAL_RANK``'s GPU; gloo on the CPU) and only rank 0 writes
    the adapter. ``accelerate launch --num_processes N -m ptychobench.cli train ...`` does
    the same."""
    argv = sys.argv[1:] if argv is None else argv
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "ptychobench.cli",
        *argv,
    ]
    return subprocess.call(cmd)
