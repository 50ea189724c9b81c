"""The penalty rule shared by the lasso built-ins (``ista``, ``fista``, ``lasso-cd``).

Not a decoder of its own (it registers nothing): the decoders that solve the same
objective choose its ``λ`` the same way, and keep that rule here as any plugin package
keeps code its decoders share.
"""

from __future__ import annotations

import math

import numpy as np


def penalties(correlations: np.ndarray, n: int, noise: float, lam_ratio: float,
              noise_lam: float) -> np.ndarray:
    """The penalty ``λ`` of each signal from its correlations ``⟨f_i, x⟩`` (shared by the lasso decoders).

    ``λ = lam_ratio · max_i |⟨f_i, x⟩|``: ``max_i |⟨f_i, x⟩|`` is the smallest ``λ``
    whose solution is ``y = 0``, so the ratio is scale-free. With noise ``σ > 0``,
    ``λ`` is at least ``noise_lam · σ · √(2 ln N)``: ``σ √(2 ln N)`` is about the
    largest correlation of pure noise with any codeword, so the solution does not fit
    the noise (the default ``noise_lam = 0.5`` lets a little of it in, which costs the
    top ``k`` less than shrinking the true coefficients).
    """
    largest = np.max(np.abs(correlations), axis=1).astype(np.float64)
    lam = lam_ratio * largest
    if noise > 0:
        lam = np.maximum(lam, noise_lam * noise * math.sqrt(2.0 * math.log(max(n, 2))))
    return lam


def as_penalties(lam: float | np.ndarray, batch: int) -> np.ndarray:
    """``lam`` as one finite non-negative penalty per signal, or ValueError."""
    values = np.broadcast_to(np.asarray(lam, dtype=np.float64), (batch,)).copy()
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"the penalty λ must be finite and non-negative, not {lam!r}")
    return values
