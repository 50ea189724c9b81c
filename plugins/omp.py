"""Orthogonal matching pursuit with an incrementally updated Cholesky factor."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from superposition_harness import Decoder, Dictionary, Param, Register, grid_steps, hookimpl, snap_to_grid

#: A new codeword whose squared distance to the span of the chosen ones is below this
#: (relative to its norm) adds nothing; the signal stops growing its set there.
DEPENDENCE = 1e-10

#: A residual whose norm is below this fraction of its signal's is taken as explained.
EXPLAINED = 1e-9

#: The default number of picks, as a multiple of ``k`` (chosen by measurement: the class's
#: docstring and docs/decoders/greedy.md).
PICKS = 2.0


@njit(cache=True)
def _extend(atoms: np.ndarray, factor: np.ndarray, projections: np.ndarray, signals: np.ndarray,
            new: np.ndarray, step: int, growing: np.ndarray,
            residuals: np.ndarray, coefficients: np.ndarray) -> None:  # pragma: no cover - compiled
    """Add codeword ``new[b]`` to signal ``b``'s set and refit, for every growing ``b``.

    ``factor[b]`` is the Cholesky factor ``L`` of the chosen codewords' Gram matrix
    (``L Lᵀ = A Aᵀ`` for ``A = atoms[b, :step]``); one new row costs a triangular solve,
    not a new factorisation. The least-squares coefficients (``coefficients[b, :step+1]``)
    then come from two triangular solves, and the residual from the refit.
    """
    batch, _, width = atoms.shape
    for b in range(batch):
        if not growing[b]:
            continue
        vector = new[b]
        row = np.empty(step)
        for i in range(step):  # forward solve L w = A new
            total = 0.0
            for r in range(width):
                total += atoms[b, i, r] * vector[r]
            for j in range(i):
                total -= factor[b, i, j] * row[j]
            row[i] = total / factor[b, i, i]
        norm2 = 0.0
        for r in range(width):
            norm2 += vector[r] * vector[r]
        rest = norm2
        for i in range(step):
            rest -= row[i] * row[i]
        if rest <= DEPENDENCE * norm2:
            growing[b] = False
            continue
        for i in range(step):
            factor[b, step, i] = row[i]
        factor[b, step, step] = np.sqrt(rest)
        projection = 0.0
        for r in range(width):
            atoms[b, step, r] = vector[r]
            projection += vector[r] * signals[b, r]
        projections[b, step] = projection
        size = step + 1
        half = np.empty(size)  # L h = Aᵀx, then Lᵀ c = h
        for i in range(size):
            total = projections[b, i]
            for j in range(i):
                total -= factor[b, i, j] * half[j]
            half[i] = total / factor[b, i, i]
        for i in range(size - 1, -1, -1):
            total = half[i]
            for j in range(i + 1, size):
                total -= factor[b, j, i] * coefficients[b, j]
            coefficients[b, i] = total / factor[b, i, i]
        for r in range(width):
            total = signals[b, r]
            for i in range(size):
                total -= coefficients[b, i] * atoms[b, i, r]
            residuals[b, r] = total


class OrthogonalMatchingPursuit(Decoder):
    """Orthogonal matching pursuit (docs/contract.md §3).

    ``k`` greedy steps: pick the codeword with the largest ``⟨f_i, r⟩`` (with
    ``positive=false``, the largest ``|⟨f_i, r⟩|``; ties to the lower index, codewords
    already chosen excluded), then refit ``x`` by least squares
    on all chosen codewords, so the residual ``r`` is orthogonal to each of them. The
    refit updates a Cholesky factor of the chosen codewords' Gram matrix by one row per
    step (a triangular solve), never a fresh solve. A codeword that is numerically a
    combination of the chosen ones (a repeated column, say) ends that signal's
    selection early. The decoded set is the chosen codewords. Each step is one product
    of the batch's residuals with the dictionary; the small per-signal algebra is
    compiled.

    Tuning (N = 4096, k = 16, Rademacher, 256 trials per probe): signed picks reach
    d*(0.95) = 191 [181, 217], absolute picks 207 [186, 229]; unit-step ``mp`` reaches
    185 [167, 203]. OMP does not beat MP here: MP's unit step subtracts exactly the
    known coefficient, whereas the least-squares refit also projects away the parts
    of the codewords not yet chosen that lie in the span of the chosen ones.
    """

    name = "omp"
    description = ("Iterative: greedy picks on the residual's correlations with a least-squares refit "
                   "after each; the k largest coefficients are decoded.")
    positive: bool
    picks: float

    parameters = (
        Param("positive", bool, True,
              "pick the largest ⟨f_i, r⟩ (the standard problem's coefficients are +1); "
              "false picks the largest |⟨f_i, r⟩|, the textbook rule"),
        Param("picks", float, PICKS,
              "selections as a multiple of k (⌈picks·k⌉, at most d); the k largest least-squares "
              "coefficients of the chosen codewords are decoded", minimum=1.0, maximum=64.0),
    )

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> list[np.ndarray]:
        x = np.ascontiguousarray(dictionary.subtract_offset(signals), dtype=np.float64)
        batch, width = x.shape
        steps = min(math.ceil(self.picks * k - 1e-9), width, dictionary.n)
        atoms = np.zeros((batch, steps, width))
        factor = np.zeros((batch, steps, steps))
        projections = np.zeros((batch, steps))
        coefficients = np.zeros((batch, steps))
        chosen = np.zeros((batch, steps), dtype=np.int64)
        sizes = np.zeros(batch, dtype=np.int64)
        growing = np.ones(batch, dtype=np.bool_)
        residuals = x.copy()
        scale = np.linalg.norm(x, axis=1)
        rows = np.arange(batch)
        for step in range(steps):
            # The signal itself, then each residual rounded to its power-of-two grid
            # (2^-23 of its L1 norm), where the operator's products are exact and fast.
            scores = dictionary.correlate(x if step == 0 else snap_to_grid(residuals, grid_steps(residuals)))
            if not self.positive:
                np.abs(scores, out=scores)
            scores[rows[:, None], chosen[:, :step]] = -np.inf
            best = scores.argmax(axis=1)
            new = np.ascontiguousarray(dictionary.columns(best).T, dtype=np.float64)
            before = growing.copy()
            _extend(atoms, factor, projections, x, new, step, growing, residuals, coefficients)
            added = before & growing
            chosen[added, step] = best[added]
            sizes[added] += 1
            if step + 1 >= k:
                # Past k picks, a signal the chosen codewords already explain exactly
                # gains nothing from more: its coefficients are final.
                growing &= np.linalg.norm(residuals, axis=1) > EXPLAINED * scale
            if not growing.any():
                break
        return [self._largest(chosen[b, : sizes[b]], coefficients[b, : sizes[b]], k) for b in range(batch)]

    def _largest(self, chosen: np.ndarray, coefficients: np.ndarray, k: int) -> np.ndarray:
        """The chosen codewords with the ``k`` largest coefficients (by magnitude with
        ``positive=false``), first chosen first among equals."""
        if chosen.size <= k:
            return chosen
        values = coefficients if self.positive else np.abs(coefficients)
        return np.sort(chosen[np.argsort(-values, kind="stable")[:k]])


@hookimpl
def register_decoders(register: Register) -> None:
    register(OrthogonalMatchingPursuit)
