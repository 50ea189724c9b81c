"""Byte sizes as users write them (``--memory 4GiB``) and as messages show them (``2.5 GiB``).

Only the standard library is imported here, so that any module may use these without
bringing in NumPy or the rest of the harness.
"""

from __future__ import annotations

import re

_UNITS = {"": 1 << 30, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6,
          "mib": 1 << 20, "g": 1 << 30, "gb": 10**9, "gib": 1 << 30, "t": 1 << 40, "tb": 10**12,
          "tib": 1 << 40}


class BudgetError(ValueError):
    """A size that cannot be read, or a run that does not fit its budget."""


def parse_size(text: str) -> int:
    """Bytes from ``"4GiB"``, ``"512MiB"``, ``"1.5G"`` or ``"4"`` (a bare number is GiB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise BudgetError(f"cannot read the memory size {text!r}; write it like 4GiB, 512MiB or 8 (GiB).")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise BudgetError(f"the memory budget must be positive, not {text!r}.")
    return size


def format_size(size: float) -> str:
    """``size`` bytes in the largest binary unit that keeps it at least 1, like ``2.5 GiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"
