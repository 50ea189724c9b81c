"""The harness's kernels against the floors of the machine, measured in the same run.

For one batch of each of ``mp``, ``topk`` and ``amp-binary`` at the paper's scale
(``N = 2^20``; ``k = 64`` and one ``k = 256`` shape each), this prints the time the
harness takes beside the least time the same work can take on this machine, per kernel
and per batch: ``measured / floor``. The floor model is written down in
``docs/roofline.md``; in short, a batch of ``B`` signals at ``(N, d, k)`` needs at least

- **generation:** ``N · ⌈d/64⌉`` Philox words (the dictionary of a new draw), at the
  machine's Philox rate on all its cores (a run's first draw of a shape also touches
  fresh pages, once per shape: it is made and timed apart, before the batch);
- **products:** ``2·B·d·N`` flops per ``correlate`` (and per ``synthesize``), at the
  float32 GEMM rate of the same shape; an exact product (lattice signals) may instead
  be counted on the sign bits, ``⌈B/8⌉ · N · ⌈d/64⌉ · 8`` look-ups of 32 bytes in a
  64 KiB table, at the machine's look-up rate: its floor is the faster of the two;
- **Gram rows** (``mp``'s updates): ``B · N · ⌈d/64⌉`` XOR-popcounts of 64-bit words
  per step, at the best XOR-popcount rate of the cores: the fastest of several kernels
  (the harness's own among them), scalar or vectorised, on codewords in the cache;
- **streams over the correlations:** ``B · N`` entries read (``topk``'s selection) or
  read and written as float64 (``mp``'s update-and-argmax per step), at the copy
  bandwidth.

Each floor is measured here, not looked up: the rates are timed on this machine in this
run, so a busy machine slows the floors and the harness alike. Run it with::

    python -m pytest benchmarks/test_roofline.py --benchmark-enable -s

It takes several minutes and up to about 4 GiB at the full sizes (the ``k = 256`` shapes
the longest, so they decode batches of ``SMALL_BATCH`` signals; the floor scales with
the batch the same way). ``HARNESS_BENCH_SMALL=1`` shrinks everything (``N = 2^14``)
for a smoke run of seconds. With benchmarks disabled (the test command's default) the
full sizes are skipped and the small ones run once untimed. Nothing asserts on a time:
only on the decoders' results and the floor kernels' answers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from numba import njit, prange
from superposition_harness import Problem
from superposition_harness.dictionary import RademacherDictionary
from superposition_harness.kernels import philox_words
from superposition_harness.lanes import lanes_add, lanes_load, lanes_store, lanes_zero
from superposition_harness.plugins import load_registry
from superposition_harness.problem import draw_subsets, entropy_bits

from .conftest import FIGURES

SMALL = os.environ.get("HARNESS_BENCH_SMALL", "").strip() not in ("", "0")
CORES = os.cpu_count() or 1

N = 1 << 14 if SMALL else 1 << 20
BATCH = 32
SMALL_BATCH = 8
#: Room for a draw's sign bits at every shape here (``N · d / 8`` bytes; 2.6 GB for topk at k = 256).
CACHE_BYTES = 3 << 30
ROUNDS = 3

#: Batches timed per shape, each of a new draw; the figures are those of the median batch
#: (one batch alone was at the mercy of whatever else the machine did in those seconds).
BATCH_ROUNDS = 3


def paper_dimension(name: str, n: int, k: int) -> int:
    """A dimension near ``name``'s d*(0.95) at (n, k): top-k's ``4k ln(kN)``, about 1.3
    dims/bit for mp and 0.8 for amp-binary (the paper's and the leaderboard's figures)."""
    if name == "topk":
        return math.ceil(4 * k * math.log(k * n))
    per_bit = 1.3 if name == "mp" else 0.8
    return math.ceil(per_bit * entropy_bits(n, k))


#: (decoder, k, batch): the paper's k = 64 shapes with full batches, and k = 256.
SHAPES = [(name, k, batch) for k, batch in ((8, BATCH), (32, SMALL_BATCH)) if SMALL
          for name in ("mp", "topk", "amp-binary")] if SMALL else [
    (name, k, batch) for k, batch in ((64, BATCH), (256, SMALL_BATCH))
    for name in ("mp", "topk", "amp-binary")]


# ----------------------------------------------------------------- the floors


def best_seconds(work: Callable[[], object], rounds: int = ROUNDS) -> float:
    """The least of ``rounds`` timings of ``work()`` (after one untimed call)."""
    work()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


def threaded(work: Callable[[int], object], threads: int) -> Callable[[], None]:
    """``work(0) … work(threads − 1)`` side by side (each must release the GIL)."""
    def run() -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
    return run


def philox_words_per_second() -> float:
    """64-bit Philox words a second on all cores: the faster of NumPy's ``random_raw``
    and the harness's compiled Philox (the same words; both release the GIL)."""
    count = 1 << 22
    generators = [np.random.Philox(key=index) for index in range(CORES)]
    numpy_seconds = best_seconds(threaded(lambda index: generators[index].random_raw(count), CORES))
    compiled_seconds = best_seconds(threaded(lambda index: philox_words((index, 0), count), CORES))
    return CORES * count / min(numpy_seconds, compiled_seconds)


