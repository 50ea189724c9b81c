"""The standard problem: its specification, its instances and its entropy (docs/contract.md §1, §2).

An instance is identified by (problem, seed, draw, subset). Trial ``t`` of a run is
draw ``t // subsets_per_draw``, subset ``t % subsets_per_draw``; every random number
behind it comes from a counter-based generator keyed by those integers alone, so the
same instance is produced whatever the batch size, thread count or machine.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

RADEMACHER = "rademacher"
DICTIONARY_KINDS = (RADEMACHER, "gaussian")

#: The ``dictionary`` of a problem whose dictionary comes from a file (the fixed track).
FILE_DICTIONARY = "file"

#: What a fixed-dictionary problem's signals may carry besides their codewords: nothing
#: (a plain matrix) or the SAE's decoder bias (a dictionary taken from an SAE's file).
SAE_OFFSET = "b_dec"
SIGNAL_OFFSETS = (None, SAE_OFFSET)

# Stream tags: each kind of random quantity draws from its own family of streams.
STREAM_DICTIONARY = 1
STREAM_SUBSETS = 2
STREAM_NOISE = 3
STREAM_TRAINING = 7

#: Rows of a generated dictionary (and coordinates of the noise) come in fixed blocks,
#: each from its own stream, so the first ``d`` rows are the same for every ``d``.
ROWS_PER_BLOCK = 64


class ProblemError(ValueError):
    """A problem specification that is not valid; the message names what to change."""


@dataclass(frozen=True)
class Track:
    """What a measurement varies, decided once per problem (docs/contract.md §2).

    On the **generated** track the dictionary is drawn at every dimension and the search
    varies ``d`` (estimates ``d*``); on the **fixed** track the dictionary is a file's,
    ``d`` is its own and the search varies ``k`` (estimates ``k*``). The runner, the
    search, the records, the checks and the tables read the names below instead of
    asking which track they are on.
    """

    name: str
    #: What the search varies, and what a curve point is keyed by: ``"d"`` or ``"k"``.
    variable: str
    #: The record field of the cap on trials per probed value.
    trials_field: str
    #: Whether the search narrows to a relative ``resolution`` (the generated track's
    #: dimensions span hundreds; the fixed track's ``k`` is searched exactly).
    narrows: bool

    @property
    def estimate(self) -> str:
        """The record field of the headline estimate: ``d_star`` or ``k_star``."""
        return f"{self.variable}_star"

    @property
    def half(self) -> str:
        """The record field of the even-odds estimate: ``d_half`` or ``k_half``."""
        return f"{self.variable}_half"

    @property
    def limit(self) -> str:
        """The record field of where the search stops: ``d_max`` or ``k_max``."""
        return f"{self.variable}_max"

    def where(self, problem: dict[str, Any]) -> str:
        """A problem (as a record holds it) in a label: what is fixed on this track."""
        if self is FIXED:
            return f"d={problem.get('d')} N={problem.get('n')}"
        return f"N={problem.get('n')} k={problem.get('k')}"

    def unreached(self, target: float, limit: int) -> str:
        """A successful run's note when no probed value reached ``target``."""
        if self is FIXED:
            return f"p(k) ≥ {target} was not reached even at k = 1"
        return f"p(d) ≥ {target} was not reached for d ≤ {limit}"


#: Dictionaries drawn by the harness; the search finds ``d*``.
GENERATED = Track(name="generated", variable="d", trials_field="max_trials_per_dimension", narrows=True)
#: A dictionary read from a file; the search finds ``k*``.
FIXED = Track(name="fixed", variable="k", trials_field="max_trials_per_k", narrows=False)


def track_of(problem: Any) -> Track:
    """The track of a :class:`Problem`, or of a problem as a record holds it (a mapping)."""
    kind = problem.get("dictionary") if isinstance(problem, dict) else getattr(problem, "dictionary", None)
    return FIXED if kind == FILE_DICTIONARY else GENERATED


