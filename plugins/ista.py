"""The lasso by proximal gradient: ISTA and its accelerated form FISTA, batched over signals."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from superposition_harness import Decoder, Dictionary, Param, Register, grid_steps, hookimpl, top_k_rows
from superposition_harness import snap_to_grid as snap

from ._penalty import as_penalties, penalties


@njit(cache=True)
def _step(points: np.ndarray, correlations: np.ndarray, previous: np.ndarray, inverse: float,
          levels: np.ndarray, nonnegative: bool, steps: np.ndarray, accelerated: bool,
          momentum: np.ndarray, estimates: np.ndarray, extrapolated: np.ndarray,
          changes: np.ndarray) -> None:  # pragma: no cover - compiled
    """One proximal-gradient step for every row, in place.

    Row ``b`` moves from its point ``z`` (the estimate for ISTA, the extrapolated point
    for FISTA), whose correlations ``⟨f_i, x − F z⟩`` are given, to
    ``y = S_{λ/L}(z + Fᵀ(x − F z) / L)``, rounded to the row's grid (see
    ``superposition_harness.grid_steps``). FISTA then extrapolates
    ``z = y + (t − 1)/t' · (y − y_prev)`` with ``t' = (1 + √(1 + 4t²)) / 2``, restarting
    the momentum (``t = 1``) whenever ``⟨z − y, y − y_prev⟩ > 0``, i.e. when the step
    went against the momentum (O'Donoghue and Candès' gradient restart). ``changes[b]``
    receives ``max |y − y_prev|`` and ``max |y|``. Every sum runs in a fixed order.
    """
    rows, n = points.shape
    for b in range(rows):
        step = steps[b]
        scale = 1.0 / step  # exact: the step is a power of two
        threshold = levels[b] * inverse
        change = 0.0
        largest = 0.0
        against = 0.0
        for i in range(n):
            z = points[b, i] + correlations[b, i] * inverse
            if z > threshold:
                y = np.float32(np.round((z - threshold) * scale) * step)
            elif z < -threshold and not nonnegative:
                y = np.float32(np.round((z + threshold) * scale) * step)
            else:
                y = 0.0  # most coordinates: no rounding needed
            estimates[b, i] = y
            delta = y - previous[b, i]
            against += (points[b, i] - y) * delta
            change = max(change, abs(delta))
            largest = max(largest, abs(y))
        changes[b, 0] = change
        changes[b, 1] = largest
        if accelerated:
            t = momentum[b]
            if against > 0.0:
                t = 1.0
            following = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            weight = (t - 1.0) / following
            momentum[b] = following
            for i in range(n):
                y = estimates[b, i]
                before = previous[b, i]
                if y == before:
                    extrapolated[b, i] = y  # already on the grid (zero, mostly)
                else:
                    z = y + weight * (y - before)
                    extrapolated[b, i] = np.float32(np.round(z * scale) * step)


#: A row whose estimate has more than one non-zero in this many is synthesised by the
#: operator's product instead of from gathered codewords.
DENSE_ROW = 16

#: The gathered codewords a solve keeps, at most (bytes); past it they are gathered anew.
CACHE_BYTES = 1 << 28


@njit(cache=True)
def _supports(points: np.ndarray, counts: np.ndarray) -> None:  # pragma: no cover - compiled
    for b in range(points.shape[0]):
        count = 0
        for i in range(points.shape[1]):
            if points[b, i] != 0.0:
                count += 1
        counts[b] = count


@njit(cache=True)
def _sum_codewords(points: np.ndarray, rows: np.ndarray, slots: np.ndarray, codewords: np.ndarray,
                   out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[r] = Σ_i points[rows[r], i] · codewords[slots[i]]`` over the non-zeros, in index order."""
    d = out.shape[1]
    for r in range(rows.shape[0]):
        b = rows[r]
        support = np.empty(points.shape[1], dtype=np.int64)
        size = 0
        for i in range(points.shape[1]):
            if points[b, i] != 0.0:
                support[size] = i
                size += 1
        total = out[r]
        total[:] = 0.0
        for q in range(size):
            i = support[q]
            value = np.float64(points[b, i])
            slot = slots[i]
            for t in range(d):
                total[t] += value * codewords[slot, t]


