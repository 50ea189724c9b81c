"""The example third-party plugin, installed as an outside package would be, and the
copy of its files in CONTRIBUTING.md."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "harness-example-decoder"
EXAMPLE_FILES = ("pyproject.toml", "harness_example_decoder.py")
PACKAGE, VERSION = "harness-example-decoder", "0.1.0"
PLUGIN, DECODER = "example-pic", "pic"

needs_setuptools = pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None,
    reason="building the example package needs setuptools (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def example_path(tmp_path_factory) -> Path:
    """The example package, installed with pip into a scratch directory (not the
    environment), ready to be put on PYTHONPATH."""
    scratch = tmp_path_factory.mktemp("third-party")
    source = scratch / "source"
    # build from a copy, so that the build leaves nothing in the source tree
    shutil.copytree(EXAMPLE, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = scratch / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target),
         str(source)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return target


def harness(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the ``harness`` command in a fresh interpreter that sees ``site``."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("HARNESS_LOAD_PLUGINS", "PYTHONPATH")}
    environment.update(PYTHONPATH=str(site), **env)
    return subprocess.run([sys.executable, "-m", "superposition_harness.cli", *args],
                          capture_output=True, text=True, env=environment, cwd=site.parent,
                          timeout=120)


@needs_setuptools
def test_the_installed_example_is_listed_with_its_package(example_path):
    result = harness(example_path, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    decoders = {d["name"]: d for d in document["decoders"]}
    pic = decoders[DECODER]
    assert (pic["plugin"], pic["package"], pic["version"]) == (PLUGIN, PACKAGE, VERSION)
    [rounds] = pic["parameters"]
    assert (rounds["name"], rounds["default"], rounds["minimum"]) == ("rounds", 1, 0)
    assert rounds["help"] == "cancellation rounds after the first top-k"
    assert pic["capabilities"] == {"needs_k": True, "any_dictionary": True,
                                   "uses_noise": False}
    assert {"threshold", "topk", "mp"} <= set(decoders)
    plugins = {p["name"]: p for p in document["plugins"]}
    assert plugins[PLUGIN] == {"name": PLUGIN, "package": PACKAGE, "version": VERSION,
                               "module": "harness_example_decoder",
                               "hooks": ["register_decoders"], "decoders": [DECODER],
                               "error": None}


@needs_setuptools
def test_the_load_env_selects_the_example_alone(example_path):
    result = harness(example_path, "plugins", "--json", HARNESS_LOAD_PLUGINS=PLUGIN)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [d["name"] for d in document["decoders"]] == [DECODER]
    assert [p["name"] for p in document["plugins"]] == [PLUGIN]


@needs_setuptools
def test_the_installed_example_runs_with_a_parameter(example_path):
    result = harness(example_path, "run", "--plugin", f"{DECODER}[rounds=2]",
                     "--plugin", f"{DECODER}[rounds=0]", "--plugin", "topk",
                     "--n", "512", "--k", "4", "--trials", "32", "--no-store", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [(r["decoder"], r["params"]) for r in records] == [
        (DECODER, {"rounds": 2}), (DECODER, {"rounds": 0}), ("topk", {})]
    refined, plain, topk = records
    for record in (refined, plain):
        assert record["status"] == "ok" and record["error"] is None
        assert (record["plugin_package"], record["plugin_version"]) == (PACKAGE, VERSION)
        assert isinstance(record["d_star"], int) and record["d_star"] > 0
        assert (record["problem"]["n"], record["problem"]["k"]) == (512, 4)
    # rounds=0 is the top-k decoder, trial for trial; cancellation needs fewer dimensions
    assert plain["curve"] == topk["curve"] and plain["d_star"] == topk["d_star"]
    assert refined["d_star"] < topk["d_star"]


@needs_setuptools
def test_a_misspelt_parameter_of_the_example_is_one_sentence(example_path):
    result = harness(example_path, "run", "--plugin", f"{DECODER}[round=2]",
                     "--n", "512", "--k", "4", "--no-store")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "harness: error: decoder 'pic' has no parameter 'round' (did you mean 'rounds'?); "
        "its parameters are: rounds."]


def code_block_after(text: str, label: str) -> str:
    """The fenced code block that follows the line ``label``."""
    match = re.search(rf"^{re.escape(label)}\n\n```[\w-]*\n(.*?)^```$", text,
                      re.MULTILINE | re.DOTALL)
    assert match, f"CONTRIBUTING.md has no code block after {label!r}"
    return match.group(1)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_contributing_shows_the_example_files_exactly(name):
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    shown = code_block_after(contributing, f"`examples/harness-example-decoder/{name}`:")
    actual = (EXAMPLE / name).read_text(encoding="utf-8")
    assert shown.rstrip("\n") == actual.rstrip("\n")
