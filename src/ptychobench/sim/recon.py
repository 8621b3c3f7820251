"""Reconstruction with pty-chi (``ptychi``) LSQML, the engine of the PEAR workflow.

:class:`ReconParams` is the "current parameter set" a user would have typed into the
workflow; :func:`reconstruct` turns it into ``ptychi`` option dataclasses and runs the
reconstruction on the CPU with one thread (the build parallelises over processes).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ReconParams:
    n_epochs: int = 40
    batch_size: int = 40
    batching: str = "random"  # random | compact | uniform (ptychi's "sparse")
    momentum: bool = False
    n_probe_modes: int = 1
    multimodal_update: bool = True
    n_opr_modes: int = 0  # variable-probe (OPR) eigenmodes besides the main mode
    position_correction: bool = False
    affine_constraint: bool = False
    noise_model: str = "gaussian"  # gaussian | poisson
    regularization: float = 0.0  # object smoothness constraint alpha (0 = off)
    multislice: bool = False
    # data preparation done by the workflow before reconstruction
    recenter: bool = False
    orientation: str = "as recorded"  # as recorded | transpose | flip-y | flip-x
    bin_factor: int = 1  # 2 = diffraction patterns cropped to half size

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **kw) -> ReconParams:
        return replace(self, **kw)


@dataclass
class ReconResult:
    obj: np.ndarray  # (n_slices, N, N) complex, on the simulation grid
    probe: np.ndarray
    positions: np.ndarray  # final (y, x) positions
    loss: list[float]  # data error per epoch
    seconds: float


class _DropPtychiNotices(logging.Filter):
    """ptychi reports option notices on the root logger; they are expected here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "ptychi" not in record.pathname


def _quiet() -> None:
    logging.getLogger("ptychi").setLevel(logging.ERROR)
    root = logging.getLogger()
    if not any(isinstance(f, _DropPtychiNotices) for f in root.filters):
        root.addFilter(_DropPtychiNotices())


