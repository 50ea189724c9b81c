"""Matching pursuit over a beam of candidate sets, verified by the exact residual."""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from superposition_harness import Decoder, Dictionary, Param, Register, hookimpl

#: The most memory the beam's correlations may hold at once (beyond the batch's arrays);
#: signals are decoded in chunks that fit, and the beam is narrowed where one signal alone
#: would not: at most 512 sets at N = 4096, 32 at N = 65536, 2 at N = 2^20. It bounds
#: the time too, which grows with the beam's width times N.
BEAM_BYTES = 40 << 20

#: Bytes per beam entry and feature: the correlations twice (current and next step, float64)
#: and the Gram rows that update them (float32).
_BYTES_PER_ENTRY = 20

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
def _expand(corr: np.ndarray, energy: np.ndarray, keys: np.ndarray, chosen: np.ndarray, live: np.ndarray,
            step: int, branch: int, width: int, parent: np.ndarray, pick: np.ndarray,
            new_energy: np.ndarray, new_keys: np.ndarray, new_live: np.ndarray) -> None:  # pragma: no cover
    """One step of the beam for every signal: each live set offers its ``branch`` features of
    largest correlation with its residual (none it holds); adding feature ``j`` to a set with
    residual ``r`` leaves ``‖r − f_j‖² = ‖r‖² − 2⟨f_j, r⟩ + 1``. The ``width`` distinct sets
    of least residual energy survive, in increasing order of it (ties: first offered)."""
    signals, _, n = corr.shape
    for t in prange(signals):
        count = live[t] * branch
        score = np.empty(count)
        from_set = np.empty(count, dtype=np.int64)
        feature = np.empty(count, dtype=np.int64)
        made = 0
        for s in range(live[t]):
            row = corr[t, s]
            top_value = np.full(branch, -np.inf)
            top_index = np.full(branch, -1, dtype=np.int64)
            for i in range(n):
                value = row[i]
                if value <= top_value[branch - 1]:
                    continue
                held = False
                for p in range(step):
                    if chosen[t, s, p] == i:
                        held = True
                        break
                if held:
                    continue
                place = branch - 1
                while place > 0 and top_value[place - 1] < value:
                    top_value[place] = top_value[place - 1]
                    top_index[place] = top_index[place - 1]
                    place -= 1
                top_value[place] = value
                top_index[place] = i
            for c in range(branch):
                if top_index[c] < 0:
                    continue
                score[made] = energy[t, s] - 2.0 * top_value[c] + 1.0
                from_set[made] = s
                feature[made] = top_index[c]
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


@njit(cache=True, parallel=True)
def _advance(corr: np.ndarray, new_corr: np.ndarray, chosen: np.ndarray, new_chosen: np.ndarray,
             parent: np.ndarray, pick: np.ndarray, live: np.ndarray, rows: np.ndarray, first_row: np.ndarray,
             step: int) -> None:  # pragma: no cover - compiled
    """The surviving sets' correlations, ``⟨f_i, r⟩ − ⟨f_i, f_j⟩``, and their features."""
    signals, _, n = corr.shape
    for t in prange(signals):
        for a in range(live[t]):
            s = parent[t, a]
            row = rows[first_row[t] + a]
            for i in range(n):
                new_corr[t, a, i] = corr[t, s, i] - row[i]
            for p in range(step):
                new_chosen[t, a, p] = chosen[t, s, p]
            new_chosen[t, a, step] = pick[t, a]


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

    The beam's correlations take ``20·width·N`` bytes per signal; signals are decoded in
    chunks within 40 MiB, and the beam is narrowed to what one signal can hold there
    (512 at ``N = 4096``, 32 at ``N = 65536``). Each signal's answer depends only on its
    own beam, so the decoded sets do not depend on the batch.

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
        for width in widths:
            if todo.size == 0 or steps == 0:
                break
            chunk = max(1, BEAM_BYTES // (_BYTES_PER_ENTRY * width * n))
            failed = []
            for lo in range(0, todo.size, chunk):
                part = todo[lo:lo + chunk]
                sets = self._search(dictionary, correlations[part], energy[part], steps, width)
                for t, chosen in zip(part, sets, strict=True):
                    found[t] = np.sort(chosen)
                    if not self._verified(dictionary, x[t], chosen, noise):
                        failed.append(t)
            todo = np.asarray(failed, dtype=np.int64)
        return found

    def _search(self, dictionary: Dictionary, correlations: np.ndarray, energy: np.ndarray, steps: int,
                width: int) -> list[np.ndarray]:
        """The best set of each signal's beam of ``width`` after ``steps`` unit steps."""
        signals, n = correlations.shape
        branch = min(self.branch, n)
        corr = np.empty((signals, width, n))
        corr[:, 0] = correlations
        new_corr = np.empty_like(corr)
        state = (np.zeros((signals, width)), np.zeros((signals, width), dtype=np.uint64),
                 np.zeros((signals, width, steps), dtype=np.int64), np.ones(signals, dtype=np.int64))
        for step in range(steps):
            energy_now, keys, chosen, live = state
            if step == 0:
                energy_now[:, 0] = energy
            parent = np.zeros((signals, width), dtype=np.int64)
            pick = np.zeros((signals, width), dtype=np.int64)
            new_state = (np.zeros((signals, width)), np.zeros((signals, width), dtype=np.uint64),
                         np.zeros((signals, width, steps), dtype=np.int64), np.zeros(signals, dtype=np.int64))
            _expand(corr, energy_now, keys, chosen, live, step, branch, width, parent, pick,
                    new_state[0], new_state[1], new_state[3])
            new_live = new_state[3]
            if step + 1 < steps:
                first_row = np.concatenate([[0], np.cumsum(new_live)[:-1]]).astype(np.int64)
                rows = dictionary.gram_rows(np.concatenate([pick[t, :new_live[t]] for t in range(signals)]))
                _advance(corr, new_corr, chosen, new_state[2], parent, pick, new_live, rows, first_row, step)
                corr, new_corr = new_corr, corr
            else:
                for t in range(signals):
                    for a in range(new_live[t]):
                        new_state[2][t, a, :step] = chosen[t, parent[t, a], :step]
                        new_state[2][t, a, step] = pick[t, a]
            state = new_state
        return [state[2][t, 0] for t in range(signals)]

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
