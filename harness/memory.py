"""The memory budget of a run: what it needs, checked before it starts.

A run holds a few kinds of memory: the interpreter with its compiled kernels, the
decoder's working arrays (``batch_arrays`` arrays of ``B × N`` float64, declared by the
decoder), each worker's buffer for unpacked dictionary parts, and whatever is left of
the budget as a cache of dictionary blocks (for a Rademacher dictionary, its sign
bits). :func:`needed_bytes` adds up what cannot be cached; a run whose need exceeds the
budget is refused before any trial, with the budget it would take. Sizes as users write
them and as messages show them are read and written by :mod:`.units`.
"""

from __future__ import annotations

import ctypes
import sys

from . import parallel
from .dictionary import SCRATCH_BYTES
from .problem import Problem
from .units import BudgetError, format_size

#: The default budget of a run (``--memory``).
DEFAULT_MEMORY = 4 << 30

#: What the interpreter, NumPy, numba's compiled kernels and the harness take before
#: any trial (measured resident size after one small run: about 250 MiB), with room.
BASE_BYTES = 384 << 20


def needed_bytes(problem: Problem, batch_arrays: float, batch_size: int, d: int) -> int:
    """What a run at dimension up to ``d`` needs besides its dictionary cache."""
    batch = min(batch_size, problem.subsets_per_draw)
    working = batch_arrays * batch * problem.n * 8
    signals = 4 * batch * d * 8
    scratch = parallel.workers() * min(2 * SCRATCH_BYTES, 2 * 4096 * d * 8)
    # A draw's subsets are made at once (uniforms, indices and the sort's copy), and its
    # noise with them (the runner's cache of recent draws, 64 MiB at most, is in BASE_BYTES).
    draw = problem.subsets_per_draw * (24 * (problem.k or d) + (24 * d if problem.noisy else 0))
    return int(BASE_BYTES + working + signals + scratch + draw)


def check(problem: Problem, batch_arrays: float, batch_size: int, d: int, budget: int,
          decoder: str, held: int = 0) -> int:
    """The bytes left for the dictionary cache; BudgetError if the run cannot fit.

    ``held`` counts memory the run holds besides (a loaded dictionary, say)."""
    need = needed_bytes(problem, batch_arrays, batch_size, d) + held
    if need > budget:
        where = (f"on the {problem.d} × {problem.n} dictionary" if problem.fixed else
                 f"at N = {problem.n} (dimensions up to {d}, batches of "
                 f"{min(batch_size, problem.subsets_per_draw)})")
        raise BudgetError(
            f"decoder {decoder!r} {where} needs about {format_size(need)}, more than the memory "
            f"budget of {format_size(budget)}; give --memory {need / (1 << 30):.1f}GiB or more, "
            "or a smaller --batch-size.")
    return budget - need


#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask the C library to keep freed memory for the next allocation instead of handing
    it back to the system; whether it agreed (glibc does; other C libraries are left alone).

    glibc serves each block over 32 MiB (a ``B × N`` array: 128 MiB at 32 × 2^20) with
    its own ``mmap`` and unmaps it when it is freed, so the next such array starts on
    pages the process has never touched, and the first touch of each costs a fault and
    the zeroing of the page. A run makes the same arrays again and again (each
    iteration of ``amp-binary`` makes six), and on a virtual machine that hands freed
    memory back to its host a fresh page can cost 1-2.5 s a GB, more than the work on
    it: an ``amp-binary`` batch at ``N = 2^20, k = 64`` spent 4.5-7.8 s of its 13-15 s
    in the kernel's page faults, and 0.2 s once freed memory was kept (docs/scale.md).
    Without ``mmap`` (``M_MMAP_MAX = 0``) blocks come from the heap, whose freed
    chunks are reused; its top is given back only beyond 2 GiB (``M_TRIM_THRESHOLD``).

    The price: freed memory stays with the process, and a small block left alive
    between freed large ones splits the gap they leave, so a larger block later may not
    fit in it and the heap grows. The peak can then exceed what was ever alive at once:
    by 64 MiB where arrays of 64-160 MiB came one at a time, each followed by a small
    one that stayed; a record of ``amp-binary`` at ``N = 65536`` peaked at 624 MiB
    against 603 MiB. Threads other than the main one allocate from pools of at most
    64 MiB, so larger arrays made there are still mapped afresh each time.

    The ``harness`` command calls this when it starts, and so does each worker process
    the harness starts; a program that uses the harness as a library may call it too (it
    changes the whole process's allocator).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
