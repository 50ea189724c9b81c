"""Approximate message passing (Donoho–Maleki–Montanari) with soft thresholding and the Onsager correction."""

from __future__ import annotations

import functools
import math

import numpy as np
from superposition_harness import Param, Register, hookimpl

from ._message_passing import MessagePassing


def soft_threshold_risk(alpha: float, rho: float, nonnegative: bool = True) -> float:
    """Worst-case MSE of soft thresholding at ``θ = α·τ`` per unit ``τ²``, for sparsity ``ρ``.

    The MSE of ``η(y + τZ; ατ)`` is ``τ²·[(1 − ρ)·m₀(α) + ρ·(1 + α²)]`` in the worst case
    over signals with a fraction ``ρ`` of non-zeros (all of them large), where
    ``m₀(α) = E[η(Z; α)²] = c·((1 + α²)Φ(−α) − αφ(α))`` is the error on a zero, with
    ``c = 2`` for the two-sided threshold and ``c = 1`` for the positive part. In the
    noiseless state evolution ``τ²_{t+1} = (N/d)·mse(τ_t)`` this bracket times ``N/d``
    is the rate at which ``τ²`` shrinks, once the large coefficients dominate.
    """
    tail = 0.5 * math.erfc(alpha / math.sqrt(2.0))
    density = math.exp(-0.5 * alpha * alpha) / math.sqrt(2.0 * math.pi)
    zero = (1.0 + alpha * alpha) * tail - alpha * density
    if not nonnegative:
        zero *= 2.0
    return (1.0 - rho) * zero + rho * (1.0 + alpha * alpha)


@functools.lru_cache(maxsize=256)
def minimax_alpha(rho: float, nonnegative: bool = True) -> float:
    """The minimax threshold multiplier ``α`` for sparsity ``ρ`` (Donoho, Maleki & Montanari 2009).

    It minimises :func:`soft_threshold_risk`, a convex function of ``α`` on ``[0, 6]``,
    by golden-section search to ``1e-9``. For ``ρ = 1/256`` it is about 2.02 (2.24 for
    the two-sided threshold); it shrinks as ``ρ`` grows.
    """
    lo, hi = 0.0, 6.0
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = soft_threshold_risk(a, rho, nonnegative), soft_threshold_risk(b, rho, nonnegative)
    while hi - lo > 1e-9:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = soft_threshold_risk(a, rho, nonnegative)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = soft_threshold_risk(b, rho, nonnegative)
    return 0.5 * (lo + hi)


class SoftThresholdAMP(MessagePassing):
    """Donoho–Maleki–Montanari AMP with soft thresholding (docs/contract.md §3).

    The denoiser is ``η(r; θ) = sign(r)·max(|r| − θ, 0)`` (with ``nonnegative``,
    ``max(r − θ, 0)``), so ``Σ_i η'`` is the number of non-zero entries ``‖y^{t+1}‖₀``,
    and the threshold follows the effective noise: ``θ_t = alpha · τ_t`` with
    ``τ_t² = max(‖z^t‖²/d, σ²)``. The loop, stopping rule and decoded set are those of
    :class:`MessagePassing`. At its fixed point the estimate solves the lasso with
    ``λ = θ (1 − ‖y‖₀/d)``.
    """

    name = "amp"
    description = ("Message passing: Donoho–Maleki–Montanari AMP, soft threshold θ = α·τ̂ with the "
                   "Onsager correction; Ŷ = top-k of the estimate.")
    threshold: str
    alpha: float
    nonnegative: bool

    parameters = (
        Param("threshold", str, "minimax",
              "θ_t = α·τ̂_t with α the minimax threshold for ρ = k/N ('minimax') or α = alpha ('fixed')",
              choices=("minimax", "fixed")),
        Param("alpha", float, 2.0, "α of threshold='fixed': θ_t = alpha · τ̂_t, τ̂_t² = ‖z^t‖²/d",
              minimum=0.0),
        Param("iterations", int, 30, "iterations, at most", minimum=1),
        Param("tol", float, 1e-4, "a signal stops when ‖y^{t+1} − y^t‖ ≤ tol · ‖y^{t+1}‖",
              minimum=0.0, maximum=1.0),
        Param("damping", float, 1.0, "β: y^{t+1} = β η(r^t) + (1 − β) y^t (1 = no damping)",
              minimum=0.01, maximum=1.0),
        Param("nonnegative", bool, True,
              "positive-part soft threshold max(r − θ, 0) (the standard problem's coefficients are +1)"),
    )

    def multiplier(self, k: int, n: int) -> float:
        """The threshold multiplier ``α`` used for ``k`` active features out of ``n``."""
        if self.threshold == "fixed":
            return self.alpha
        return minimax_alpha(min(max(k, 1), n) / n, self.nonnegative)

    def _denoise(self, pseudo: np.ndarray, tau2: np.ndarray, k: int,
                 n: int) -> tuple[np.ndarray, np.ndarray]:
        theta = (self.multiplier(k, n) * np.sqrt(tau2)).astype(np.float32)[:, None]
        if self.nonnegative:
            out = np.maximum(pseudo - theta, np.float32(0.0))
        else:
            out = np.sign(pseudo) * np.maximum(np.abs(pseudo) - theta, np.float32(0.0))
        return out, np.count_nonzero(out, axis=1).astype(np.float64)


@hookimpl
def register_decoders(register: Register) -> None:
    register(SoftThresholdAMP)
