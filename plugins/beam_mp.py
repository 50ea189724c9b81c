"""Matching pursuit over a beam of candidate sets, verified by the exact residual."""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from superposition_harness import Decoder, Dictionary, Param, Register, hookimpl

#: The most memory the beam's correlations may hold at once (beyond the batch's arrays);
#: signals are decoded in chunks that fit, and the beam is narrowed where one signal alone
#: would not: at most 640 sets at N = 4096, 40 at N = 65536, 2 at N = 2^20. It bounds
#: the time too, which grows with the beam's width times N.
BEAM_BYTES = 40 << 20

#: Bytes per beam entry and feature: the correlations twice (current and next step, float64:
#: float32 sums would break ties of the exact arithmetic that ``mp`` keeps).
_BYTES_PER_ENTRY = 16

#: The most memory the Gram rows kept for reuse may take (see :class:`GramRows`); there is
#: always room for one step's rows.
ROW_BYTES = 64 << 20

#: The first width tried; each retry of a signal that is not verified is 4× wider.
FIRST_WIDTH = 8

#: A noiseless residual counts as zero below this fraction of the signal's energy. The
#: signals are float32, so the true set leaves about 1e-15 of it; on a Rademacher
#: dictionary any other set leaves at least 4 / (d·k) of it.
EXACT = 1e-9

#: A noisy residual is explained when its energy is within this many standard deviations
#: of the noise's (σ²·d, with standard deviation σ²·√(2d)).
NOISE_SLACK = 3.0


@njit(cache=True, inline="always")
def _key(index: np.int64) -> np.uint64:  # pragma: no cover - compiled
    """A 64-bit key of a feature (splitmix64); a set's key is the sum of its features' keys."""
    z = np.uint64(index) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, parallel=True)
def _select(top_value: np.ndarray, top_index: np.ndarray, energy: np.ndarray, keys: np.ndarray,
            live: np.ndarray, width: int, parent: np.ndarray, pick: np.ndarray, new_energy: np.ndarray,
            new_keys: np.ndarray, new_live: np.ndarray) -> None:  # pragma: no cover - compiled
    """One step of the beam for every signal: each live set offers the features of its top
    list (its ``branch`` largest correlations with its residual, none it holds); adding
    feature ``j`` to a set with residual ``r`` leaves ``‖r − f_j‖² = ‖r‖² − 2⟨f_j, r⟩ + 1``.
    The ``width`` distinct sets of least residual energy survive, in increasing order of it
    (ties: first offered)."""
    signals, _, branch = top_value.shape
    for t in prange(signals):
        count = live[t] * branch
        score = np.empty(count)
        from_set = np.empty(count, dtype=np.int64)
        feature = np.empty(count, dtype=np.int64)
        made = 0
        for s in range(live[t]):
            for c in range(branch):
                if top_index[t, s, c] < 0:
                    continue
                score[made] = energy[t, s] - 2.0 * top_value[t, s, c] + 1.0
                from_set[made] = s
                feature[made] = top_index[t, s, c]
                made += 1
        order = np.argsort(score[:made], kind="mergesort")
        kept = 0
        for o in order:
            key = keys[t, from_set[o]] + _key(feature[o])
            seen = False
            for a in range(kept):
                if new_keys[t, a] == key:
                    seen = True
                    break
            if seen:
                continue
            parent[t, kept] = from_set[o]
            pick[t, kept] = feature[o]
            new_energy[t, kept] = score[o]
            new_keys[t, kept] = key
            kept += 1
            if kept == width:
                break
        new_live[t] = kept


@njit(cache=True, inline="always")
def _offer(value: float, i: int, held: np.ndarray, count: int, top_value: np.ndarray,
           top_index: np.ndarray) -> None:  # pragma: no cover - compiled
    """Put feature ``i`` with correlation ``value`` into a descending top list, unless held."""
    branch = top_value.size
    if value <= top_value[branch - 1]:
        return
    for p in range(count):
        if held[p] == i:
            return
    place = branch - 1
    while place > 0 and top_value[place - 1] < value:
        top_value[place] = top_value[place - 1]
        top_index[place] = top_index[place - 1]
        place -= 1
    top_value[place] = value
    top_index[place] = i


@njit(cache=True, parallel=True)
def _first(corr: np.ndarray, top_value: np.ndarray, top_index: np.ndarray) -> None:  # pragma: no cover
    """The top list of each signal's empty set: its largest correlations."""
    signals, _, n = corr.shape
    held = np.empty(0, dtype=np.int64)
    for t in prange(signals):
        top_value[t, 0, :] = -np.inf
        top_index[t, 0, :] = -1
        for i in range(n):
            _offer(corr[t, 0, i], i, held, 0, top_value[t, 0], top_index[t, 0])