def reconstruct(
    patterns: np.ndarray,
    positions: np.ndarray,
    probe0: np.ndarray,
    n_obj: int,
    params: ReconParams,
    wavelength_m: float,
    pixel_m: float,
    slice_spacing_m: float,
    seed: int,
    *,
    propagation_m: float | None = None,
    valid_mask: np.ndarray | None = None,
    obj_shape: tuple[int, int] | None = None,
) -> ReconResult:
    """Run LSQML. ``patterns`` are DC-centred intensities ``(n, P, P)``; ``probe0`` is the
    initial probe ``(P, P)``; ``positions`` the (y, x) pixel positions the workflow
    believes in, about the object's centre.

    Measured data (:mod:`.measured`) may give ``propagation_m``, a near-field (Fresnel)
    propagation distance (patterns are then holograms, not DC-centred, and are not
    shifted), ``valid_mask`` (True on good detector pixels) and a non-square
    ``obj_shape`` instead of ``n_obj``."""
    import torch
    from ptychi import api
    from ptychi.api.task import PtychographyTask

    _quiet()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_pos, p, _ = patterns.shape
    # pty-chi 2.2 builds its data loader with a fresh, unseeded torch.Generator, so
    # "random" batches come out the same whatever the seed. Feeding the positions in a
    # seeded order makes the seed choose the batches, as a repeated run would.
    order = rng.permutation(n_pos)
    patterns, positions = patterns[order], positions[order]

    o = api.LSQMLOptions()
    o.data_options.data = patterns.astype(np.float32)
    o.data_options.wavelength_m = wavelength_m
    o.data_options.fft_shift = propagation_m is None
    o.data_options.save_data_on_device = False
    if propagation_m is not None:
        o.data_options.free_space_propagation_distance_m = float(propagation_m)
    if valid_mask is not None:
        o.data_options.valid_pixel_mask = np.asarray(valid_mask, bool)

    n_slices = 2 if params.multislice else 1
    obj0 = np.ones((n_slices, *(obj_shape or (n_obj, n_obj))), np.complex64)
    o.object_options.initial_guess = obj0
    o.object_options.pixel_size_m = pixel_m
    if n_slices > 1:
        o.object_options.slice_spacings_m = [slice_spacing_m]
    o.object_options.optimizable = True
    o.object_options.multimodal_update = params.multimodal_update
    if params.regularization > 0:
        o.object_options.smoothness_constraint.enabled = True
        o.object_options.smoothness_constraint.alpha = float(min(params.regularization, 0.125))

    # initial probe: main mode + weak orthogonal-ish modes, + OPR eigenmodes
    n_modes = params.n_probe_modes
    n_opr = params.n_opr_modes + 1
    pr = np.zeros((n_opr, n_modes, p, p), np.complex64)
    pr[0, 0] = probe0
    norm0 = np.sqrt((np.abs(probe0) ** 2).sum())
    for m in range(1, n_modes):
        g = np.fft.ifft2(np.fft.fft2(probe0) * np.exp(2j * np.pi * rng.uniform(-0.1, 0.1, (p, p))))
        pr[0, m] = (g / np.sqrt((np.abs(g) ** 2).sum()) * norm0 * 0.3).astype(np.complex64)
    for k in range(1, n_opr):
        for m in range(n_modes):
            g = rng.standard_normal((p, p)) + 1j * rng.standard_normal((p, p))
            pr[k, m] = (g / np.sqrt((np.abs(g) ** 2).sum()) * norm0).astype(np.complex64)
    o.probe_options.initial_guess = pr
    o.probe_options.optimizable = True
    # as in PEAR: the probe is refined from the third iteration, after the object has formed
    o.probe_options.optimization_plan.start = 2
    o.probe_options.orthogonalize_incoherent_modes.enabled = n_modes > 1

    o.probe_position_options.position_y_px = positions[:, 0].astype(np.float32)
    o.probe_position_options.position_x_px = positions[:, 1].astype(np.float32)
    o.probe_position_options.optimizable = params.position_correction
    if params.position_correction:
        o.probe_position_options.optimization_plan.start = 1
        o.probe_position_options.step_size = 0.5
        # ptychi's default caps a position update at 0.1 px per iteration, too little to
        # undo errors of a few pixels in tens of iterations
        o.probe_position_options.correction_options.update_magnitude_limit = 0.5
        if params.affine_constraint:
            o.probe_position_options.affine_transform_constraint.enabled = True

    if n_opr > 1:
        w = np.zeros((n_pos, n_opr), np.float32)
        w[:, 0] = 1
        w[:, 1:] = rng.standard_normal((n_pos, n_opr - 1)) * 1e-3
        o.opr_mode_weight_options.initial_weights = w
        o.opr_mode_weight_options.optimizable = True
        o.opr_mode_weight_options.optimize_eigenmode_weights = True
    else:
        o.opr_mode_weight_options.optimizable = False

    r = o.reconstructor_options
    r.num_epochs = params.n_epochs
    r.batch_size = int(min(params.batch_size, n_pos))
    r.batching_mode = {
        "random": api.BatchingModes.RANDOM,
        "compact": api.BatchingModes.COMPACT,
        "uniform": api.BatchingModes.UNIFORM,
    }[params.batching]
    r.momentum_acceleration_gain = 0.5 if params.momentum else 0.0
    r.noise_model = api.NoiseModels.POISSON if params.noise_model == "poisson" else api.NoiseModels.GAUSSIAN
    r.default_device = api.Devices.CPU
    r.random_seed = seed
    r.allow_nondeterministic_algorithms = False

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = PtychographyTask(o)
        task.run()
    seconds = time.perf_counter() - t0
    obj = task.get_data("object").cpu().numpy()
    probe = task.get_data("probe").cpu().numpy()
    pos = np.empty_like(positions, dtype=np.float64)
    pos[order] = task.get_data("probe_positions").cpu().numpy()  # back to the scan's order
    reconstructor: Any = task.reconstructor  # set by pty-chi's build(); its stub says Optional
    loss = [float(v) for v in reconstructor.loss_tracker.table["loss"].to_numpy()]
    return ReconResult(obj=obj, probe=probe, positions=pos, loss=loss, seconds=seconds)
