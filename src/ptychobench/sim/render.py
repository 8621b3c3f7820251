"""The one viewer: how a reconstruction becomes the image a model (and a person) sees.

It reads the reconstruction alone, as a scientist's viewer does: no truth, no expected
phase range. The dataset build, ``diagnose`` and anything that shows a user's own
reconstruction call :func:`render_phase`, so a detector sees a user's image exactly as
it saw its training data.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# percentiles of the displayed window: robust to a few hot pixels, as viewers autoscale
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5


def phase_of(obj: np.ndarray) -> np.ndarray:
    """Phase of a complex object (or a phase map as given), offset so its mean is zero.

    The global phase offset is arbitrary in ptychography, so it is removed through the
    mean complex value; ramps and wrapping are left as they are.
    """
    arr = np.asarray(obj)
    if np.iscomplexobj(arr):
        return np.angle(arr * np.exp(-1j * np.angle(arr.mean())))
    return arr.astype(np.float64) - float(np.mean(arr))


def display_window(obj: np.ndarray) -> tuple[float, float]:
    """The phase window (radians) the viewer maps from black to white: the robust range
    of the image itself. The labels measure what is visible against this window."""
    lo, hi = np.percentile(phase_of(obj), [LOW_PERCENTILE, HIGH_PERCENTILE])
    return float(lo), float(hi)


def render_phase(obj: np.ndarray, size: int | None = None) -> np.ndarray:
    """8-bit grayscale image of the phase, autoscaled to its own robust range.

    ``size`` resamples the field to ``size`` x ``size`` pixels (bilinear), so a small
    field is still legible at a vision model's input size.
    """
    ph = phase_of(obj)
    lo, hi = display_window(obj)
    img = np.clip((ph - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    if size is not None and img.shape != (size, size):
        img = ndimage.zoom(img, (size / img.shape[0], size / img.shape[1]), order=1)
        img = np.clip(img, 0.0, 1.0)
    return np.round(img * 255).astype(np.uint8)
