"""mypy on the harness, the built-ins and the example plugin, with their imports really resolved.

The source folders install under other names (``harness`` → ``superposition_harness``,
``plugins`` → ``superposition_harness_builtins``), which mypy cannot follow through an
editable install: unresolved, every import of the contract is ``Any`` and nothing is
checked. The test lays the folders out under their import names and checks them there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is in the test extras: pip install '.[test]'")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "harness-example-decoder" / "harness_example_decoder.py"


def _layout(where: Path, extra: dict[str, str] | None = None) -> Path:
    (where / "superposition_harness").symlink_to(ROOT / "harness", target_is_directory=True)
    plugins = where / "superposition_harness_builtins"
    shutil.copytree(ROOT / "plugins", plugins, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(EXAMPLE, where / EXAMPLE.name)
    for name, text in (extra or {}).items():
        (plugins / name).write_text(text)
    return where


def _mypy(where: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--cache-dir", str(where / ".mypy_cache"), "--no-incremental",
               "-p", "superposition_harness", "-p", "superposition_harness_builtins", "-m", EXAMPLE.stem]
    env = {**os.environ, "MYPYPATH": str(where)}
    return subprocess.run(command, cwd=where, env=env, capture_output=True, text=True, check=False)


#: A plugin that reads an undeclared parameter and registers something that is not a decoder:
#: checked beside the real code, it must fail, or the contract's types never reached mypy.
WRONG = '''
from __future__ import annotations

import numpy as np
from superposition_harness import Decoder, Dictionary, Param, Register, hookimpl


class Wrong(Decoder):
    name = "wrong"
    description = "reads a parameter it never declared."
    parameters = (Param("level", float, 0.5, "a level"),)

    level: float

    def decode(self, dictionary: Dictionary, signals: np.ndarray, *, k: int, noise: float) -> np.ndarray:
        return np.zeros((len(signals), k), dtype=np.int64) + int(self.levle)


@hookimpl
def register_decoders(register: Register) -> None:
    register(int)
'''


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One mypy run over the harness, the built-ins, the example and ``wrong.py`` (a run
    takes tens of seconds; both tests read its report)."""
    where = _layout(tmp_path_factory.mktemp("typing"), {"wrong.py": WRONG})
    return _mypy(where), where


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if ": error:" in line]


def test_the_harness_the_built_ins_and_the_example_type_check(checked):
    """Every error of the run is in ``wrong.py``: the rest, checked, has none."""
    result, where = checked
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Found 2 errors in 1 file" in result.stdout, result.stdout + result.stderr
    assert all(line.startswith("superposition_harness_builtins/wrong.py:") for line in _errors(result)), \
        result.stdout
    checked_files = int(result.stdout.rsplit("(checked ", 1)[1].split()[0])
    sources = len(list((where / "superposition_harness").glob("*.py")))
    sources += len(list((where / "superposition_harness_builtins").glob("*.py"))) + 1  # the example
    assert checked_files >= sources  # every file was read, none skipped


def test_the_check_sees_the_contract_and_not_any(checked):
    """A plugin that reads an undeclared parameter, or registers something that is not a
    decoder, fails the same check: the contract's types reached mypy."""
    result, _ = checked
    errors = "\n".join(_errors(result))
    assert '"Wrong" has no attribute "levle"' in errors
    assert 'Argument 1 has incompatible type "type[int]"' in errors