class _Synthesis:
    """``F z`` for a batch of sparse estimates from codewords gathered once and kept.

    Sparse rows are summed codeword by codeword in index order (the same bits whatever
    the batch); rows with more than ``1/DENSE_ROW`` non-zeros go to the operator's own
    ``synthesize``. Which way a row goes depends on the row alone.
    """

    def __init__(self, dictionary: Dictionary) -> None:
        self.dictionary = dictionary
        self.slots = np.full(dictionary.n, -1, dtype=np.int64)
        self.codewords = np.empty((0, dictionary.d))
        self.count = 0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        batch, n = points.shape
        counts = np.empty(batch, dtype=np.int64)
        _supports(points, counts)
        dense = counts * DENSE_ROW > n
        out = np.empty((batch, self.dictionary.d))
        if dense.any():
            out[dense] = self.dictionary.synthesize(points[dense])
        sparse = np.flatnonzero(~dense)
        if sparse.size:
            self._gather(np.flatnonzero(np.any(points[sparse] != 0, axis=0)))
            part = np.empty((sparse.size, self.dictionary.d))
            _sum_codewords(points, sparse, self.slots, self.codewords, part)
            out[sparse] = part
        return out

    def _gather(self, used: np.ndarray) -> None:
        new = used[self.slots[used] < 0]
        if new.size == 0:
            return
        if (self.count + new.size) * self.dictionary.d * 8 > CACHE_BYTES:
            self.slots[:] = -1
            self.count = 0
            new = used
        need = self.count + new.size
        if need > self.codewords.shape[0]:
            grown = np.empty((max(need, 2 * self.codewords.shape[0]), self.dictionary.d))
            grown[: self.count] = self.codewords[: self.count]
            self.codewords = grown
        self.codewords[self.count:need] = self.dictionary.columns(new).T
        self.slots[new] = np.arange(self.count, need)
        self.count = need


def _parameters(lam_ratio: float, max_iter: int, continuation: float) -> tuple[Param, ...]:
    """The parameters of both decoders, with each one's tuned defaults."""
    return (
        Param("lam_ratio", float, lam_ratio,
              "λ as a fraction of max_i |⟨f_i, x⟩| (the smallest λ whose solution is 0)",
              minimum=1e-6, maximum=1.0),
        Param("noise_lam", float, 0.5,
              "with noise σ > 0, λ is at least noise_lam · σ · √(2 ln N)", minimum=0.0),
        Param("nonnegative", bool, False, "constrain the solution to y ≥ 0"),
        Param("max_iter", int, max_iter, "iterations, at most (each one correlation of the batch)",
              minimum=1),
        Param("tol", float, 1e-3, "stop when no coefficient moves by more than tol times the largest",
              minimum=0.0, maximum=0.5),
        Param("continuation", float, continuation,
              "λ starts at this fraction of max_i |⟨f_i, x⟩| and shrinks by it per iteration "
              "down to the target (1: start at the target)", minimum=0.01, maximum=1.0),
    )


class _ProximalGradient(Decoder):
    """Proximal gradient on ``½‖x − F y‖² + λ‖y‖₁`` (docs/contract.md §3); subclasses choose acceleration."""

    accelerated = False
    uses_noise = True

    lam_ratio: float
    noise_lam: float
    nonnegative: bool
    max_iter: int
    tol: float
    continuation: float

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> np.ndarray:
        signals = dictionary.subtract_offset(signals)
        steps = grid_steps(signals)
        correlations = dictionary.correlate(snap(signals, steps))
        lams = penalties(correlations, dictionary.n, noise, self.lam_ratio, self.noise_lam)
        solution = self._solve(dictionary, signals, lams, steps, correlations, self.max_iter)
        return top_k_rows(solution, min(k, dictionary.n))

    def solve(self, dictionary: Dictionary, signals: np.ndarray, lam: float | np.ndarray,
              max_iter: int | None = None) -> np.ndarray:
        """The estimate of each signal for the absolute penalty ``lam``: ``(B, N)`` float64.

        ``lam`` is one number or one per signal; ``max_iter`` overrides the parameter of
        the same name (to run to convergence, say). ``decode`` takes the top ``k`` of
        this estimate with ``λ`` from ``lam_ratio``.
        """
        x = np.atleast_2d(np.asarray(signals, dtype=np.float32))
        lams = as_penalties(lam, x.shape[0])
        steps = grid_steps(x)
        correlations = dictionary.correlate(snap(x, steps))
        iterations = self.max_iter if max_iter is None else int(max_iter)
        return self._solve(dictionary, x, lams, steps, correlations, iterations).astype(np.float64)

    def _solve(self, dictionary: Dictionary, signals: np.ndarray, lams: np.ndarray, steps: np.ndarray,
               correlations: np.ndarray, max_iter: int) -> np.ndarray:
        x = np.atleast_2d(np.asarray(signals, dtype=np.float64))
        batch, n = x.shape[0], dictionary.n
        inverse = 1.0 / dictionary.lipschitz()
        largest = np.max(correlations if self.nonnegative else np.abs(correlations), axis=1)
        levels = np.maximum(lams, self.continuation * largest.astype(np.float64))
        out = np.zeros((batch, n), dtype=np.float32)
        # The working arrays hold the unfinished rows only; they are compacted when rows
        # finish, so an iteration never gathers or scatters whole estimates.
        rows = np.arange(batch)
        estimates = np.zeros((batch, n), dtype=np.float32)
        spare = np.empty_like(estimates)
        points = np.zeros_like(estimates) if self.accelerated else estimates
        momentum = np.ones(batch)
        lams = lams.copy()
        synthesize = _Synthesis(dictionary)
        for iteration in range(max_iter):
            if iteration:
                residuals = snap(x - synthesize(points), steps)
                correlations = dictionary.correlate(residuals)
            changes = np.zeros((rows.size, 2))
            # FISTA's extrapolated point overwrites the point it came from; the new
            # estimate goes to a separate buffer because the step reads the old one.
            _step(points, correlations, estimates, inverse, levels, self.nonnegative, steps,
                  self.accelerated, momentum, spare, points, changes)
            estimates, spare = spare, estimates
            if not self.accelerated:
                points = estimates
            # A row stops on its own values only: at its target λ, once no coefficient
            # moved by more than tol times the largest.
            done = (levels <= lams) & (changes[:, 0] <= self.tol * changes[:, 1])
            levels = np.maximum(lams, self.continuation * levels)
            if iteration == max_iter - 1:
                done[:] = True
            if done.any():
                out[rows[done]] = estimates[done]
                keep = ~done
                rows, x, steps, lams, levels, momentum = (
                    rows[keep], x[keep], steps[keep], lams[keep], levels[keep], momentum[keep])
                estimates, spare = estimates[keep], spare[keep]
                points = points[keep] if self.accelerated else estimates
                if rows.size == 0:
                    break
        return out


