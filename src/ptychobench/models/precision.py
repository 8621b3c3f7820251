"""The number format a model runs in when its ``dtype`` is ``auto``: chosen by measurement.

bf16 halves the memory traffic, and on a CPU with AVX512-BF16 or AMX it was 3-5x faster
than float32 for this project's model shapes. On a CPU with AVX2 only, the same bf16
matmul is emulated: a user measured 160x slower there (576x576 by 576x2048, one thread:
34 ms float32, 5.4 s bf16). A flag in /proc/cpuinfo does not say which kernels this torch
build will pick, so a short probe times both formats on the shapes the offline models
run (a decode step and a prefill chunk of a 576-wide layer), once per machine and torch
version, and bf16 is chosen only where it is clearly faster. The result is cached under
``paths.cache_dir()/machine`` and is shown in the run log and the report.

On CUDA, bf16 where the GPU supports it, else float16. An explicit ``dtype`` always wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from functools import cache
from pathlib import Path
from typing import Any

from ..files import write_atomic
from ..paths import cache_dir

#: bf16 must take at most this share of float32's time to be chosen (clearly faster, so a
#: noisy probe on a busy machine does not flip the choice back and forth).
BF16_MAX_RATIO = 0.8
#: (rows, in, out) of the probed linear layers: SmolLM2-135M's MLP at a decode step of a
#: batch of 16 and at a 128-token prefill chunk.
SHAPES = ((16, 576, 1536), (128, 576, 1536))
FORMAT = 1


def cpu_capability() -> str:
    """torch's name for the vector instructions its CPU kernels use here (AVX2, AVX512, ...)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # pragma: no cover - torch < 2.1
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _time_linear(dtype: Any, repeats: int = 5) -> float:
    """Median seconds of one pass over :data:`SHAPES` in ``dtype``, on one thread (the
    comparison, not the absolute time, matters; one thread keeps it steady on a shared CPU)."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    pairs = [
        (torch.randn(m, k, generator=gen).to(dtype), torch.randn(n, k, generator=gen).to(dtype)) for m, k, n in SHAPES
    ]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for x, w in pairs:  # warm-up: kernel selection and first-touch
            F.linear(x, w)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for x, w in pairs:
                F.linear(x, w)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return sorted(times)[len(times) // 2]


def _probe_path() -> Path:
    import torch

    env = "|".join(f"{k}={os.environ.get(k, '')}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"))
    key = "|".join([torch.__version__, cpu_capability(), _cpu_model(), env, str(FORMAT)])
    return cache_dir() / "machine" / f"dtype-probe-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


@cache
def cpu_dtype_probe() -> dict[str, Any]:
    """The CPU probe's result: ``{"dtype", "capability", "cpu", "torch", "float32_ms",
    "bfloat16_ms", "ratio", "measured"}``, measured once per machine and torch version
    (the cache key also holds the ISA caps that torch and oneDNN read from the environment)."""
    import torch

    path = _probe_path()
    try:
        found = json.loads(path.read_text())
        if found.get("format") == FORMAT and found.get("dtype") in ("bfloat16", "float32"):
            return found
    except (OSError, ValueError):
        pass
    fp32 = _time_linear(torch.float32)
    bf16 = _time_linear(torch.bfloat16)
    ratio = bf16 / fp32 if fp32 > 0 else float("inf")
    result = {
        "format": FORMAT,
        "dtype": "bfloat16" if ratio <= BF16_MAX_RATIO else "float32",
        "capability": cpu_capability(),
        "cpu": _cpu_model(),
        "torch": torch.__version__,
        "float32_ms": round(fp32 * 1e3, 3),
        "bfloat16_ms": round(bf16 * 1e3, 3),
        "ratio": round(ratio, 3),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(result, indent=1) + "\n")
    except OSError:  # a read-only cache costs a re-probe next time, nothing more
        pass
    return result


def auto_dtype(device: str) -> Any:
    """The torch dtype for ``dtype: auto`` on ``device`` (see the module docstring)."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device != "cpu":
        return torch.float32
    return getattr(torch, cpu_dtype_probe()["dtype"])


def resolve_dtype(dtype: Any, device: str) -> Any:
    """A torch dtype from a config's ``dtype`` (``auto``/None, a name, or a torch dtype)."""
    import torch

    if dtype in (None, "auto"):
        return auto_dtype(device)
    if isinstance(dtype, str):
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"dtype {dtype!r}: use auto, float32, bfloat16 or float16")
        return value
    return dtype


def describe_choice(device: str = "cpu") -> str:
    """One line for the run log: what ``auto`` picks here and why."""
    if device.startswith("cuda"):
        return f"dtype auto on {device}: {str(auto_dtype(device)).replace('torch.', '')}"
    p = cpu_dtype_probe()
    return (
        f"dtype auto on the CPU ({p['capability']}): {p['dtype']} "
        f"(probe: bfloat16 {p['bfloat16_ms']:.2f} ms vs float32 {p['float32_ms']:.2f} ms, "
        f"ratio {p['ratio']:.2f}; bf16 only at <= {BF16_MAX_RATIO})"
    )