def copy_bytes_per_second() -> float:
    """Bytes read plus written a second by the faster of a one-thread and an all-core copy."""
    size = (64 if SMALL else 512) << 20
    source = np.ones(size // 8)
    target = np.empty_like(source)
    one = best_seconds(lambda: np.copyto(target, source))
    parts = np.array_split(np.arange(source.size), CORES)
    bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts]

    def piece(index: int) -> None:
        lo, hi = bounds[index]
        np.copyto(target[lo:hi], source[lo:hi])

    every = best_seconds(threaded(piece, CORES))
    return 2 * source.nbytes / min(one, every)


def gemm_flops_per_second(batch: int, d: int, n: int) -> float:
    """float32 GEMM rate of ``(batch, d) @ (d, columns)`` (NumPy's BLAS on its own threads),
    on ``columns = min(n, 2^16)``: the shape of one ``correlate`` part by part."""
    columns = min(n, 1 << 16)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, d), dtype=np.float32)
    matrix = rng.standard_normal((d, columns), dtype=np.float32)
    seconds = best_seconds(lambda: x @ matrix)
    return 2.0 * batch * d * columns / seconds


def popcount_words_per_second(words: int, batch: int) -> tuple[float, str]:
    """The best XOR-popcount rate (64-bit words a second, all cores) and the kernel that gave it.

    ``popcount_floor.py`` times several kernels on codewords that stay in the last-level
    cache, the harness's own among them; it runs in a child process twice, with LLVM's
    loop vectoriser on and off, because on some processors the vectorised popcount (byte
    shuffles) is slower than the scalar instruction. The fastest of all is the floor.
    """
    script = Path(__file__).with_name("popcount_floor.py")
    rates = {}
    for form, vectorise in (("vectorised", "1"), ("scalar", "0")):
        environment = dict(os.environ, NUMBA_LOOP_VECTORIZE=vectorise)
        result = subprocess.run([sys.executable, str(script), str(words), str(max(4, batch))],
                                capture_output=True, text=True, env=environment, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        for kernel, rate in json.loads(result.stdout.strip().splitlines()[-1]).items():
            rates[f"{kernel}, {form}"] = rate
    best = max(rates, key=rates.__getitem__)
    return rates[best], best


@njit(parallel=True, nogil=True, cache=False)
def _table_lookups(words: np.ndarray, table: np.ndarray, sums: np.ndarray,
                   passes: int) -> None:  # pragma: no cover - compiled
    """For each word, its eight bytes index eight 32-byte entries of a 64 KiB table, added
    into four registers: the least a look-up product does per word of a codeword."""
    rows, count = words.shape
    for row in prange(rows):
        a0 = a1 = a2 = a3 = np.uint64(0)
        for _ in range(passes):
            for t in range(count):
                word = words[row, t]
                for p in range(8):
                    entry = table[p, (word >> np.uint64(8 * p)) & np.uint64(255)]
                    a0 += entry[0]
                    a1 += entry[1]
                    a2 += entry[2]
                    a3 += entry[3]
        sums[row, 0] = a0
        sums[row, 1] = a1
        sums[row, 2] = a2
        sums[row, 3] = a3


@njit(parallel=True, nogil=True, cache=False)
def _table_lookups_as_lanes(words: np.ndarray, table: np.ndarray, sums: np.ndarray,
                            passes: int) -> None:  # pragma: no cover - compiled
    """The same, each entry loaded and added as one four-lane value (one 32-byte load and
    one vector addition where the processor has them)."""
    rows, count = words.shape
    for row in prange(rows):
        total = lanes_zero()
        for _ in range(passes):
            for t in range(count):
                word = words[row, t]
                for p in range(8):
                    byte = (word >> np.uint64(8 * p)) & np.uint64(255)
                    total = lanes_add(total, lanes_load(table, (p, byte)))
        lanes_store(sums, (row,), total)


def lookups_per_second() -> tuple[float, str]:
    """32-byte table look-ups a second, all cores, from a table of 64 KiB (one word's, as
    ``kernels.lattice_products`` reads it) indexed by the bytes of 4 MiB of random words
    in the cache, read 16 times over (about 0.3 G look-ups: long enough that starting
    the threads does not count), and the form that gave it: the faster of four scalar
    additions an entry and one four-lane addition (``harness/lanes.py``). Checked
    against NumPy."""
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**64, size=(1 << 12, 1 << 7), dtype=np.uint64)
    table = rng.integers(0, 2**20, size=(8, 256, 4), dtype=np.uint64)
    passes = 2 if SMALL else 16
    picked = (words[..., None] >> (8 * np.arange(8, dtype=np.uint64))) & np.uint64(255)
    expected = table[np.arange(8), picked.astype(np.int64)].sum(axis=(1, 2)) * np.uint64(passes)
    rates = {}
    for form, kernel in (("four scalar additions", _table_lookups), ("lanes", _table_lookups_as_lanes)):
        sums = np.empty((words.shape[0], 4), dtype=np.uint64)
        kernel(words[:2], table, sums[:2], 1)
        seconds = best_seconds(lambda kernel=kernel, sums=sums: kernel(words, table, sums, passes))
        assert np.array_equal(sums, expected), f"the look-up floor kernel ({form}) summed wrongly"
        rates[form] = words.size * 8 * passes / seconds
    best = max(rates, key=rates.__getitem__)
    return rates[best], best


