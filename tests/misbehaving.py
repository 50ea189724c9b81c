"""Decoder plugins that misbehave on purpose, one way each, for the fault-injection tests.

Each decodes nothing useful (or top-k, where it must run to show a side effect) and
breaks the contract or the process in its own way. The module is a plugin object
(``load_registry(extra_plugins=[misbehaving])``) and importable by name, so worker
processes can run its decoders too.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from superposition_harness import Decoder, hookimpl


def _top_k(dictionary, signals, k):
    scores = dictionary.correlate(signals)
    return np.sort(np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)


class _Broken(Decoder):
    """What every decoder below shares; each subclass misbehaves in its own ``decode``."""

    description = "Misbehaves on purpose (fault-injection tests)."
    needs_k = True


class Raises(_Broken):
    name = "bad-raises"

    def decode(self, dictionary, signals, *, k, noise):
        raise RuntimeError("boom")


class Exits(_Broken):
    name = "bad-exits"

    def decode(self, dictionary, signals, *, k, noise):
        sys.exit(3)


class Hangs(_Broken):
    name = "bad-hangs"

    def decode(self, dictionary, signals, *, k, noise):
        while True:
            time.sleep(0.01)


class Crashes(_Broken):
    """Kills its own process, as a crash in compiled code would."""

    name = "bad-crashes"

    def decode(self, dictionary, signals, *, k, noise):
        os.abort()


class WrongShape(_Broken):
    name = "bad-shape"

    def decode(self, dictionary, signals, *, k, noise):
        return np.zeros((signals.shape[0] + 1, k), dtype=np.int64)


class NotANumber(_Broken):
    name = "bad-nan"

    def decode(self, dictionary, signals, *, k, noise):
        return np.full((signals.shape[0], k), np.nan)


class Duplicates(_Broken):
    name = "bad-duplicates"

    def decode(self, dictionary, signals, *, k, noise):
        return np.zeros((signals.shape[0], max(k, 2)), dtype=np.int64)


class OutOfRange(_Broken):
    name = "bad-range"

    def decode(self, dictionary, signals, *, k, noise):
        return np.full((signals.shape[0], 1), dictionary.n, dtype=np.int64)


class Garbage(_Broken):
    name = "bad-garbage"

    def decode(self, dictionary, signals, *, k, noise):
        return "not a set"


class HugeAllocation(_Broken):
    name = "bad-huge"

    def decode(self, dictionary, signals, *, k, noise):
        return np.ones((1 << 40, 1 << 20))  # a petabyte: refused by the allocator at once


class Prints(_Broken):
    """Decodes like top-k, after writing to standard output from Python and below it."""

    name = "bad-prints"

    def decode(self, dictionary, signals, *, k, noise):
        print("noise from print()")
        os.write(1, b"noise from os.write(1)\n")
        return _top_k(dictionary, signals, k)


class ChangesNumPy(_Broken):
    """Decodes like top-k, after making every later floating-point warning an error."""

    name = "bad-numpy-state"

    def decode(self, dictionary, signals, *, k, noise):
        np.seterr(all="raise")
        return _top_k(dictionary, signals, k)


class WritesTheDictionary(_Broken):
    """Tries to overwrite the operator's cached codewords before decoding."""

    name = "bad-writes"

    def decode(self, dictionary, signals, *, k, noise):
        for value in vars(dictionary).values():
            if isinstance(value, np.ndarray) and value.size:
                value[...] = 0
            if isinstance(value, dict):
                for array in value.values():
                    if isinstance(array, np.ndarray):
                        array[...] = 0
        return _top_k(dictionary, signals, k)


class DividesByZero(_Broken):
    """Decodes like top-k after a division by zero, which is fine unless NumPy raises."""

    name = "divides"

    def decode(self, dictionary, signals, *, k, noise):
        np.ones(1) / np.zeros(1)
        return _top_k(dictionary, signals, k)


class Forks(_Broken):
    """Decodes like top-k in two processes: it forks, and the copy returns as well."""

    name = "bad-forks"

    def decode(self, dictionary, signals, *, k, noise):
        os.fork()
        return _top_k(dictionary, signals, k)


class ChangesDirectory(_Broken):
    """Decodes like top-k, after moving the process to another working directory."""

    name = "bad-chdir"

    def decode(self, dictionary, signals, *, k, noise):
        os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
        return _top_k(dictionary, signals, k)


class EndsTheProcess(_Broken):
    """Ends the process the way sys.exit cannot be caught."""

    name = "bad-os-exit"

    def decode(self, dictionary, signals, *, k, noise):
        os._exit(0)


class SaysMarkup(_Broken):
    """Fails with a message that rich would read as markup."""

    name = "bad-markup"

    def decode(self, dictionary, signals, *, k, noise):
        raise RuntimeError("[/4] at [weights=PATH] [bold]x[/bold]")


class IdentityRaises(_Broken):
    """Cannot say what it reads: its identity() raises (before any trial)."""

    name = "bad-identity"

    def identity(self):
        raise OSError("weights vanished")

    def decode(self, dictionary, signals, *, k, noise):
        return _top_k(dictionary, signals, k)


class IdentityNotJson(_Broken):
    """Says what it reads in something that is not a JSON object."""

    name = "bad-identity-json"

    def identity(self):
        return {"sha256": object()}

    def decode(self, dictionary, signals, *, k, noise):
        return _top_k(dictionary, signals, k)


class Instant(_Broken):
    """Returns at once, every time (an empty set): no machine is too slow for a time limit."""

    name = "instant"

    def decode(self, dictionary, signals, *, k, noise):
        return [np.empty(0, dtype=np.int64) for _ in signals]


class Plain(_Broken):
    """What the top-k-like decoders above decode when they have no side effects."""

    name = "plain"

    def decode(self, dictionary, signals, *, k, noise):
        return _top_k(dictionary, signals, k)


IN_PROCESS = (Plain, Raises, Exits, WrongShape, NotANumber, Duplicates, OutOfRange, Garbage, HugeAllocation,
              Prints, ChangesNumPy, WritesTheDictionary, DividesByZero, Forks, ChangesDirectory,
              EndsTheProcess, SaysMarkup, IdentityRaises, IdentityNotJson)
ALL = (*IN_PROCESS, Hangs, Crashes, Instant)


@hookimpl
def register_decoders(register):
    for cls in ALL:
        register(cls)