@dataclass(frozen=True)
class Problem:
    """The standard problem ``P(N, k, dictionary, σ)`` at every dimension ``d``.

    The noise is either a fixed level ``noise = σ`` per coordinate, or (``snr = S``) a
    fixed signal-to-noise ratio per dimension: per-coordinate variance ``k / (d·S)``, so
    that the noise's share of each coordinate is the same at every ``d``, as in channel
    coding (docs/contract.md §2). A problem has one or the other, or neither.

    On a generated dictionary ``d`` is not part of the specification: the search
    chooses it. On a dictionary from a file (``dictionary = "file"``, the fixed track)
    ``d`` is the file's and ``k`` is what the search chooses, so ``k`` may be None; the
    file is identified by its path and SHA-256 (and, where it was not read as detected,
    by ``dictionary_format``, an SAE layout, or ``dictionary_key``, the array of a
    matrix file), and ``offset`` says what every signal
    carries besides its codewords: ``"b_dec"`` for an SAE's file (its decoder bias, so
    that signals are activations in the SAE's own frame), None for a plain matrix. The
    grouping of trials into draws of ``subsets_per_draw`` subsets each is part of the
    definition, so it is recorded with every result.
    """

    n: int
    k: int | None
    dictionary: str = "rademacher"
    noise: float = 0.0
    seed: int = 0
    subsets_per_draw: int = 32
    d: int | None = None
    dictionary_file: str | None = None
    dictionary_sha256: str | None = None
    offset: str | None = None
    snr: float | None = None
    dictionary_format: str | None = None
    dictionary_key: str | None = None

    def __post_init__(self) -> None:
        validate_problem(self)

    @property
    def track(self) -> Track:
        """The problem's track: :data:`FIXED` for a dictionary from a file, else :data:`GENERATED`."""
        return track_of(self)

    @property
    def fixed(self) -> bool:
        """Whether the dictionary comes from a file (the fixed-dictionary track)."""
        return self.track is FIXED

    def with_k(self, k: int | None) -> Problem:
        """The same problem with ``k`` active features."""
        return replace(self, k=k)

    def as_record(self) -> dict[str, Any]:
        """The problem as it is stored in a result record."""
        record = asdict(self)
        if not self.fixed:
            for key in ("d", "dictionary_file", "dictionary_sha256"):
                del record[key]
        if self.offset is None:  # records made before signals could carry one say nothing
            del record["offset"]
        if self.snr is None:  # nor do those without a fixed signal-to-noise ratio
            del record["snr"]
        for key in ("dictionary_format", "dictionary_key"):  # nor those of files read as detected
            if record[key] is None:
                del record[key]
        return record

    @property
    def noisy(self) -> bool:
        """Whether signals carry noise (a level ``σ`` or a signal-to-noise ratio)."""
        return self.noise > 0 or self.snr is not None

    def sigma(self, d: int, k: int | None = None) -> float:
        """The noise's standard deviation per coordinate at dimension ``d`` (0: none):
        ``σ``, or ``√(k / (d·S))`` at a fixed SNR ``S`` (``k``: the problem's, unless given)."""
        if self.snr is None:
            return float(self.noise)
        active = self.k if k is None else k
        return math.sqrt(float(active or 0) / (d * self.snr))

    @property
    def entropy_bits(self) -> float:
        """``H(N, k) = log2 C(N, k)``, the bits needed to name the active set."""
        if self.k is None:
            raise ValueError("a problem whose k is searched has no single entropy")
        return entropy_bits(self.n, self.k)

    def locate(self, trial: int) -> tuple[int, int]:
        """The (draw, subset) pair of trial number ``trial``."""
        return divmod(trial, self.subsets_per_draw)


#: The most subsets a dictionary draw may hold: a draw's subsets are made at once, and
#: more than this many to one dictionary would make the draws a formality.
MAX_SUBSETS_PER_DRAW = 1 << 20