@njit(cache=True, parallel=True)
def _advance(corr: np.ndarray, new_corr: np.ndarray, chosen: np.ndarray, new_chosen: np.ndarray,
             parent: np.ndarray, pick: np.ndarray, live: np.ndarray, rows: np.ndarray, row_of: np.ndarray,
             step: int, top_value: np.ndarray, top_index: np.ndarray) -> None:  # pragma: no cover
    """The surviving sets' features, their correlations ``⟨f_i, r⟩ − ⟨f_i, f_j⟩`` and, in the
    same pass, their top lists for the next step."""
    signals, width, n = corr.shape
    for flat in prange(signals * width):
        t = flat // width
        a = flat % width
        if a < live[t]:
            s = parent[t, a]
            for p in range(step):
                new_chosen[t, a, p] = chosen[t, s, p]
            new_chosen[t, a, step] = pick[t, a]
            held = new_chosen[t, a]
            row = rows[row_of[t, a]]
            source = corr[t, s]
            target = new_corr[t, a]
            values = top_value[t, a]
            indices = top_index[t, a]
            values[:] = -np.inf
            indices[:] = -1
            for i in range(n):
                value = source[i] - row[i]
                target[i] = value
                _offer(value, i, held, step + 1, values, indices)


class GramRows:
    """The Gram rows ``Fᵀ f_j`` one decode call has computed, kept for its later steps,
    sets and retries (a feature is picked by many sets: at N = 4096, k = 16 a call asks
    for each row about ten times). At most ``capacity`` rows are kept; when a step needs
    more than are free, the store is emptied first. The rows are the dictionary's, so what
    is kept changes the time only, never a decoded set."""

    def __init__(self, n: int, capacity: int) -> None:
        self.rows = np.empty((capacity, n), dtype=np.float32)
        self.slot = np.full(n, -1, dtype=np.int64)
        self.used = 0

    def slots(self, dictionary: Dictionary, features: np.ndarray) -> np.ndarray:
        """The slot of each of ``features`` (any shape), computing the rows not yet kept."""
        wanted = np.unique(features)
        missing = wanted[self.slot[wanted] < 0]
        if self.used + missing.size > len(self.rows):
            self.slot[:] = -1
            self.used = 0
            missing = wanted
        if missing.size:
            self.rows[self.used:self.used + missing.size] = dictionary.gram_rows(missing)
            self.slot[missing] = np.arange(self.used, self.used + missing.size)
            self.used += missing.size
        return self.slot[features]


