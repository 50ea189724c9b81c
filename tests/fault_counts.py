"""How many generated inputs the fault-injection tests ran, by kind.

Tests call :func:`add` as they run; ``conftest.py`` prints :func:`summary` at the end
of the session, one line naming every kind with its count, e.g.
``fault injection: 300 run argument lists, 200 TOML configs``.
"""

from __future__ import annotations

_counts: dict[str, int] = {}


def add(name: str, n: int = 1) -> None:
    """Count ``n`` more inputs of the kind ``name``."""
    _counts[name] = _counts.get(name, 0) + n


def counts() -> dict[str, int]:
    """Every kind counted so far, in the order first counted."""
    return dict(_counts)


def summary() -> str | None:
    """The line the session ends with, or None if nothing was counted."""
    if not _counts:
        return None
    return "fault injection: " + ", ".join(f"{n} {name}" for name, n in _counts.items())
