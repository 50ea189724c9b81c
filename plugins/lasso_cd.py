"""The lasso solved by cyclic coordinate descent over growing working sets (the blog post's method)."""

from __future__ import annotations

import numpy as np
from numba import njit
from superposition_harness import (
    Decoder,
    Dictionary,
    Param,
    Register,
    grid_steps,
    hookimpl,
    keep_largest,
    top_k_rows,
)
from superposition_harness import snap_to_grid as snap

from ._penalty import as_penalties, penalties

#: A round adds to a working set at most this many violators, or as many as it has
#: non-zero coefficients if that is more.
GROW_MIN = 32

#: Rounds of (KKT check, coordinate descent) per signal, at most.
MAX_ROUNDS = 64

#: Working sets up to this size keep their Gram matrix (at most 8 MiB per signal);
#: larger ones recompute ⟨f_j, r⟩ at every move instead.
GRAM_LIMIT = 1024

#: Continuation: λ starts at this fraction of the smallest λ whose solution is zero and
#: is multiplied by it at each stage of the path, down to the target.
PATH_STEP = 0.2


# -- compiled kernels ------------------------------------------------------------------
# No kernel uses fastmath: every sum runs in the order written, so a signal's solution
# has the same bits on every machine, whatever else is in its batch. None starts
# threads either: on a small machine their idle spinning and BLAS's slow each other
# down, and the batch's products already use BLAS's threads.