def chunk_of(width: int, n: int) -> int:
    """Signals searched at once with a beam of ``width``: as many as the budget holds."""
    return max(1, BEAM_BYTES // (_BYTES_PER_ENTRY * width * n))


class BeamMatchingPursuit(Decoder):
    """Unit-step matching pursuit over a beam of sets, each answer verified by its residual
    (docs/decoders/greedy.md).

    ``mp`` keeps one set and adds, ``k`` times, the feature most correlated with its
    residual; one wrong pick early is never undone. Here ``width`` sets are kept at each
    step: every set offers its ``branch`` most correlated features, and the ``width``
    distinct sets whose residual ``x − F·1_S`` has the least energy survive (a unit step
    changes the energy by ``1 − 2⟨f_j, r⟩``, so this is exact, not a heuristic score).
    After ``k`` steps the best set is *verified*: its residual, computed afresh, must
    vanish (noiseless: below ``1e-9`` of the signal's energy; with noise σ, within three
    standard deviations of the noise's energy ``σ²d``). A signal that fails is decoded
    again with a beam four times wider, from 8 up to ``beam``; the last beam's best set is
    returned whether or not it verifies. Most signals verify at the first width, so the
    cost grows only where the problem is hard.

    The beam's correlations (float64, as ``mp``'s) take ``16·width·N`` bytes per signal;
    signals are decoded in chunks within 40 MiB, and the beam is narrowed to what one
    signal can hold there (40 at ``N = 65536``, 2 at ``N = 2^20``). The Gram rows a call
    has computed are kept for its later steps and retries, within 64 MiB
    (:class:`GramRows`). Each signal's answer depends only on its own beam, so the
    decoded sets do not depend on the batch.

    Tuning (N = 4096, k = 16, Rademacher): docs/decoders/greedy.md gives ``d*`` against
    ``beam`` and ``branch``.
    """

    name = "beam-mp"
    description = ("Iterative: matching pursuit over a beam of candidate sets, verified by the exact "
                   "residual, widened where it fails.")
    uses_noise = True
    batch_arrays = 4
    beam: int
    branch: int

    parameters = (
        Param("beam", int, 512, "the widest beam: sets kept per step on the last retry", minimum=1,
              maximum=4096),
        Param("branch", int, 16, "features each set offers per step", minimum=1, maximum=256),
    )

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int,
               noise: float) -> list[np.ndarray]:
        x = np.asarray(dictionary.subtract_offset(signals), dtype=np.float64)
        n = dictionary.n
        steps = min(k, n)
        correlations = dictionary.correlate(x).astype(np.float64)
        energy = np.einsum("ij,ij->i", x, x)
        most = max(1, min(self.beam, BEAM_BYTES // (_BYTES_PER_ENTRY * n)))
        widths = []
        width = min(FIRST_WIDTH, most)
        while width < most:
            widths.append(width)
            width *= 4
        widths.append(most)
        found: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(x)
        todo = np.arange(len(x))
        step_rows = max(width * min(chunk_of(width, n), len(x)) for width in widths)
        rows = GramRows(n, min(n, max(ROW_BYTES // (4 * n), step_rows)))
        for width in widths:
            if todo.size == 0 or steps == 0:
                break
            chunk = chunk_of(width, n)
            failed = []
            for lo in range(0, todo.size, chunk):
                part = todo[lo:lo + chunk]
                sets = self._search(dictionary, correlations[part], energy[part], steps, width, rows)
                for t, chosen in zip(part, sets, strict=True):
                    found[t] = np.sort(chosen)
                    if not self._verified(dictionary, x[t], chosen, noise):
                        failed.append(t)
            todo = np.asarray(failed, dtype=np.int64)
        return found

    def _search(self, dictionary: Dictionary, correlations: np.ndarray, energy: np.ndarray, steps: int,
                width: int, rows: GramRows) -> list[np.ndarray]:
        """The best set of each signal's beam of ``width`` after ``steps`` unit steps."""
        signals, n = correlations.shape
        branch = min(self.branch, n)
        corr = np.empty((signals, width, n))
        corr[:, 0] = correlations
        new_corr = np.empty_like(corr)
        top_value = np.empty((signals, width, branch))
        top_index = np.empty((signals, width, branch), dtype=np.int64)
        _first(corr, top_value, top_index)
        energy_now = np.zeros((signals, width))
        energy_now[:, 0] = energy
        keys = np.zeros((signals, width), dtype=np.uint64)
        chosen = np.zeros((signals, width, steps), dtype=np.int64)
        live = np.ones(signals, dtype=np.int64)
        for step in range(steps):
            parent = np.zeros((signals, width), dtype=np.int64)
            pick = np.zeros((signals, width), dtype=np.int64)
            new_energy = np.zeros((signals, width))
            new_keys = np.zeros((signals, width), dtype=np.uint64)
            new_live = np.zeros(signals, dtype=np.int64)
            _select(top_value, top_index, energy_now, keys, live, width, parent, pick, new_energy, new_keys,
                    new_live)
            new_chosen = np.zeros((signals, width, steps), dtype=np.int64)
            if step + 1 < steps:
                mask = np.arange(width)[None, :] < new_live[:, None]
                row_of = rows.slots(dictionary, np.where(mask, pick, 0))
                _advance(corr, new_corr, chosen, new_chosen, parent, pick, new_live, rows.rows, row_of, step,
                         top_value, top_index)
                corr, new_corr = new_corr, corr
            else:
                for t in range(signals):
                    for a in range(new_live[t]):
                        new_chosen[t, a, :step] = chosen[t, parent[t, a], :step]
                        new_chosen[t, a, step] = pick[t, a]
            energy_now, keys, chosen, live = new_energy, new_keys, new_chosen, new_live
        return [chosen[t, 0] for t in range(signals)]

    @staticmethod
    def _verified(dictionary: Dictionary, x: np.ndarray, chosen: np.ndarray, noise: float) -> bool:
        """Whether the set explains ``x``: its residual vanishes, or is the noise's size."""
        residual = x - dictionary.columns(chosen).astype(np.float64).sum(axis=1)
        left = float(residual @ residual)
        if noise > 0:
            d = x.size
            return left <= noise * noise * (d + NOISE_SLACK * np.sqrt(2.0 * d))
        return left <= EXACT * float(x @ x)


@hookimpl
def register_decoders(register: Register) -> None:
    register(BeamMatchingPursuit)
