"""The house's boundaries: a light decoder contract, and built-ins that use only the public API.

The built-ins must be written exactly as a third party would write theirs: they import
from the harness only what ``superposition_harness`` exports, and never another built-in
(code that two of them share lives in a helper module of the plugin package that
registers no decoder).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import superposition_harness

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
EXAMPLES = sorted((ROOT / "examples").rglob("*.py"))
#: Modules that importing the decoder contract must not bring in.
HEAVY = ("config", "weights", "tensors", "memory", "runner", "cli", "results", "verify", "publish", "plots")


def _entry_point_modules() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    targets = project["entry-points"]["superposition_harness"].values()
    return {target.split(":")[0].rsplit(".", 1)[-1] for target in targets}


def test_importing_the_decoder_contract_imports_nothing_heavy():
    code = ("import sys, superposition_harness.decoder; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('superposition_harness'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = run.stdout.split()
    assert "superposition_harness.decoder" in loaded
    assert not [m for m in loaded if m.rsplit(".", 1)[-1] in HEAVY], loaded


def test_every_public_name_resolves():
    for name in superposition_harness.__all__:
        assert getattr(superposition_harness, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        superposition_harness.nothing_here  # noqa: B018


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, level) of every import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
    return found


@pytest.mark.parametrize("path", sorted(PLUGINS.glob("*.py")) + EXAMPLES, ids=lambda p: p.name)
def test_a_built_in_uses_only_the_public_api_and_no_other_built_in(path):
    built_ins = _entry_point_modules()
    for line, module, level in _imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        assert not module.startswith("superposition_harness."), (
            f"{where} imports {module}: a plugin imports only what superposition_harness exports")
        assert not module.startswith("superposition_harness_builtins"), f"{where} imports a built-in"
        if level:
            assert module.split(".")[0] not in built_ins, f"{where} imports the built-in {module}"


def test_the_plugin_packages_helpers_register_no_decoder():
    built_ins = _entry_point_modules()
    for path in PLUGINS.glob("*.py"):
        if path.stem not in built_ins and path.stem != "__init__":
            assert "hookimpl" not in path.read_text(), f"{path.name} is a helper and must register nothing"


def test_the_contract_is_in_the_repository_and_everything_cites_it():
    import re

    contract = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    for section in ("## Sources", "## §1 The standard problem", "## §2 The score", "## §3 The decoders",
                    "## §4 The formats", "## §5 What the sources report", "## §6 The named suites"):
        assert section in contract
    assert "O'Neill, Alim Gumran and David Klindt" in contract
    assert "On Bitrates of Very Sparse Superposition Codes" in contract
    cited = re.compile(r"\bSPEC\b(?!_)")
    paths = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "SECURITY.md",
             *(ROOT / "harness").rglob("*.py"), *(ROOT / "harness").rglob("*.toml"),
             *(ROOT / "plugins").glob("*.py"), *(ROOT / "docs").rglob("*.md"),
             *(ROOT / "leaderboard").glob("*.md")]
    for path in paths:
        assert not cited.search(path.read_text(encoding="utf-8")), f"{path.relative_to(ROOT)} cites a SPEC"
    assert "docs/contract.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/contract.md" in (ROOT / "leaderboard" / "README.md").read_text(encoding="utf-8")


def test_the_command_lines_help_points_at_the_contract(capsys):
    from superposition_harness.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "docs/contract.md" in " ".join(capsys.readouterr().out.split())
