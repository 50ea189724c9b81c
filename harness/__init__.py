"""superposition-harness: how many dimensions does a sparse decoder need to read a
superposition code back exactly?

The public API for plugin authors is what this package exports, and nothing else: the
decoder contract (:class:`Decoder`, :class:`Param`, :data:`hookimpl`, :data:`Register`), the
:class:`Dictionary` operator, and the tools the built-in decoders use, which a third
party needs as much: the tie-breaking selections :func:`top_k_rows`,
:func:`keep_largest` and :func:`subtract_and_pick` (a greedy step's update and argmax),
the exact-product grid :func:`grid_steps` and :func:`snap_to_grid`, the size above
which compiled kernels go parallel (:data:`PARALLEL_ENTRIES`), SAE weight loading
(:func:`load_sae`, :class:`SAEWeights`, :class:`WeightsError`) and learned-encoder loading
(:func:`load_encoder`, :class:`LearnedEncoder`). The built-ins import nothing else from the
harness; a test holds them to it.

For measuring from Python, :func:`score` runs one decoder on one problem and
:func:`sweep` a grid of them; each returns :class:`Score` objects whose ``record`` is
the record ``harness run --json`` prints; :func:`records_frame` makes a pandas
DataFrame of records.

SAE loading and the Python API are imported on first use, so that declaring a decoder
imports no weight reader and no job runner.
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import TYPE_CHECKING, Any

# Threads waiting for work at the end of a parallel region sleep instead of spinning:
# on a machine shared with other work (a CI runner, a cluster node), a spinning thread
# holds a core that another process needs, and a sweep then ran several times slower
# than its idle time (benchmarks/test_contention.py). Read by OpenMP when numba's
# threading layer loads it, so it is set before any kernel runs; a value set by the
# user is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The same for OpenBLAS's own threads (NumPy's BLAS): after every product on several
# threads they spin for 2^28 cycles (about 0.1 s) before they sleep, and the compiled
# kernels that follow share the cores with them. A matching-pursuit batch at N = 16384
# took 116-124 ms right after a 512 × 512 product, 62 ms otherwise; whole ista runs
# were 5-9% faster with 2^4 cycles, which makes the threads sleep at once. Read when
# NumPy loads OpenBLAS, so it counts where the harness is imported first (the `harness`
# command, its worker processes); a value set by the user is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .decoder import Decoder, Param, ParameterError
from .dictionary import Dictionary, MatrixDictionary, grid_steps, snap_to_grid
from .hookspecs import Register, hookimpl
from .kernels import PARALLEL_ENTRIES, keep_largest, subtract_and_pick, top_k_rows
from .problem import Problem, ProblemError, entropy_bits

if TYPE_CHECKING:
    from .api import Score, records_frame, score, sweep
    from .encoders import LearnedEncoder, load_encoder
    from .tensors import WeightsError
    from .weights import SAEWeights, load_sae

try:
    __version__ = metadata.version("superposition-harness")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_LAZY = {"SAEWeights": "weights", "WeightsError": "tensors", "load_sae": "weights",
         "LearnedEncoder": "encoders", "load_encoder": "encoders",
         "Score": "api", "records_frame": "api", "score": "api", "sweep": "api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PARALLEL_ENTRIES", "Decoder", "Dictionary", "LearnedEncoder", "MatrixDictionary", "Param",
    "ParameterError", "Problem", "ProblemError", "Register", "SAEWeights", "Score", "WeightsError",
    "__version__", "entropy_bits", "grid_steps", "hookimpl", "keep_largest", "load_encoder", "load_sae",
    "records_frame", "score", "snap_to_grid", "subtract_and_pick", "sweep", "top_k_rows",
]
