"""superposition-harness: how many dimensions does a sparse decoder need to read a
superposition code back exactly?

The public API for plugin authors is re-exported here: :class:`Decoder`,
:class:`Param`, :data:`hookimpl`, the :class:`Dictionary` operator and the
tie-breaking selection :func:`top_k_rows`.
"""

from __future__ import annotations

from importlib import metadata

from .decoder import Decoder, Param, ParameterError
from .dictionary import Dictionary, MatrixDictionary
from .hookspecs import hookimpl
from .kernels import top_k_rows
from .problem import Problem, ProblemError, entropy_bits

try:
    __version__ = metadata.version("superposition-harness")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Decoder", "Dictionary", "MatrixDictionary", "Param", "ParameterError", "Problem",
    "ProblemError", "__version__", "entropy_bits", "hookimpl", "top_k_rows",
]