@dataclass
class Floors:
    """The machine's rates, measured once per run."""

    philox: float = field(default_factory=philox_words_per_second)
    copy: float = field(default_factory=copy_bytes_per_second)
    gemm: dict[tuple[int, int], float] = field(default_factory=dict)
    popcount: dict[tuple[int, int], tuple[float, str]] = field(default_factory=dict)
    #: the look-up rate and the form of the kernel that reached it
    lookups: tuple[float, str] = field(default_factory=lookups_per_second)

    def gemm_seconds(self, batch: int, d: int, n: int) -> float:
        if (batch, d) not in self.gemm:
            self.gemm[(batch, d)] = gemm_flops_per_second(batch, d, n)
        return 2.0 * batch * d * n / self.gemm[(batch, d)]

    def lookup_seconds(self, batch: int, d: int, n: int, synthesis: bool = False) -> float:
        """A product counted on the bits: eight look-ups per word of each codeword, for
        each group of eight rows; a synthesis, eight per word of 64 codewords' signs."""
        words = ((n + 63) // 64) * d if synthesis else n * ((d + 63) // 64)
        return -(-batch // 8) * words * 8 / self.lookups[0]

    def product_seconds(self, batch: int, d: int, n: int) -> tuple[float, str]:
        """The floor of one exact product: the faster of a float32 GEMM and look-ups."""
        gemm, lookup = self.gemm_seconds(batch, d, n), self.lookup_seconds(batch, d, n)
        return (gemm, "GEMM") if gemm <= lookup else (lookup, "look-ups")

    def popcount_seconds(self, batch: int, d: int, n: int) -> float:
        words = (d + 63) // 64
        if (words, batch) not in self.popcount:
            self.popcount[(words, batch)] = popcount_words_per_second(words, batch)
        return batch * n * words / self.popcount[(words, batch)][0]

    def generation_seconds(self, d: int, n: int) -> float:
        return n * ((d + 63) // 64) / self.philox

    def stream_seconds(self, entries: int, bytes_each: int) -> float:
        return entries * bytes_each / self.copy


@pytest.fixture(scope="module")
def floors(request) -> Floors:
    measured = Floors()
    FIGURES["floor: Philox, all cores"] = f"{measured.philox / 1e9:8.2f} G words/s"
    FIGURES["floor: copy bandwidth (read + write)"] = f"{measured.copy / 1e9:8.2f} GB/s"
    FIGURES["floor: 32-byte table look-ups, all cores"] = (f"{measured.lookups[0] / 1e9:8.2f} G/s"
                                                          f" ({measured.lookups[1]})")
    return measured


# ------------------------------------------------------ the harness, kernel by kernel


class Timed:
    """A dictionary whose products and Gram-row steps are timed and counted (a call made
    inside another timed call counts only in the outer one)."""

    KERNELS = ("superpose", "correlate", "gram_rows", "subtract_gram_rows", "synthesize")

    def __init__(self, dictionary: RademacherDictionary) -> None:
        self.dictionary: RademacherDictionary | None = dictionary
        self.seconds = dict.fromkeys(self.KERNELS, 0.0)
        self.calls = dict.fromkeys(self.KERNELS, 0)
        #: the kernel and the rows (signals) of each product after the first, in order
        self.products: list[tuple[str, int]] = []
        self.first_correlate = 0.0
        self.depth = 0
        for name in self.KERNELS:
            setattr(dictionary, name, self._wrap(name, getattr(dictionary, name)))

    def release(self) -> None:
        """Give the dictionary its own methods back and let it go. The wrappers refer to
        its bound methods, so it refers to itself through them: a cycle that only the
        garbage collector would free, and until then the next draw could not be written
        into its pages (``dictionary._Kept``) and would touch fresh memory, as a run does
        not."""
        if self.dictionary is not None:
            for name in self.KERNELS:
                delattr(self.dictionary, name)
            self.dictionary = None

    def _wrap(self, name: str, method: Callable) -> Callable:
        def timed(*args, **kwargs):
            if self.depth:
                return method(*args, **kwargs)
            began = time.perf_counter()
            self.depth += 1
            try:
                return method(*args, **kwargs)
            finally:
                self.depth -= 1
                spent = time.perf_counter() - began
                if name == "correlate" and self.calls[name] == 0:
                    self.first_correlate = spent  # the first product (superpose made the bits)
                else:
                    self.seconds[name] += spent
                    if name in ("correlate", "synthesize"):
                        self.products.append((name, int(np.shape(args[0])[0])))
                self.calls[name] += 1
        return timed


def make_decoder(name: str):
    registry = load_registry()
    if name not in registry.decoders:
        pytest.skip(f"decoder {name!r} is not installed")
    return registry.get(name).cls()


def heavy(benchmark) -> None:
    if benchmark.disabled and not SMALL:
        pytest.skip("full-size benchmark: run with --benchmark-enable (or HARNESS_BENCH_SMALL=1)")


def ratio(measured: float, floor: float) -> str:
    return f"{measured / floor:7.2f}   ({measured:8.3f} s against {floor:8.3f} s)"


@pytest.mark.parametrize(("name", "k", "batch"), SHAPES)
def test_batch_against_its_floor(benchmark, request, name, k, batch):
    heavy(benchmark)
    floors: Floors = request.getfixturevalue("floors")  # measured only when something is timed
    decoder = make_decoder(name)
    d = paper_dimension(name, N, k)
    problem = Problem(n=N, k=k, seed=0, subsets_per_draw=batch)
    draws = iter(range(1_000_000))
    timings: list[Timed] = []
    exact: list[int] = []  # signals decoded exactly, per batch

    def one_batch():
        draw = next(draws)
        dictionary = RademacherDictionary(d, N, seed=0, draw=draw, cache_bytes=CACHE_BYTES)
        timed = Timed(dictionary)
        subsets = draw_subsets(problem, draw)
        decoded = decoder.decode(dictionary, dictionary.superpose(subsets), k=k, noise=0.0)
        timed.release()  # the draw is freed on return: the next one is written into its pages
        timings.append(timed)
        exact.append(sum(np.array_equal(np.unique(np.asarray(guess)), truth)
                         for guess, truth in zip(decoded, subsets, strict=True)))

    # Compile the kernels on a small draw of the same kind (numba compiles per type, not per shape).
    small = RademacherDictionary(min(d, 256), 4096, seed=1, draw=0)
    warm = Problem(n=4096, k=min(k, 64), seed=1, subsets_per_draw=batch)
    decoder.decode(small, small.superpose(draw_subsets(warm, 0)), k=warm.k, noise=0.0)
    del small
    # A run makes draw after draw of one shape, each written into the last one's array
    # (dictionary._Kept): only its first draw of a shape touches fresh pages. That first
    # draw is made (and timed) here, so that the batch measured costs what every later one does.
    began = time.perf_counter()
    first = RademacherDictionary(d, N, seed=0, draw=next(draws), cache_bytes=CACHE_BYTES)
    first.superpose(draw_subsets(problem, 0)[:1])
    first_draw = time.perf_counter() - began
    del first
    rounds = BATCH_ROUNDS if not benchmark.disabled else 1
    benchmark.pedantic(one_batch, rounds=rounds, iterations=1)
    assert min(exact) >= 1, f"{name} decoded none of {batch} signals at d = {d}: not the work of a real run"
    if benchmark.stats is None:
        return
    # The batch of median time (each a new draw), and its kernels' times.
    walls = benchmark.stats.stats.data
    middle = sorted(range(len(walls)), key=walls.__getitem__)[len(walls) // 2]
    timed = timings[middle]
    wall = walls[middle]
    hits = exact[middle]
    label = f"{name}, N={N}, k={k}, d={d}, batch {batch}"

    generation = floors.generation_seconds(d, N)
    # An exact product can be counted on the bits: the first (lattice signals), and those
    # of amp-binary's iterations (rows on their power-of-two grid, correlated and synthesised).
    product, route = floors.product_seconds(batch, d, N)
    gemm = floors.gemm_seconds(batch, d, N)
    # The signals are superposed first, which makes the draw's bits; then one product.
    FIGURES[f"{label}: a run's first draw of this shape / Philox"] = ratio(first_draw, generation)
    FIGURES[f"{label}: making the draw (superpose) / Philox"] = ratio(timed.seconds["superpose"], generation)
    FIGURES[f"{label}: first correlate / {route}"] = ratio(timed.first_correlate, product)
    floor = generation + product
    # The same floor with every product at the float32 GEMM rate of its shape: the dense
    # product a BLAS would make, which the look-ups beat (docs/roofline.md).
    floor_gemm = generation + gemm
    if timed.products:
        # Each at the faster of its GEMM (the batch's rate, for its rows: a GEMM of fewer
        # rows is no faster a row, so this floor is if anything too low) and its look-ups.
        more = sum(min(gemm * rows / batch, floors.lookup_seconds(rows, d, N, kernel == "synthesize"))
                   for kernel, rows in timed.products)
        spent = timed.seconds["correlate"] + timed.seconds["synthesize"]
        FIGURES[f"{label}: {len(timed.products)} more products / GEMM or look-ups"] = ratio(spent, more)
        floor += more
        floor_gemm += sum(gemm * rows / batch for _, rows in timed.products)
    if name == "mp":
        # Each step counts the Gram rows and subtracts them (one fused call, or gram_rows
        # and the decoder's own update): XOR-popcounts plus a float64 pass over B × N.
        steps = timed.calls["subtract_gram_rows"] + timed.calls["gram_rows"]
        gram = steps * floors.popcount_seconds(batch, d, N)
        form = floors.popcount[((d + 63) // 64, batch)][1]
        updates = steps * floors.stream_seconds(batch * N, 16)
        spent = timed.seconds["subtract_gram_rows"] + timed.seconds["gram_rows"]
        fused = timed.calls["subtract_gram_rows"]
        kernel = (f"{steps} Gram-row steps / XOR-popcount ({form}) + bandwidth" if fused else
                  f"{steps} gram_rows / XOR-popcount ({form})")
        FIGURES[f"{label}: {kernel}"] = ratio(spent, gram + updates if fused else gram)
        rest = wall - timed.first_correlate - sum(timed.seconds.values())
        if fused:
            FIGURES[f"{label}: the rest (first picks, bookkeeping)"] = f"{rest:8.3f} s"
        else:
            FIGURES[f"{label}: the rest ({steps} updates and argmaxes) / bandwidth"] = ratio(rest, updates)
        floor += gram + updates
        floor_gemm += gram + updates
    elif name == "topk":
        floor += floors.stream_seconds(batch * N, 4)
        floor_gemm += floors.stream_seconds(batch * N, 4)
    FIGURES[f"{label}: batch / floor"] = ratio(wall, floor) + f"   {hits}/{batch} decoded exactly"
    FIGURES[f"{label}: batch / floor with every product at the GEMM rate"] = ratio(wall, floor_gemm)
