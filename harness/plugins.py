"""Plugin discovery: entry points of the ``superposition_harness`` group, loaded into pluggy.

The built-in decoders are entry points of this distribution, loaded by exactly the
same code as a third-party package's. A plugin that fails to import, or whose hook
raises or registers something invalid, is recorded with its error and skipped; the
others load as usual.
"""

from __future__ import annotations

import difflib
import os
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, cast

import pluggy

from . import hookspecs
from .decoder import Decoder, check_decoder_class
from .hookspecs import PROJECT

#: The entry-point group a plugin package declares its plugin modules under.
ENTRY_POINT_GROUP = PROJECT

#: Comma-separated entry-point names; when set, only those plugins load ("" loads none).
LOAD_ENV = "HARNESS_LOAD_PLUGINS"

#: The distribution of the built-in decoders; its plugins load first, so their names win.
BUILTIN_DISTRIBUTION = "superposition-harness"


class UnknownDecoder(LookupError):
    """A decoder name that no loaded plugin registered."""


@dataclass
class PluginInfo:
    """One plugin as the harness found it."""

    name: str
    package: str
    version: str
    module: str
    decoders: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def add_error(self, problem: str) -> None:
        self.error = problem if self.error is None else f"{self.error}; {problem}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "package": self.package, "version": self.version,
                "module": self.module, "hooks": self.hooks, "decoders": self.decoders,
                "error": self.error}


@dataclass(frozen=True)
class DecoderEntry:
    """A registered decoder class with the plugin and package it came from."""

    cls: type[Decoder]
    plugin: str
    package: str
    version: str

    @property
    def name(self) -> str:
        return self.cls.name


@dataclass
class Registry:
    """Every plugin found and every decoder they registered."""

    plugins: list[PluginInfo]
    decoders: dict[str, DecoderEntry]
    #: The plugins :data:`LOAD_ENV` let load, or None when it is unset (every plugin loads).
    allowed: frozenset[str] | None = None

    def get(self, name: str) -> DecoderEntry:
        """The decoder called ``name``; raise UnknownDecoder naming close matches."""
        try:
            return self.decoders[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(name, list(self.decoders), n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        known = ", ".join(sorted(self.decoders)) or "none"
        if self.allowed is not None:  # the decoder may be installed, in a plugin left out
            if not self.allowed:
                raise UnknownDecoder(f"no decoder named {name!r}: {LOAD_ENV} is set but empty, so no plugin "
                                     "loads (unset it to load every installed plugin).")
            only = ",".join(sorted(self.allowed))
            raise UnknownDecoder(
                f"no decoder named {name!r} among the plugins {LOAD_ENV}={only!r} loads; {hint}their "
                f"decoders: {known} (add its plugin to {LOAD_ENV}, or unset it to load every plugin)."
            ) from None
        raise UnknownDecoder(
            f"no decoder named {name!r}; {hint}installed decoders: {known} "
            "(see `harness plugins`)."
        ) from None

    @property
    def errors(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]


def _allowed(env: Mapping[str, str]) -> set[str] | None:
    if LOAD_ENV not in env:
        return None
    return {name.strip() for name in env[LOAD_ENV].split(",") if name.strip()}


def _describe_error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{type(exc).__name__}: {message}{where}"


def _load_order(entry_point: metadata.EntryPoint) -> tuple[bool, str, str]:
    dist = entry_point.dist.name if entry_point.dist else ""
    return (dist.lower().replace("_", "-") != BUILTIN_DISTRIBUTION, dist.lower(), entry_point.name)


def _free_name(name: str, package: str, taken: Mapping[str, object]) -> str:
    candidate, count = f"{name}@{package}", 1
    while candidate in taken:
        count += 1
        candidate = f"{name}@{package}#{count}"
    return candidate


def _package_of(obj: object) -> tuple[str, str]:
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "") or ""
    top = module.split(".")[0]
    try:
        dists = metadata.packages_distributions().get(top, [])
    except Exception:  # metadata of a broken install must not stop discovery
        dists = []
    if dists:
        try:
            return dists[0], metadata.version(dists[0])
        except metadata.PackageNotFoundError:
            pass
    return top or "unknown", "unknown"


def load_registry(extra_plugins: Iterable[object] = (),
                  env: Mapping[str, str] | None = None) -> Registry:
    """Load the installed plugins (and ``extra_plugins``) and collect their decoders.

    ``extra_plugins`` are plugin objects (modules or instances with a
    ``register_decoders`` hook implementation) registered after the entry points, as
    tests and embedding applications do.
    """
    env = os.environ if env is None else env
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    allowed = _allowed(env)

    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=_load_order):
        if allowed is not None and entry_point.name not in allowed:
            continue
        dist = entry_point.dist
        info = PluginInfo(
            name=entry_point.name,
            package=dist.name if dist else "unknown",
            version=dist.version if dist else "unknown",
            module=entry_point.value,
        )
        if entry_point.name in infos:
            info.error = (f"another plugin is already called {entry_point.name!r} "
                          f"(from {infos[entry_point.name].package}); this one was not loaded")
            infos[_free_name(entry_point.name, info.package, infos)] = info
            continue
        infos[entry_point.name] = info
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
            info.hooks = [caller.name for caller in manager.get_hookcallers(plugin) or []]
        except Exception as exc:  # a broken plugin must not break the others
            info.error = _describe_error(exc)
    for missing in sorted((allowed or set()) - set(infos)):
        infos[missing] = PluginInfo(
            name=missing, package="unknown", version="unknown", module="",
            error=f"no installed plugin is called {missing!r} (named in {LOAD_ENV})")

    for plugin in extra_plugins:
        package, version = _package_of(plugin)
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in infos:
            name = _free_name(name, package, infos)
        info = PluginInfo(name=name, package=package, version=version, module=name)
        infos[name] = info
        try:
            manager.register(plugin, name=name)
            info.hooks = [caller.name for caller in manager.get_hookcallers(plugin) or []]
        except Exception as exc:
            info.error = _describe_error(exc)

    decoders: dict[str, DecoderEntry] = {}
    for impl in manager.hook.register_decoders.get_hookimpls():
        info = infos[impl.plugin_name]
        found: list[Any] = []
        try:
            impl.function(register=found.append)
        except Exception as exc:
            info.error = f"register_decoders failed: {_describe_error(exc)}"
            continue
        for candidate in found:
            problem = check_decoder_class(candidate)
            if problem is not None:
                info.add_error(problem)
                continue
            cls = cast("type[Decoder]", candidate)
            if cls.name in decoders:
                problem = (f"decoder {cls.name!r} is already registered by plugin "
                           f"{decoders[cls.name].plugin!r} ({decoders[cls.name].package})")
                info.add_error(problem)
                continue
            decoders[cls.name] = DecoderEntry(cls=cls, plugin=info.name, package=info.package,
                                              version=cls.version or info.version)
            info.decoders.append(cls.name)
    return Registry(plugins=list(infos.values()), decoders=decoders,
                    allowed=None if allowed is None else frozenset(allowed))
