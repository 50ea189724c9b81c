"""The terminal reports of the commands that are not leaderboards: plugins, conformance, verification.

Every text that comes from a plugin or a record is data, never markup: cells are
:class:`rich.text.Text`, so brackets in a decoder's description or error print as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .conformance import CheckResult
from .decoder import Decoder, Param
from .plugins import DecoderEntry, Registry
from .verify import Verdict

CAPABILITIES = {
    "needs_k": "uses the number of active features k",
    "any_dictionary": "works on any unit-norm dictionary, not only generated ones",
    "uses_noise": "uses the noise level σ",
}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def param_summary(params: Sequence[Param]) -> str:
    """``name=default (type)`` for each parameter."""
    return ", ".join(f"{p.name}={p.default!r} ({p.type.__name__})" for p in params) or "-"


def uses(cls: type[Decoder]) -> str:
    """A decoder's capabilities in a few characters: what it uses (``k``, ``σ``) and, for a
    decoder tied to its own dictionary, ``own dict``."""
    used = [name for name, flag in (("k", cls.needs_k), ("σ", cls.uses_noise)) if flag]
    if not cls.any_dictionary:
        used.append("own dict")
    return ", ".join(used) or "-"


def decoders_table(registry: Registry, width: int | None = None) -> Table:
    """Every registered decoder, one line each, fitted to ``width`` columns (None: in full):
    its name, the plugin (entry point) and package that registered it, what it uses, its
    parameters' names and its description. The names are never cut; the package, the
    parameters and the description end in an ellipsis where they do not fit (in full:
    ``harness plugins NAME``, ``--json``, ``--wide``)."""
    headers = ("name", "plugin", "package", "uses", "parameters", "description")
    rows = [(name, entry.plugin, f"{entry.package} {entry.version}", uses(entry.cls),
             ", ".join(p.name for p in entry.cls.parameters) or "-", entry.cls.description)
            for name, entry in sorted(registry.decoders.items())]
    natural = [max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)]
    widths: list[int | None] = [None] * len(headers)
    if width is not None:
        spare = width - (3 * len(headers) + 1) - sum(natural[:2]) - natural[3]
        # what is left goes to the package, the parameters and the description, in that order of need
        package = min(natural[2], max(8, spare // 5))
        parameters = min(natural[4], max(10, (spare - package) // 3))
        widths[2], widths[4], widths[5] = package, parameters, max(11, spare - package - parameters)
    table = Table(title="Decoders", title_justify="left", header_style="bold",
                  caption="uses: k = the number of active features, σ = the noise level, own dict = "
                          "only its own dictionary. `harness plugins NAME` shows one in full.",
                  caption_justify="left")
    for header, limit in zip(headers, widths, strict=True):
        table.add_column(header, style="cyan" if header == "name" else None, no_wrap=True,
                         overflow="ellipsis", max_width=limit)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def unchecked_note(registry: Registry) -> str | None:
    """What ``harness check`` without names leaves out, and how to check it: the decoders
    tied to their own dictionary, which need their parameters (an SAE's weights)."""
    tied = sorted(name for name, entry in registry.decoders.items() if not entry.cls.any_dictionary)
    if not tied:
        return None
    which = "which works only on its own dictionary" if len(tied) == 1 else \
        "which work only on their own dictionaries"
    return (f"not checked: {', '.join(tied)}, {which}; check one with its parameters, "
            f"e.g. harness check '{tied[0]}[weights=PATH]'.")


def failed_plugins_table(registry: Registry) -> Table:
    """The plugins that failed to load, with their errors."""
    failed = Table(title="Plugins that failed to load", title_justify="left", header_style="bold red")
    for column in ("plugin", "package", "version", "error"):
        failed.add_column(column)
    for info in registry.errors:
        failed.add_row(Text(info.name), Text(info.package), Text(info.version), Text(info.error or ""))
    return failed


def _bounds(param: Param) -> str:
    parts = []
    if param.choices is not None:
        parts.append("one of " + ", ".join(repr(c) for c in param.choices))
    if param.minimum is not None:
        parts.append(f"≥ {param.minimum:g}")
    if param.maximum is not None:
        parts.append(f"≤ {param.maximum:g}")
    if param.path:
        parts.append("a path (relative to a config file's folder when given there)")
    return "; ".join(parts) or "-"


def decoder_report(entry: DecoderEntry) -> RenderableType:
    """One decoder in full: what it is, where it comes from, its capabilities and parameters."""
    cls: type[Decoder] = entry.cls
    doc = inspect.getdoc(cls) or ""
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    for key, value in (("decoder", entry.name), ("description", cls.description),
                       ("package", f"{entry.package} {entry.version}"), ("plugin", entry.plugin),
                       ("class", f"{cls.__module__}.{cls.__qualname__}")):
        header.add_row(key, Text(value))
    for flag, meaning in CAPABILITIES.items():
        header.add_row(flag, Text(f"{_yes(getattr(cls, flag))} (whether it {meaning})"))
    parts: list[RenderableType] = [header]
    if doc:
        parts += [Text(""), Text(doc)]
    params = Table(title=f"Parameters of {entry.name}", title_justify="left", header_style="bold")
    for column in ("name", "type", "default", "allowed", "meaning"):
        params.add_column(column, style="cyan" if column == "name" else None)
    for param in cls.parameters:
        params.add_row(Text(param.name), param.type.__name__, Text(repr(param.default)), Text(_bounds(param)),
                       Text(param.help))
    parts += [Text(""), params if cls.parameters else Text(f"{entry.name} takes no parameters.")]
    return Group(*parts)


def decoder_document(entry: DecoderEntry) -> dict[str, Any]:
    """One decoder as plain data, for ``harness plugins --json``."""
    cls = entry.cls
    return {"name": entry.name, "plugin": entry.plugin, "package": entry.package, "version": entry.version,
            "description": cls.description, "parameters": [p.describe() for p in cls.parameters],
            "capabilities": {flag: getattr(cls, flag) for flag in CAPABILITIES}}


def conformance_table(report: Sequence[tuple[Decoder, DecoderEntry, Sequence[CheckResult]]],
                      label: Any) -> Table:
    """Each decoder's checks; ``label(decoder, entry)`` names a decoder with its parameters."""
    table = Table(title="Conformance", title_justify="left", header_style="bold")
    for column in ("decoder", "package", "check", "result", "detail"):
        table.add_column(column, style="cyan" if column == "decoder" else None)
    for decoder, entry, results in report:
        for i, result in enumerate(results):
            verdict = (Text("skip", style="yellow") if result.skipped
                       else Text("pass", style="green") if result.passed
                       else Text("FAIL", style="bold red"))
            first = i == 0
            table.add_row(Text(label(decoder, entry) if first else ""), Text(entry.package if first else ""),
                          Text(result.name), verdict, Text(result.detail))
        table.add_section()
    return table


VERDICT_STYLES = {"verified": "green", "failed": "bold red", "unverifiable": "yellow", "skipped": "dim"}


def verification_table(verdicts: Sequence[Verdict]) -> Table:
    """One row per record checked: its verdict, where it is, how many trials ran again, what was found."""
    table = Table(title="Verification", title_justify="left", header_style="bold")
    for column in ("status", "record", "source", "re-run", "findings"):
        table.add_column(column, justify="right" if column == "re-run" else "left",
                         overflow="fold" if column == "findings" else "ellipsis")
    for verdict in verdicts:
        table.add_row(Text(verdict.status, style=VERDICT_STYLES[verdict.status]), Text(verdict.label),
                      Text(verdict.source), str(verdict.rerun_trials),
                      Text("; ".join(verdict.reasons) or "-"))
    return table
