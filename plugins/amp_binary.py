"""Bayes-optimal AMP for the standard problem: the posterior-mean denoiser of a {0, 1} prior."""

from __future__ import annotations

import math

import numpy as np
from superposition_harness import Param, Register, hookimpl

from ._message_passing import MessagePassing, row_sums


def posterior_mean(pseudo: np.ndarray, tau2: np.ndarray | float,
                   rho: float) -> tuple[np.ndarray, np.ndarray]:
    """``E[y | r]`` for ``y ~ Bernoulli(ρ)``, ``r = y + τ·N(0, 1)``, and ``∂E[y | r]/∂r``, elementwise.

    ``η(r; τ) = sigmoid(s)`` with the log-odds ``s = (r − ½)/τ² + ln(ρ/(1 − ρ))``, and
    ``η' = η(1 − η)/τ²``. ``tau2`` is one variance per row of ``pseudo`` (or one
    number). Both are computed from ``e = exp(−|s|) ∈ [0, 1]``, which never overflows,
    so there are no warnings and no cancellation in ``1 − η``.
    """
    r = np.asarray(pseudo)
    dtype = r.dtype if r.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    r = r.astype(dtype, copy=False)
    inverse = (1.0 / np.asarray(tau2, dtype=np.float64)).astype(dtype)
    if inverse.ndim:
        inverse = inverse[:, None]
    prior = dtype.type(math.log(rho) - math.log1p(-rho))
    s = (r - dtype.type(0.5)) * inverse + prior
    e = np.exp(-np.abs(s))
    denominator = 1 + e
    mean = np.where(s >= 0, dtype.type(1), e) / denominator
    slope = e / (denominator * denominator) * inverse
    return mean, slope


def prior_probability(k: int, n: int) -> float:
    """``ρ = k/N``, kept inside ``(0, 1)`` so that the prior log-odds stay finite when ``k ≥ N``."""
    return min(min(max(k, 1), n) / n, 1.0 - 1.0 / (2 * n))


class BinaryAMP(MessagePassing):
    """AMP whose denoiser is the posterior mean for ``y_i ∈ {0, 1}``, ``P(y_i = 1) = ρ = k/N`` (contract §3).

    ``η(r; τ) = E[y | y + τ·N(0, 1) = r]`` (see :func:`posterior_mean`) is the
    Bayes-optimal scalar denoiser for the standard problem's prior (i.i.d. Bernoulli
    in place of "exactly ``k``"), so AMP with it is the Bayes-optimal AMP: its
    per-iteration error follows the state evolution
    ``τ²_{t+1} = σ² + (N/d)·mmse(τ_t²)``. ``τ_t²`` is estimated per signal as
    ``max(‖z^t‖²/d, σ²)``; the Onsager term is ``z^t·(N/d)·mean_i η'``. The loop,
    stopping rule and decoded set (the top ``k`` of the posterior means, i.e. of the
    pseudo-data) are those of :class:`~superposition_harness_builtins._message_passing.MessagePassing`.
    """

    name = "amp-binary"
    description = ("Message passing: Bayes-optimal AMP with the posterior-mean denoiser of the "
                   "{0, 1} prior P(y_i = 1) = k/N; Ŷ = top-k of the posterior means.")
    parameters = (
        Param("iterations", int, 30, "iterations, at most", minimum=1),
        Param("tol", float, 1e-4, "a signal stops when ‖y^{t+1} − y^t‖ ≤ tol · ‖y^{t+1}‖",
              minimum=0.0, maximum=1.0),
        Param("damping", float, 1.0, "β: y^{t+1} = β η(r^t) + (1 − β) y^t (1 = no damping)",
              minimum=0.01, maximum=1.0),
    )

    def _denoise(self, pseudo: np.ndarray, tau2: np.ndarray, k: int,
                 n: int) -> tuple[np.ndarray, np.ndarray]:
        mean, slope = posterior_mean(pseudo, tau2, prior_probability(k, n))
        return mean, row_sums(slope)


@hookimpl
def register_decoders(register: Register) -> None:
    register(BinaryAMP)