#: The signal-to-noise ratios per dimension the fixed-SNR track accepts (linear, not dB).
SNR_MIN, SNR_MAX = 1e-3, 1e6

#: The noise levels the noisy track accepts: below, a signal is noiseless to float32;
#: above, no dimension a decoder could be given reaches the Shannon limit.
NOISE_MIN, NOISE_MAX = 1e-6, 1e3


def validate_problem(problem: Problem) -> None:
    """Raise :class:`ProblemError` with one sentence if ``problem`` is not valid."""
    n, k = problem.n, problem.k
    if not _is_int(n) or n < 2:
        raise ProblemError(f"N must be an integer of at least 2, not {n!r}.")
    if problem.dictionary not in (*DICTIONARY_KINDS, FILE_DICTIONARY):
        raise ProblemError(
            f"dictionary must be one of {', '.join(DICTIONARY_KINDS)} or a path to a "
            f"dictionary file, not {problem.dictionary!r}."
        )
    if problem.fixed:
        if not _is_int(problem.d) or problem.d < 1:  # type: ignore[operator]
            raise ProblemError(f"a dictionary file needs a positive dimension d, not {problem.d!r}.")
        if not problem.dictionary_file or not problem.dictionary_sha256:
            raise ProblemError("a dictionary file must be named by its path and SHA-256.")
    elif (problem.d, problem.dictionary_file, problem.dictionary_sha256, problem.offset,
          problem.dictionary_format, problem.dictionary_key) != (None,) * 6:
        raise ProblemError("d, the dictionary file, how it is read and its offset are set only for a "
                           "dictionary from a file.")
    for name in ("dictionary_format", "dictionary_key"):
        value = getattr(problem, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ProblemError(f"{name} must be a non-empty string or absent, not {value!r}.")
    if problem.offset not in SIGNAL_OFFSETS:
        raise ProblemError(f"offset must be one of {', '.join(repr(o) for o in SIGNAL_OFFSETS)}, "
                           f"not {problem.offset!r}.")
    if k is None and not problem.fixed:
        raise ProblemError("k must be given for a generated dictionary.")
    if k is not None:
        if not _is_int(k) or k < 1:
            raise ProblemError(f"k must be a positive integer, not {k!r}.")
        if k >= n:
            raise ProblemError(f"k must be smaller than N (got k = {k}, N = {n}).")
    noise = problem.noise
    if (isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating))
            or not math.isfinite(noise) or noise < 0 or (noise > 0 and not NOISE_MIN <= noise <= NOISE_MAX)):
        raise ProblemError(f"noise must be 0 or a number σ from {NOISE_MIN:g} to {NOISE_MAX:g}, "
                           f"not {noise!r}.")
    snr = problem.snr
    if snr is not None:
        if (isinstance(snr, bool) or not isinstance(snr, (int, float, np.integer, np.floating))
                or not math.isfinite(snr) or not SNR_MIN <= snr <= SNR_MAX):
            raise ProblemError(f"snr must be a signal-to-noise ratio per dimension from {SNR_MIN:g} to "
                               f"{SNR_MAX:g} (linear, not dB), not {snr!r}.")
        if noise:
            raise ProblemError(f"a problem has a noise level σ or an snr, not both (got noise = {noise:g} "
                               f"and snr = {snr:g}); drop one.")
    if not _is_int(problem.seed) or problem.seed < 0:
        raise ProblemError(f"seed must be a non-negative integer, not {problem.seed!r}.")
    if not _is_int(problem.subsets_per_draw) or not 1 <= problem.subsets_per_draw <= MAX_SUBSETS_PER_DRAW:
        raise ProblemError(f"subsets_per_draw must be an integer from 1 to {MAX_SUBSETS_PER_DRAW}, "
                           f"not {problem.subsets_per_draw!r}.")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- entropy


