"""The 24 parameter-recommendation options as changes to a :class:`ReconParams`.

``candidates(letter, params, n_pos)`` returns the parameter sets that applying the option
means (empty when it does not apply to these parameters, e.g. "Enable momentum" when
momentum is already on). "Try other diffraction pattern orientations" yields several
sets; the trial keeps the one with the lowest final data error, as a scientist would
(never the ground truth). "No changes needed" (L) is never applied; it is the label when
the reconstruction is already good and no option helps.
"""

from __future__ import annotations

from .recon import ReconParams


def candidates(
    letter: str, p: ReconParams, n_pos: int, com_offset: tuple[float, float] = (1.0, 1.0)
) -> list[ReconParams]:
    w = p.with_
    nb = -(-n_pos // max(1, min(p.batch_size, n_pos)))  # number of batches
    match letter:
        case "A":
            return [w(batch_size=n_pos)] if nb > 1 else []
        case "B":
            return [w(momentum=False)] if p.momentum else []
        case "C":
            return [w(multimodal_update=False)] if p.multimodal_update and p.n_probe_modes > 1 else []
        case "D":
            return [w(position_correction=False, affine_constraint=False)] if p.position_correction else []
        case "E":
            return [w(momentum=True)] if not p.momentum else []
        case "F":
            return [w(multimodal_update=True)] if not p.multimodal_update and p.n_probe_modes > 1 else []
        case "G":
            return [w(position_correction=True)] if not p.position_correction else []
        case "H":
            # doubling to a single batch is option A, not a second trial of the same run
            return [w(batch_size=p.batch_size * 2)] if p.batch_size * 2 < n_pos else []
        case "I":
            return [w(n_opr_modes=p.n_opr_modes + 1)] if p.n_opr_modes >= 1 else []
        case "J":
            return [w(n_probe_modes=p.n_probe_modes + 2)] if p.n_probe_modes < 5 else []
        case "K":
            return [w(n_epochs=p.n_epochs * 2)]
        case "M":
            # recentring moves patterns by whole pixels; below half a pixel it changes nothing
            moves = round(com_offset[0]) != 0 or round(com_offset[1]) != 0
            return [w(recenter=True)] if not p.recenter and moves else []
        case "N":
            return [w(batch_size=max(1, p.batch_size // 2))] if p.batch_size >= 4 else []
        case "O":
            return [w(bin_factor=2)] if p.bin_factor == 1 else []
        case "P":
            return [w(regularization=0.0)] if p.regularization > 0 else []
        case "Q":
            # the two usual slips: detector axes swapped, or the detector read upside down
            others = [o for o in ("transpose", "flip-y") if o != p.orientation]
            return [w(orientation=o) for o in others]
        case "R":
            return [w(affine_constraint=False)] if p.position_correction and p.affine_constraint else []
        case "S":
            return [w(n_opr_modes=0)] if p.n_opr_modes >= 1 else []
        case "T":
            return [w(n_opr_modes=1)] if p.n_opr_modes == 0 else []
        case "U":
            return [w(noise_model="gaussian")] if p.noise_model != "gaussian" else []
        case "V":
            return [w(batching="compact")] if p.batching != "compact" else []
        case "W":
            return [w(multislice=True)] if not p.multislice else []
        case "X":
            return [w(batching="uniform")] if p.batching != "uniform" else []
    return []
