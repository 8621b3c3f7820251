"""Which options help beyond reconstruction noise: the sequential repeated-seed test.

Every applicable option is reconstructed once (repeat 0, paired with the dataset's own
reconstruction). An option whose single-repeat gain is below ``SCREEN_FRACTION`` of the
margin stops there: with a seed-to-seed spread far below the margin (measured and
recorded for every experiment that reaches stage 2) it cannot pass. Every other option
gets ``N_SEEDS`` paired repeats, and is a label when its mean relative gain passes the
margin, exceeds ``SPREAD_FACTOR`` times the spread of the current parameters' errors,
and a one-sided paired t-test gives p < ``MAX_P``. Options whose parameters equal
another option's (or the current ones) are one trial, not two.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from ..tasks import PARAM_OPTIONS
from .labels import EXCLUSIVE, GAIN_MARGIN, MAX_P, MIN_ABS_GAIN, N_SEEDS, SCREEN_FRACTION, SPREAD_FACTOR
from .options import candidates
from .recon import ReconParams

# (params, seed_index) -> {"error": float, "final_loss": float, "seconds": float}
Recon = Callable[[ReconParams, int], dict]


def _key(p: ReconParams) -> tuple:
    return tuple(sorted(p.to_dict().items()))


def verify_options(current: ReconParams, n_pos: int, com_offset: tuple[float, float], recon: Recon) -> dict:
    """Trial record: ``base`` (errors of the current parameters per repeat) and, per
    applicable option, its parameters, errors per repeat, gains, p-value and decision."""
    base: dict[int, dict] = {0: recon(current, 0)}
    trials: dict[str, dict] = {}
    by_params: dict[tuple, str] = {_key(current): "current"}
    for letter in PARAM_OPTIONS:
        if letter == "L":
            continue
        cands = [c for c in candidates(letter, current, n_pos, com_offset) if _key(c) != _key(current)]
        if not cands:
            continue
        runs = []
        failures = []
        for c in cands:
            if _key(c) in by_params and by_params[_key(c)] != "current":
                continue
            try:
                runs.append((c, recon(c, 0)))
            except Exception as e:  # noqa: BLE001 - ptychi refused this combination; recorded
                failures.append(f"{type(e).__name__}: {str(e)[:160]}")
        dupes = [by_params[_key(c)] for c in cands if _key(c) in by_params and by_params[_key(c)] != "current"]
        if not runs:
            trials[letter] = {"params": cands[0].to_dict(), "errors": [], "decision": "failed" if failures else "same"}
            if dupes:
                trials[letter]["same_as"] = dupes[0]
            if failures:
                trials[letter]["failed"] = failures
            continue
        # several candidates (orientations): keep the lowest final data error, never the truth
        c, r0 = min(runs, key=lambda cr: cr[1]["final_loss"] if np.isfinite(cr[1]["final_loss"]) else np.inf)
        by_params[_key(c)] = letter
        trials[letter] = {"params": c.to_dict(), "errors": [r0["error"]], "final_loss": r0["final_loss"]}
        if failures:
            trials[letter]["failed"] = failures
    # options that are the same run as an earlier option share its trial
    for letter, t in trials.items():
        key = _key(ReconParams(**t["params"]))
        owner = by_params.get(key)
        if owner not in (None, letter, "current") and t.get("errors") == []:
            t["same_as"] = owner

    e0 = base[0]["error"]
    for letter, t in trials.items():
        if not t["errors"]:
            continue
        g0 = (e0 - t["errors"][0]) / max(e0, 1e-12)
        if g0 < SCREEN_FRACTION * GAIN_MARGIN:
            t["decision"] = "screened out"
            continue
        p = ReconParams(**t["params"])
        for k in range(1, N_SEEDS):
            if k not in base:
                base[k] = recon(current, k)
            t["errors"].append(recon(p, k)["error"])
    base_errors = [base[k]["error"] for k in sorted(base)]
    spread = float(np.std(base_errors, ddof=1) / np.mean(base_errors)) if len(base_errors) > 1 else None
    for letter, t in trials.items():
        if "decision" in t or not t["errors"]:
            continue
        gains = np.array([(base_errors[k] - e) / base_errors[k] for k, e in enumerate(t["errors"])])
        abs_gain = float(np.mean([base_errors[k] - e for k, e in enumerate(t["errors"])]))
        p_value = float(stats.ttest_1samp(gains, 0.0, alternative="greater").pvalue) if gains.std() > 0 else 0.0
        t["gains"] = [round(float(g), 4) for g in gains]
        t["mean_gain"] = round(float(gains.mean()), 4)
        t["p_value"] = round(p_value, 5)
        ok = (
            gains.mean() >= GAIN_MARGIN
            and abs_gain >= MIN_ABS_GAIN
            and gains.mean() >= SPREAD_FACTOR * (spread or 0.0)
            and p_value < MAX_P
        )
        t["decision"] = "verified" if ok else "not verified"
    return {"base_errors": base_errors, "seed_spread": spread, "trials": trials}


def verified_options(trials: dict) -> dict[str, float]:
    """Verified options and their mean gains, an exclusive pair resolved to the larger
    gain (the other is recorded as "excluded" in the trial)."""
    out = {k: float(t["mean_gain"]) for k, t in trials.items() if t.get("decision") == "verified"}
    for a, b in EXCLUSIVE:
        if a in out and b in out:
            loser = a if out[a] < out[b] else b
            del out[loser]
    return out
