"""The hooks a plugin may implement; each docstring is the hook's reference documentation."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

import pluggy

if TYPE_CHECKING:
    from .decoder import Decoder

#: The pluggy project name, also the entry-point group plugins are published under.
PROJECT = "superposition_harness"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The type of the callback that :func:`register_decoders` receives: annotate a hook
#: implementation ``def register_decoders(register: Register) -> None``.
Register: TypeAlias = "Callable[[type[Decoder]], None]"


@hookspec
def register_decoders(register: Register) -> None:
    """Register the decoders this plugin provides.

    Call ``register(DecoderClass)`` once for each decoder, where ``DecoderClass`` is
    a subclass of :class:`superposition_harness.Decoder` that declares its ``name``,
    ``description``, ``parameters`` and capabilities. Registering a name that another
    plugin already registered is reported as an error of this plugin, and the first
    registration is kept. The hook must not do expensive work: it runs every time the
    harness starts.
    """