def entropy_bits(n: int, k: int) -> float:
    """``log2 C(n, k)`` computed exactly through log-gamma (never ``k log2(eN/k)``)."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 ≤ k ≤ n, got n = {n}, k = {k}")
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def entropy_bits_approx(n: int, k: int) -> float:
    """The paper's upper bound ``k log2(eN/k)``, shown only as a note beside ``H``."""
    return k * math.log2(math.e * n / k)


def binomial_entropy(k: int) -> float:
    """``H_bin(k)``, the entropy in bits of Binomial(k, ½): what one coordinate of a
    noiseless Rademacher signal (``√d·x_i``, a sum of ``k`` fair signs) can carry."""
    if k < 0:
        raise ValueError(f"need k ≥ 0, got {k}")
    log_half = k * math.log(2)
    total = 0.0
    for i in range(k + 1):
        log_p = math.lgamma(k + 1) - math.lgamma(i + 1) - math.lgamma(k - i + 1) - log_half
        total -= math.exp(log_p) * log_p
    return total / math.log(2)


def counting_dimension(n: int, k: int, q: float) -> int:
    """The counting limit ``d_counting`` of the Rademacher noiseless track at success
    rate ``q`` (docs/contract.md §2): ``⌈(q·H − h₂(1 − q)) / H_bin(k)⌉``.

    Each coordinate of ``√d·x`` is a sum of ``k`` fair signs, so ``d`` coordinates carry
    at most ``d·H_bin(k)`` bits about ``Y``, and by Fano's inequality reading ``Y`` back
    with probability ``q`` needs at least ``q·H − h₂(1 − q)`` of them.
    """
    if not 0 < q <= 1:
        raise ValueError(f"need 0 < q ≤ 1, got {q}")
    h2 = 0.0 if q == 1 else -(q * math.log2(q) + (1 - q) * math.log2(1 - q))
    return max(1, math.ceil((q * entropy_bits(n, k) - h2) / binomial_entropy(k) - 1e-9))


def shannon_dimension_snr(n: int, k: int, snr: float) -> int:
    """The Shannon limit ``d_Sh`` of the fixed-SNR track: ``⌈H(N, k) / (½ log2(1 + S))⌉``,
    where ``½ log2(1 + S)`` is the capacity per dimension of a Gaussian channel at
    signal-to-noise ratio ``S`` (docs/contract.md §2)."""
    if snr <= 0:
        raise ValueError("the fixed-SNR Shannon limit needs snr > 0")
    return math.ceil(entropy_bits(n, k) / (0.5 * math.log2(1.0 + snr)) - 1e-9)


def shannon_dimension(n: int, k: int, noise: float) -> int | None:
    """The Shannon limit ``d_Sh`` of the noisy track (docs/contract.md §2).

    The smallest ``d`` with ``(d/2) log2(1 + k / (d σ²)) ≥ H(N, k)``. The left side
    grows with ``d`` towards ``k / (2 σ² ln 2)``; when that supremum is below ``H``
    no dimension suffices and ``None`` is returned. Not defined for ``σ = 0``.
    """
    if noise <= 0:
        raise ValueError("the Shannon limit is defined for noise σ > 0 only")
    h = entropy_bits(n, k)
    snr = k / noise**2

    def capacity(d: int) -> float:
        return 0.5 * d * math.log2(1.0 + snr / d)

    if snr / (2 * math.log(2)) <= h:
        return None
    hi = 1
    while capacity(hi) < h:
        hi *= 2
    lo = hi // 2  # capacity(lo) < h, or lo == 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if capacity(mid) >= h:
            hi = mid
        else:
            lo = mid
    return hi


# ------------------------------------------------------------------------- streams


def stream(seed: int, *key: int) -> np.random.Philox:
    """The counter-based bit generator for one named piece of randomness.

    ``SeedSequence`` and ``Philox.random_raw`` are stable across NumPy versions and
    platforms, unlike ``Generator`` methods, so only raw 64-bit words are used.
    """
    sequence = np.random.SeedSequence(seed, spawn_key=tuple(int(x) for x in key))
    return np.random.Philox(key=sequence.generate_state(2, np.uint64))


