"""Bayes-optimal AMP for the standard problem: the posterior-mean denoiser of a {0, 1} prior."""

from __future__ import annotations

import math

import numpy as np
from superposition_harness import Param, Register, hookimpl

from ._message_passing import TILE, MessagePassing, for_rows


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
    mean, slope, s, e, denominator = (np.empty(np.broadcast_shapes(r.shape, inverse.shape), dtype=dtype)
                                      for _ in range(5))
    _posterior_into(r, inverse, _log_odds(rho, dtype), mean, slope, s, e, denominator)
    return mean, slope


def _log_odds(rho: float, dtype: np.dtype) -> np.generic:
    return dtype.type(math.log(rho) - math.log1p(-rho))


def _posterior_into(r: np.ndarray, inverse: np.ndarray | np.generic, prior: np.generic,
                    mean: np.ndarray, slope: np.ndarray, s: np.ndarray, e: np.ndarray,
                    denominator: np.ndarray) -> None:
    """:func:`posterior_mean` of ``r`` into ``mean`` and ``slope``, with ``s``, ``e`` and
    ``denominator`` as scratch (arrays of ``r``'s shape and type; ``inverse`` is ``1/τ²``
    broadcast against ``r``). Every number is one rounding of the same operations
    whatever the arrays' extent, so a tile of a row gets the bits the whole row gets."""
    one = r.dtype.type(1)
    np.subtract(r, r.dtype.type(0.5), out=s)
    np.multiply(s, inverse, out=s)
    np.add(s, prior, out=s)  # s = (r − ½)/τ² + ln(ρ/(1 − ρ))
    np.abs(s, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)  # e = exp(−|s|)
    np.add(one, e, out=denominator)
    np.copyto(mean, e)
    np.copyto(mean, one, where=s >= 0)
    np.divide(mean, denominator, out=mean)  # η = (1 if s ≥ 0 else e)/(1 + e)
    np.multiply(denominator, denominator, out=slope)
    np.divide(e, slope, out=slope)
    np.multiply(slope, inverse, out=slope)  # η' = e/(1 + e)² / τ²


def posterior_denoise(pseudo: np.ndarray, tau2: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """The means of :func:`posterior_mean` for a batch ``(B, N)`` and the float64 sum of each
    row's slopes (``row_sums``), the same bits, made ``TILE`` entries of a row at a time,
    the rows shared among threads (``_message_passing.for_rows``).

    The whole-array form makes a dozen passes over ``B × N`` numbers in memory on one
    core; here each row is read once and its means written once. A row's slopes are
    gathered in float64 and summed as one row, so that their sum is ``row_sums``' sum.
    """
    r = np.ascontiguousarray(pseudo)
    if r.dtype not in (np.float32, np.float64):
        r = r.astype(np.float64)
    batch, n = r.shape
    inverse = (1.0 / np.asarray(tau2, dtype=np.float64)).astype(r.dtype)
    prior = _log_odds(rho, r.dtype)
    mean = np.empty_like(r)
    sums = np.empty(batch)

    def rows(numbers: range) -> None:
        scratch = np.empty((4, min(TILE, n)), dtype=r.dtype)
        slopes = np.empty(n)
        for i in numbers:
            for start in range(0, n, TILE):
                stop = min(start + TILE, n)
                s, e, denominator, slope = scratch[:, :stop - start]
                _posterior_into(r[i, start:stop], inverse[i], prior, mean[i, start:stop], slope,
                                s, e, denominator)
                slopes[start:stop] = slope
            sums[i] = slopes.sum()

    for_rows(rows, batch, r.size)
    return mean, sums


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
        return posterior_denoise(pseudo, tau2, prior_probability(k, n))


@hookimpl
def register_decoders(register: Register) -> None:
    register(BinaryAMP)