class Ista(_ProximalGradient):
    """ISTA, proximal gradient on the lasso (docs/contract.md §3), batched over the signals.

    Minimise ``½‖x − F y‖² + λ‖y‖₁`` (``y ≥ 0`` when ``nonnegative``) by
    ``y ← S_{λ/L}(y + Fᵀ(x − F y) / L)`` with ``L = dictionary.lipschitz()`` (an upper
    bound on ``‖F‖₂²``, so every step decreases the objective); ``Ŷ`` = the ``k``
    largest coefficients (ties to the lower index). Each iteration is one synthesis of
    the batch's sparse estimates and one correlation of its residuals. λ as for
    ``lasso-cd``: ``lam_ratio · max_i |⟨f_i, x⟩|``, at least ``noise_lam · σ · √(2 ln N)``
    with noise. Continuation: λ starts at ``continuation · max_i |⟨f_i, x⟩|`` and is
    multiplied by ``continuation`` at every iteration until it reaches the target.
    Stopping rule: a signal stops once, at its target λ, an iteration moves no
    coefficient by more than ``tol`` times the largest, or after ``max_iter``
    iterations. Residuals and estimates are rounded to a grid of ``2^-23`` of the
    signal's L1 norm, so that the operator's sums over a Rademacher dictionary
    are exact, and sparse estimates are synthesised from gathered codewords in index
    order: a signal's result has the same bits whatever its batch.
    """

    name = "ista"
    description = ("Convex: the lasso ½‖x − Fy‖² + λ‖y‖₁ by iterative soft thresholding (ISTA); "
                   "Ŷ = top-k of the estimate.")
    parameters = _parameters(lam_ratio=0.3, max_iter=30, continuation=0.8)


class Fista(_ProximalGradient):
    """FISTA, Beck and Teboulle's accelerated proximal gradient on the lasso (docs/contract.md §3).

    The ISTA step of ``ista`` taken from an extrapolated point
    ``z = y + (t − 1)/t' · (y − y_prev)``, ``t' = (1 + √(1 + 4t²)) / 2``, with adaptive
    restart: a signal's momentum restarts (``t = 1``) whenever its step goes against
    it, ``⟨z − y, y − y_prev⟩ > 0`` (O'Donoghue and Candès), which keeps the fast rate
    when the solution's support settles. λ, continuation, stopping rule and batching
    as for ``ista``.
    """

    name = "fista"
    description = ("Convex: the lasso ½‖x − Fy‖² + λ‖y‖₁ by accelerated proximal gradient (FISTA "
                   "with adaptive restart); Ŷ = top-k of the estimate.")
    accelerated = True
    parameters = _parameters(lam_ratio=0.2, max_iter=40, continuation=0.9)


@hookimpl
def register_decoders(register: Register) -> None:
    register(Ista)
    register(Fista)
