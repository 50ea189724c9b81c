"""The hooks a plugin may implement; each docstring is the hook's reference documentation."""

from __future__ import annotations

from collections.abc import Callable

import pluggy

#: The pluggy project name, also the entry-point group plugins are published under.
PROJECT = "superposition_harness"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_decoders(register: Callable[[type], None]) -> None:
    """Register the decoders this plugin provides.

    Call ``register(DecoderClass)`` once for each decoder, where ``DecoderClass`` is
    a subclass of :class:`superposition_harness.Decoder` that declares its ``name``,
    ``description``, ``parameters`` and capabilities. Registering a name that another
    plugin already registered is reported as an error of this plugin, and the first
    registration is kept. The hook must not do expensive work: it runs every time the
    harness starts.
    """