def stream_entropy(seed: int, *key: int) -> np.ndarray:
    """The uint32 entropy words NumPy's ``SeedSequence`` assembles for :func:`stream`
    ``(seed, *key)`` before it hashes them: a compiled stream that appends more key words
    to them (:func:`.kernels.make_sign_blocks`) yields the same words as ``stream``."""
    def words(value: int) -> list[int]:  # an integer as NumPy splits it: 32 bits at a time
        value = int(value)
        if value < 0:
            raise ValueError(f"stream seeds and keys must be non-negative, not {value}")
        out = [value & 0xFFFFFFFF]
        while value >> 32:
            value >>= 32
            out.append(value & 0xFFFFFFFF)
        return out

    run = words(seed)
    if key and len(run) < 4:  # NumPy pads the seed to its pool size when a key follows
        run += [0] * (4 - len(run))
    return np.array(run + [word for part in key for word in words(part)], dtype=np.uint32)


def uniform01(words: np.ndarray) -> np.ndarray:
    """Map raw 64-bit words to doubles uniform on the open interval (0, 1).

    52 bits are kept so that ``m + 1/2`` is exact and the largest value is ``1 − 2**-53``.
    """
    return ((words >> np.uint64(12)).astype(np.float64) + 0.5) * 2.0**-52


def standard_normal(bitgen: np.random.Philox, count: int) -> np.ndarray:
    """``count`` standard normal doubles by the Box–Muller transform of raw words."""
    pairs = (count + 1) // 2
    words = bitgen.random_raw(2 * pairs)
    u1 = uniform01(words[0::2])
    u2 = uniform01(words[1::2])
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * np.pi * u2
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]


def random_bits(bitgen: np.random.Philox, count: int) -> np.ndarray:
    """``count`` fair bits (uint8 0/1), unpacked little-endian from raw words."""
    words = bitgen.random_raw((count + 63) // 64).astype("<u8")
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:count]


# ------------------------------------------------------------------------- subsets


def draw_subsets(problem: Problem, draw: int, family: int = STREAM_SUBSETS) -> np.ndarray:
    """The ``subsets_per_draw`` subsets of one draw, as a sorted ``(S, k)`` int64 array.

    Each row is uniform over the ``C(N, k)`` subsets, by Robert Floyd's algorithm run
    on all rows at once; indices come from 52-bit uniforms, so the bias is below
    ``N / 2**52``. ``family`` selects another family of streams (training data, say),
    so that such subsets never coincide with the problem's instances.
    """
    n, k, count = problem.n, problem.k, problem.subsets_per_draw
    if k is None:
        raise ValueError("subsets need a problem with a given k")
    bitgen = stream(problem.seed, family, draw)
    uniforms = uniform01(bitgen.random_raw(count * k)).reshape(k, count)
    chosen = np.empty((count, k), dtype=np.int64)
    for step, top in enumerate(range(n - k, n)):
        pick = np.minimum((uniforms[step] * (top + 1)).astype(np.int64), top)
        taken = (chosen[:, :step] == pick[:, None]).any(axis=1)
        chosen[:, step] = np.where(taken, top, pick)
    chosen.sort(axis=1)
    return chosen


def draw_noise(problem: Problem, draw: int, d: int) -> np.ndarray:
    """The ``(S, d)`` standard normal noise of one draw, nested in ``d``."""
    count = problem.subsets_per_draw
    blocks = []
    for block in range((d + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK):
        bitgen = stream(problem.seed, STREAM_NOISE, draw, block)
        blocks.append(standard_normal(bitgen, count * ROWS_PER_BLOCK).reshape(count, ROWS_PER_BLOCK))
    return np.concatenate(blocks, axis=1)[:, :d]