@njit(cache=True)
def _dot(a: np.ndarray, b: np.ndarray) -> float:  # pragma: no cover - compiled
    # Four running sums in a fixed order: faster than one, and still the same bits everywhere.
    n = a.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    i = 0
    while i + 4 <= n:
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
        i += 4
    while i < n:
        s0 += a[i] * b[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def _move(z: float, lam: float, norm2: float, nonnegative: bool) -> float:  # pragma: no cover
    """The minimiser of ``½ norm2 y² − z y + λ|y|`` (over ``y ≥ 0`` when non-negative)."""
    if z > lam:
        return (z - lam) / norm2
    if z < -lam and not nonnegative:
        return (z + lam) / norm2
    return 0.0


@njit(cache=True)
def _cycle_gram(gram: np.ndarray, g: np.ndarray, w: np.ndarray, lam: float, nonnegative: bool,
                tol: float, max_sweeps: int) -> bool:  # pragma: no cover - compiled
    """Cyclic coordinate descent on ``g_j = ⟨f_j, r⟩`` kept up to date through the Gram matrix.

    As in glmnet, a full sweep is followed by sweeps over the non-zero coordinates only
    until they settle, then by a full sweep again; the descent has converged when a
    full sweep moves no coefficient by more than ``tol`` times the largest one.
    """
    m = w.shape[0]
    full = True
    for _ in range(max_sweeps):
        change = 0.0
        largest = 0.0
        for j in range(m):
            old = w[j]
            norm2 = gram[j, j]
            if (not full and old == 0.0) or norm2 <= 0.0:
                continue
            new = _move(g[j] + norm2 * old, lam, norm2, nonnegative)
            delta = new - old
            if delta != 0.0:
                row = gram[j]
                for i in range(m):
                    g[i] -= delta * row[i]
                w[j] = new
                change = max(change, abs(delta))
            largest = max(largest, abs(new))
        if change <= tol * largest:
            if full:
                return True
            full = True
        else:
            full = False
    return False


@njit(cache=True)
def _cycle_residual(block: np.ndarray, w: np.ndarray, r: np.ndarray, lam: float, nonnegative: bool,
                    tol: float, max_sweeps: int) -> bool:  # pragma: no cover - compiled
    """The same descent with ``⟨f_j, r⟩`` recomputed at every move, for working sets too
    large to keep their Gram matrix."""
    m = w.shape[0]
    norms2 = np.empty(m)
    for j in range(m):
        norms2[j] = _dot(block[j], block[j])
    full = True
    for _ in range(max_sweeps):
        change = 0.0
        largest = 0.0
        for j in range(m):
            old = w[j]
            if (not full and old == 0.0) or norms2[j] <= 0.0:
                continue
            f = block[j]
            new = _move(_dot(f, r) + norms2[j] * old, lam, norms2[j], nonnegative)
            delta = new - old
            if delta != 0.0:
                for t in range(r.shape[0]):
                    r[t] -= delta * f[t]
                w[j] = new
                change = max(change, abs(delta))
            largest = max(largest, abs(new))
        if change <= tol * largest:
            if full:
                return True
            full = True
        else:
            full = False
    return False


@njit(cache=True)
def _fill_gram(block: np.ndarray, gram: np.ndarray, old: np.ndarray,
               kept: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Fill ``gram`` for the working set ``block`` and return ``block``'s transpose.

    The first ``len(kept)`` codewords are the members kept from the last round, at
    positions ``kept`` of its Gram matrix ``old`` (empty when there was none): their
    entries are copied. Only the rows of the new members are computed, as contiguous
    passes over the transposed block (vectorised, each entry still summed over the
    coordinates in order, so ``gram[i, j]`` and ``gram[j, i]`` have the same bits).
    """
    m, d = block.shape
    columns = np.empty((d, m))
    for j in range(m):
        for t in range(d):
            columns[t, j] = block[j, t]
    fresh = 0
    if old.shape[0] > 0:
        fresh = kept.shape[0]
        for a in range(fresh):
            for c in range(fresh):
                gram[a, c] = old[kept[a], kept[c]]
    for p in range(fresh, m):
        row = gram[p]
        row[:] = 0.0
        for t in range(d):
            v = columns[t, p]
            column = columns[t]
            for q in range(m):
                row[q] += v * column[q]
        for q in range(fresh):
            gram[q, p] = row[q]
    return columns


@njit(cache=True)
def _coordinate_descent(codewords: np.ndarray, offsets: np.ndarray, coefficients: np.ndarray,
                        residuals: np.ndarray, lams: np.ndarray, nonnegative: bool, tol: float,
                        max_sweeps: int, old_grams: np.ndarray, old_offsets: np.ndarray,
                        old_sizes: np.ndarray, kept: np.ndarray, kept_offsets: np.ndarray,
                        grams: np.ndarray, gram_offsets: np.ndarray,
                        converged: np.ndarray) -> None:  # pragma: no cover - compiled
    """One round of cyclic coordinate descent on every signal's working set, in place.

    Signal ``b`` owns the codewords ``codewords[offsets[b]:offsets[b+1]]`` (one per
    row, in the order of its cycle), their coefficients, its residual ``r = x − F y``
    and, when ``gram_offsets`` gives it room, its Gram matrix (filled here from last
    round's, ``old_grams``, and returned for the next). A move is
    ``y_j ← S_λ(⟨f_j, r⟩ + ‖f_j‖² y_j) / ‖f_j‖²`` (S the soft threshold, one-sided when
    non-negative); a repeated codeword only shares the coefficient with its twin.
    """
    for b in range(residuals.shape[0]):
        lo = offsets[b]
        hi = offsets[b + 1]
        m = hi - lo
        block = codewords[lo:hi]
        w = coefficients[lo:hi]
        r = residuals[b]
        if m == 0:
            converged[b] = True
        elif gram_offsets[b + 1] - gram_offsets[b] == m * m:
            gram = grams[gram_offsets[b]:gram_offsets[b + 1]].reshape((m, m))
            size = old_sizes[b]
            old = old_grams[old_offsets[b]:old_offsets[b + 1]].reshape((size, size))
            columns = _fill_gram(block, gram, old, kept[kept_offsets[b]:kept_offsets[b + 1]])
            g = np.zeros(m)
            for t in range(r.shape[0]):
                v = r[t]
                column = columns[t]
                for j in range(m):
                    g[j] += v * column[j]
            start = w.copy()
            converged[b] = _cycle_gram(gram, g, w, lams[b], nonnegative, tol, max_sweeps)
            for j in range(m):
                delta = w[j] - start[j]
                if delta != 0.0:
                    f = block[j]
                    for t in range(r.shape[0]):
                        r[t] -= delta * f[t]
        else:
            converged[b] = _cycle_residual(block, w, r, lams[b], nonnegative, tol, max_sweeps)


@njit(cache=True)
def _violators(correlations: np.ndarray, rows: np.ndarray, lams: np.ndarray, members: np.ndarray,
               member_offsets: np.ndarray, nonnegative: bool, tol: float, limits: np.ndarray,
               out: np.ndarray, counts: np.ndarray) -> None:  # pragma: no cover - compiled
    """The codewords outside each working set that break the lasso's optimality conditions.

    At a solution every codeword with ``y_i = 0`` has ``|⟨f_i, r⟩| ≤ λ`` (``⟨f_i, r⟩ ≤ λ``
    when non-negative). For the signal in row ``rows[b]`` of ``correlations``, row ``b``
    of ``out`` receives, in increasing order, the at most ``limits[b]`` codewords outside
    its working set that exceed ``λ(1 + tol)`` by the most (ties to the lower index);
    ``counts[b]`` says how many.
    """
    n = correlations.shape[1]
    for b in range(rows.shape[0]):
        values = correlations[rows[b]]
        inside = np.zeros(n, dtype=np.bool_)
        for t in range(member_offsets[b], member_offsets[b + 1]):
            inside[members[t]] = True
        bound = lams[b] * (1.0 + tol)
        found = 0
        for i in range(n):
            c = values[i]
            if not inside[i] and (c > bound or (not nonnegative and -c > bound)):
                found += 1
        index = np.empty(found, dtype=np.int64)
        score = np.empty(found)
        found = 0
        for i in range(n):
            c = values[i]
            if not inside[i] and (c > bound or (not nonnegative and -c > bound)):
                index[found] = i
                score[found] = abs(c)
                found += 1
        # The largest violations, ties to the lower index.
        found = keep_largest(score, index, limits[b])
        counts[b] = found
        out[b, :found] = index[:found]


class LassoCD(Decoder):
    """The lasso by cyclic coordinate descent (docs/contract.md §3), as in the blog post.

    Minimise ``½‖x − F y‖² + λ‖y‖₁`` (with ``y ≥ 0`` when ``nonnegative``) for each
    signal; decode ``Ŷ`` = the ``k`` largest coefficients of the solution
    (``top_k_rows``: ties, zeros included, to the lower index). The standard problem's
    coefficients are +1, so the largest, not the largest in magnitude.

    ``λ = lam_ratio · max_i |⟨f_i, x⟩|`` per signal (scale-free: ``λ ≥ max |⟨f_i, x⟩|``
    gives ``y = 0``); with noise ``σ > 0``, at least ``noise_lam · σ · √(2 ln N)``.

    No ``N × N`` Gram matrix, and no pass over all ``N`` codewords per move. Each
    round computes the correlations of the whole batch's residuals with the dictionary
    in one product and checks the optimality (KKT) conditions
    ``|⟨f_i, r⟩| ≤ λ(1 + tol)`` of the codewords outside each signal's working set;
    the working set keeps its non-zero members and gains the worst violators (at most
    32, or as many as it has non-zero members); then compiled cyclic coordinate
    descent runs on the working set alone, from its gathered codewords, their Gram
    matrix (kept from round to round) and the residual. λ follows a short path
    (continuation): each signal starts at 0.2 of the smallest λ whose solution is zero
    and moves down by factors of 0.2 to its target once its check passes.

    Stopping rule: a signal stops when, at its target λ, its coordinate descent has
    converged (a full sweep moves no coefficient by more than ``tol`` times the
    largest) and the check that follows finds no violator; or after 64 rounds. A
    round's descent stops after ``max_sweeps`` sweeps; the signal then goes on to the
    next round. Every decision uses the signal's own values only, so its solution does
    not depend on the batch.
    """

    name = "lasso-cd"
    description = ("Convex: the lasso ½‖x − Fy‖² + λ‖y‖₁ by cyclic coordinate descent on "
                   "working sets; Ŷ = top-k of the solution.")
    uses_noise = True
    lam_ratio: float
    noise_lam: float
    nonnegative: bool
    tol: float
    max_sweeps: int

    parameters = (
        Param("lam_ratio", float, 0.05,
              "λ as a fraction of max_i |⟨f_i, x⟩| (the smallest λ whose solution is 0)",
              minimum=1e-6, maximum=1.0),
        Param("noise_lam", float, 0.5,
              "with noise σ > 0, λ is at least noise_lam · σ · √(2 ln N)", minimum=0.0),
        Param("nonnegative", bool, False, "constrain the solution to y ≥ 0"),
        Param("tol", float, 1e-3,
              "relative tolerance of the KKT check and of a coordinate-descent sweep",
              minimum=1e-12, maximum=0.5),
        Param("max_sweeps", int, 300, "coordinate-descent sweeps per round, at most", minimum=1),
    )

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> np.ndarray:
        signals = dictionary.subtract_offset(signals)
        steps = grid_steps(signals)
        correlations = dictionary.correlate(snap(signals, steps))
        lams = penalties(correlations, dictionary.n, noise, self.lam_ratio, self.noise_lam)
        solution = self._solve(dictionary, signals, lams, steps, correlations)
        return top_k_rows(solution, min(k, dictionary.n))

    def solve(self, dictionary: Dictionary, signals: np.ndarray,
              lam: float | np.ndarray) -> np.ndarray:
        """The lasso solution of each signal for the absolute penalty ``lam``: ``(B, N)`` float64.

        ``lam`` is one number or one per signal. ``decode`` takes the top ``k`` of this
        solution with ``λ`` from ``lam_ratio``; this method is public so that the
        solution itself can be checked (for instance against scikit-learn's ``Lasso``
        with ``alpha = λ / d``) and reused.
        """
        x = np.atleast_2d(np.asarray(signals, dtype=np.float32))
        lams = as_penalties(lam, x.shape[0])
        steps = grid_steps(x)
        return self._solve(dictionary, x, lams, steps, dictionary.correlate(snap(x, steps)))

    def _solve(self, dictionary: Dictionary, signals: np.ndarray, lams: np.ndarray,
               steps: np.ndarray, correlations: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(signals, dtype=np.float64))
        batch = x.shape[0]
        state = _WorkingSets(batch, x.copy())
        largest = np.max(correlations if self.nonnegative else np.abs(correlations), axis=1)
        levels = np.maximum(lams, PATH_STEP * largest.astype(np.float64))
        settled = np.ones(batch, dtype=np.bool_)
        pending = np.arange(batch)
        for _ in range(MAX_ROUNDS):
            found = self._check(correlations, pending, levels, lams, settled, state)
            going = np.array([found[row].size > 0 or not settled[b] for row, b in enumerate(pending)],
                             dtype=np.bool_)
            found = [added for added, go in zip(found, going, strict=True) if go]
            pending = pending[going]
            if pending.size == 0:
                break
            state.grow(pending, found)
            settled[pending] = state.descend(dictionary, pending, levels, self.nonnegative, self.tol,
                                             self.max_sweeps)
            correlations = dictionary.correlate(snap(state.residuals[pending], steps[pending]))
        return state.solution(dictionary.n)

    def _check(self, correlations: np.ndarray, pending: np.ndarray, levels: np.ndarray,
               lams: np.ndarray, settled: np.ndarray, state: _WorkingSets) -> list[np.ndarray]:
        """The violators of each pending signal at its level; a signal whose descent settled with
        none moves down the path (its members then need a new descent at the new level)."""
        found = [np.empty(0, dtype=np.int64)] * pending.size
        check = np.arange(pending.size)
        while check.size:
            signals = pending[check]
            limits = np.maximum(GROW_MIN, [np.count_nonzero(state.values[b]) for b in signals])
            out = np.zeros((signals.size, int(limits.max())), dtype=np.int64)
            counts = np.zeros(signals.size, dtype=np.int64)
            members, offsets = state.flat_members(signals)
            _violators(correlations, check, levels[signals], members, offsets, self.nonnegative,
                       self.tol, limits.astype(np.int64), out, counts)
            for row, added, count in zip(check, out, counts, strict=True):
                found[row] = added[:count].copy()
            advance = (counts == 0) & settled[signals] & (levels[signals] > lams[signals])
            moved = signals[advance]
            levels[moved] = np.maximum(lams[moved], PATH_STEP * levels[moved])
            settled[moved] = False
            check = check[advance]
        return found


class _WorkingSets:
    """Each signal's working set: members in cycle order, their codewords (one per row),
    coefficients and Gram matrix, and the signal's residual."""

    def __init__(self, batch: int, residuals: np.ndarray) -> None:
        self.residuals = residuals
        self.members = [np.empty(0, dtype=np.int64) for _ in range(batch)]
        self.values = [np.empty(0, dtype=np.float64) for _ in range(batch)]
        self.grams = [np.empty((0, 0)) for _ in range(batch)]
        self.codewords = [np.empty((0, residuals.shape[1])) for _ in range(batch)]
        self.kept = [np.empty(0, dtype=np.int64) for _ in range(batch)]
        self.added = [np.empty(0, dtype=np.int64) for _ in range(batch)]

    def flat_members(self, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The members of ``signals``, concatenated, and the offsets of each signal's part."""
        return _flatten([self.members[b] for b in signals], np.int64)

    def grow(self, signals: np.ndarray, found: list[np.ndarray]) -> None:
        """Keep each signal's non-zero members (pruning the others) and append its violators."""
        for b, added in zip(signals, found, strict=True):
            kept = np.flatnonzero(self.values[b])
            self.kept[b] = kept
            self.added[b] = added
            self.members[b] = np.concatenate([self.members[b][kept], added])
            self.values[b] = np.concatenate([self.values[b][kept], np.zeros(added.size)])

    def descend(self, dictionary: Dictionary, signals: np.ndarray, levels: np.ndarray,
                nonnegative: bool, tol: float, max_sweeps: int) -> np.ndarray:
        """One round of coordinate descent for ``signals``; whether each converged."""
        # Only the codewords that joined this round are gathered; the kept ones are reused.
        added, added_offsets = _flatten([self.added[b] for b in signals], np.int64)
        joined = dictionary.columns(added).T
        for row, b in enumerate(signals):
            self.codewords[b] = np.concatenate([
                self.codewords[b][self.kept[b]], joined[added_offsets[row]:added_offsets[row + 1]]])
        codewords, _ = _flatten([self.codewords[b] for b in signals], np.float64)
        offsets = np.zeros(signals.size + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([self.members[b].size for b in signals])
        coefficients, _ = _flatten([self.values[b] for b in signals], np.float64)
        residuals = np.ascontiguousarray(self.residuals[signals])
        sizes = np.diff(offsets)
        old_grams, old_offsets = _flatten([self.grams[b].reshape(-1) for b in signals], np.float64)
        old_sizes = np.array([self.grams[b].shape[0] for b in signals], dtype=np.int64)
        kept, kept_offsets = _flatten([self.kept[b] for b in signals], np.int64)
        room = np.where(sizes <= GRAM_LIMIT, sizes * sizes, 0)
        gram_offsets = np.concatenate([[0], np.cumsum(room)]).astype(np.int64)
        grams = np.empty(int(gram_offsets[-1]))
        converged = np.zeros(signals.size, dtype=np.bool_)
        _coordinate_descent(codewords, offsets, coefficients, residuals, levels[signals], nonnegative,
                            tol, max_sweeps, old_grams, old_offsets, old_sizes, kept, kept_offsets,
                            grams, gram_offsets, converged)
        self.residuals[signals] = residuals
        for row, b in enumerate(signals):
            self.values[b] = coefficients[offsets[row]:offsets[row + 1]]
            size = sizes[row] if room[row] else 0
            self.grams[b] = grams[gram_offsets[row]:gram_offsets[row + 1]].reshape(size, size)
        return converged

    def solution(self, n: int) -> np.ndarray:
        """The coefficients as a dense ``(B, N)`` array."""
        out = np.zeros((len(self.members), n))
        for b, (members, values) in enumerate(zip(self.members, self.values, strict=True)):
            out[b, members] = values
        return out


def _flatten(parts: list[np.ndarray], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """The parts concatenated along their first axis, and where each one starts (in rows)."""
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([part.shape[0] for part in parts])
    if not parts:
        return np.empty(0, dtype=dtype), offsets
    return np.ascontiguousarray(np.concatenate(parts), dtype=dtype), offsets


@hookimpl
def register_decoders(register: Register) -> None:
    register(LassoCD)
