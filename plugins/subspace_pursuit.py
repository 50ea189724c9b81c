"""Subspace pursuit (Dai and Milenkovic, 2009): a greedy decoder that takes picks back."""

from __future__ import annotations

import numpy as np
from superposition_harness import Decoder, Dictionary, Param, Register, grid_steps, hookimpl, snap_to_grid

#: A residual whose norm is below this fraction of its signal's is taken as explained.
EXPLAINED = 1e-9


class SubspacePursuit(Decoder):
    """Subspace pursuit (docs/decoders/greedy.md).

    Start from the ``k`` features most correlated with ``x`` and their least-squares fit.
    Then, each iteration: add the ``k`` features most correlated with the residual (none
    already held), fit ``x`` on those ``2k`` by least squares, keep the ``k`` with the
    largest coefficients, and fit again on them. A set whose residual is not smaller than
    the last one's ends the search, which keeps the last; so does a residual that
    vanishes, or ``iterations`` iterations. Unlike ``omp``, a pick can be taken back.
    With ``positive=true`` (the default) features are ranked by their signed correlation
    and coefficient, since the standard problem's coefficients are ``+1``; ``false`` ranks
    by magnitude, the textbook rule. Each residual is rounded to its power-of-two grid
    before it is correlated (as in ``omp``), so each signal's answer does not depend on
    the batch; the ``2k``-column fits are solved per signal.
    """

    name = "sp"
    description = ("Iterative: subspace pursuit, k picks refined by adding k more, refitting and "
                   "keeping the k largest coefficients.")
    positive: bool
    iterations: int

    parameters = (
        Param("positive", bool, True,
              "rank features by signed correlation and coefficient (the standard problem's "
              "coefficients are +1); false ranks by magnitude, the textbook rule"),
        Param("iterations", int, 50, "at most this many refinements", minimum=1, maximum=10_000),
    )

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> list[np.ndarray]:
        x = np.ascontiguousarray(dictionary.subtract_offset(signals), dtype=np.float64)
        batch, width = x.shape
        k = min(k, dictionary.n, max(1, width // 2))
        scale = np.linalg.norm(x, axis=1)
        held = self._top(dictionary.correlate(x), k)
        residual, fitted = self._fit(dictionary, x, held)
        norm = np.linalg.norm(residual, axis=1)
        going = norm > EXPLAINED * scale
        for _ in range(self.iterations):
            if not going.any():
                break
            rows = np.flatnonzero(going)
            scores = dictionary.correlate(snap_to_grid(residual[rows], grid_steps(residual[rows])))
            if not self.positive:
                np.abs(scores, out=scores)
            np.put_along_axis(scores, held[rows], -np.inf, axis=1)
            wide = np.concatenate([held[rows], self._top(scores, k, signed=True)], axis=1)
            _, coefficients = self._fit(dictionary, x[rows], wide)
            ranks = coefficients if self.positive else np.abs(coefficients)
            order = np.argsort(-ranks, axis=1, kind="stable")[:, :k]
            narrow = np.sort(np.take_along_axis(wide, order, axis=1), axis=1)
            new_residual, new_fitted = self._fit(dictionary, x[rows], narrow)
            new_norm = np.linalg.norm(new_residual, axis=1)
            better = new_norm < norm[rows]
            keep = rows[better]
            held[keep], residual[keep], fitted[keep], norm[keep] = (
                narrow[better], new_residual[better], new_fitted[better], new_norm[better])
            going[rows[~better]] = False
            going[keep] = norm[keep] > EXPLAINED * scale[keep]
        return [np.sort(row) for row in held]

    def _top(self, scores: np.ndarray, k: int, signed: bool = False) -> np.ndarray:
        """Each row's ``k`` largest scores (by magnitude with ``positive=false`` unless
        ``signed``), first index first among equals."""
        ranked = scores if self.positive or signed else np.abs(scores)
        return np.argsort(-ranked, axis=1, kind="stable")[:, :k]

    @staticmethod
    def _fit(dictionary: Dictionary, x: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each signal's least-squares fit on its own columns: the residual and the coefficients."""
        batch, m = support.shape
        columns = dictionary.columns(support.reshape(-1)).astype(np.float64)  # (d, batch·m)
        atoms = columns.T.reshape(batch, m, -1)  # (batch, m, d)
        coefficients = np.empty((batch, m))
        residual = np.empty_like(x)
        for b in range(batch):
            solution, *_ = np.linalg.lstsq(atoms[b].T, x[b], rcond=None)
            coefficients[b] = solution
            residual[b] = x[b] - solution @ atoms[b]
        return residual, coefficients


@hookimpl
def register_decoders(register: Register) -> None:
    register(SubspacePursuit)
