"""Fault injection: every generated input either runs or exits 2 with one line.

Hypothesis generates command lines for ``harness run`` (its options read from the real
parser, so new options are covered too), for the other commands (``verify``,
``publish``, ``plot``, ``leaderboard`` on a valid or a corrupted record, ``check``,
``plugins``, no command), and TOML sweep configs (a valid sweep with faults injected,
cut short, or garbage), mixing valid and invalid values; each runs in-process through
``main`` with its output captured. The contract:

- ``main`` returns 0, 1 (a decoder recorded an error; ``verify`` also 3: some records
  unverifiable) or 2, and nothing escapes it but the ``SystemExit(0)`` of ``--help`` /
  ``--version``; no traceback is printed;
- status 2 leaves one line on stderr, ``harness: error: ...``;
- status 0 of ``run --json`` prints one JSON record per (problem, decoder).

Every example is cheap: valid problems are tiny (N ≤ 512, k ≤ 8 unless k is the
fault), the search is capped (``--d-max 64`` and a few trials per dimension, enough for
the run's target so that no warning precedes an error), records go to a store in the
sandbox or nowhere (``--no-store``), and sizes that are valid but large (N ≥ 10^12) are
ones the memory budget must refuse. Everything runs inside a sandbox directory, so
default output paths (``./leaderboard``, ``./figures``) land there, and no generated
path leaves it.

The inputs are the same on every run (``derandomize=True``); how many each test ran is
printed at the end of the session (``tests/fault_counts.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fault_counts
import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from superposition_harness import parallel
from superposition_harness.cli import build_parser, main
from superposition_harness.config import FIELDS, TOP_LEVEL, is_dictionary_file, parse_decoder_spec
from superposition_harness.plugins import load_registry
from superposition_harness.search import min_trials_to_pass
from threadpoolctl import threadpool_limits

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# One failure per property, shrunk (report_multiple_bugs=False): hunting and shrinking
# every distinct failure of a run takes minutes while the harness has several.
FAULTS = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                  report_multiple_bugs=False,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.filter_too_much])

RUN_EXAMPLES = 500
OTHER_EXAMPLES = 300
TOML_EXAMPLES = 350

ERROR_PREFIX = "harness: error:"
TRACEBACK = "Traceback (most recent call last)"

# ----------------------------------------------------------------------------- the sandbox

NPY_FILES = ("small.npy", "ints.npy", "nan.npy", "zero-column.npy", "vector.npy", "empty.npy",
             "object.npy", "garbage.npy", "huge-header.npy")
RECORD_SOURCES = ("records-valid", "records-valid/records.jsonl", "mutated", "mutated/records.jsonl",
                  "records", "records/garbage.jsonl", "records/empty.jsonl", "records/torn.jsonl",
                  "missing.jsonl", "emptydir", "valid.toml", "日本/x.jsonl", "-", "--", "a\nb.jsonl")
VALID_TOML = 'decoders = ["topk"]\n[problem]\nn = 128\nk = 2\n[search]\ntarget = 0.5\n'
CONFIG_FILES = ("valid.toml", "missing.toml", "garbage.toml", "empty.toml", "emptydir", "records",
                "records/garbage.jsonl", "", "ünï/cödé.toml", "a\nb.toml")


def _write_sandbox(root: Path) -> None:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((16, 64)).astype(np.float32)
    np.save(root / "small.npy", matrix)
    np.save(root / "ints.npy", np.where(matrix > 0, 1, -1).astype(np.int8))
    with_nan = matrix.copy()
    with_nan[3, 5] = np.nan
    np.save(root / "nan.npy", with_nan)
    zero = matrix.copy()
    zero[:, 7] = 0
    np.save(root / "zero-column.npy", zero)
    np.save(root / "vector.npy", matrix[0])
    np.save(root / "empty.npy", np.zeros((0, 64), np.float32))
    np.save(root / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (root / "garbage.npy").write_bytes(b"\x93NUMPY\x01\x00garbage that is no header\xff\xfe")
    with open(root / "huge-header.npy", "wb") as file:  # claims 80 GB, holds nothing
        np.lib.format.write_array_header_1_0(
            file, {"descr": "<f8", "fortran_order": False, "shape": (100_000, 100_000)})
    (root / "emptydir").mkdir()
    (root / "valid.toml").write_text(VALID_TOML, encoding="utf-8")
    (root / "empty.toml").write_text("", encoding="utf-8")
    (root / "garbage.toml").write_bytes(b"\xff\xfe[problem\x00n = \x80")
    records = root / "records"
    records.mkdir()
    (records / "garbage.jsonl").write_text(
        'not json\n{}\n[1, 2]\n{"decoder": 3}\n{"schema": 99, "decoder": "mp"}\n', encoding="utf-8")
    (records / "empty.jsonl").write_text("", encoding="utf-8")
    (records / "torn.jsonl").write_text('{"decoder": "mp", "status": "ok", "cur', encoding="utf-8")


@dataclass
class Outcome:
    status: Any  # main's return value, or ("SystemExit", code)
    out: str
    err: str


@contextlib.contextmanager
def _inside(directory: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def invoke(argv: list[str], sandbox: Path) -> Outcome:
    """``main(argv)`` in ``sandbox`` with stdout and stderr captured. Process-wide
    settings a run changes (worker and compiled-kernel thread counts, BLAS threads)
    are put back, so that one example cannot change the next."""
    out, err = io.StringIO(), io.StringIO()
    workers, kernel_threads = parallel.workers(), numba.get_num_threads()
    with _inside(sandbox), threadpool_limits(limits=None), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status: Any = main(argv)
        except SystemExit as exc:  # argparse's --help and --version
            status = ("SystemExit", exc.code)
        finally:
            parallel.set_workers(workers)
            numba.set_num_threads(kernel_threads)
    return Outcome(status, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault-injection")
    _write_sandbox(root)
    made = invoke(["run", "--n", "64", "--k", "2", "--plugin", "topk", "--target", "0.5", "--trials", "8",
                   "--d-max", "64", "--workers", "1", "--results", "records-valid"], root)
    assert made.status == 0, made.err
    return root


def _lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text.strip())


def assert_contract(argv: list[str], outcome: Outcome,
                    allowed: frozenset[int] = frozenset({0, 1, 2})) -> None:
    """Runs (a status in ``allowed``, or --help/--version) or exits 2 with one line."""
    status = outcome.status
    if isinstance(status, tuple):
        assert status[1] == 0, f"SystemExit({status[1]!r}) escaped main; stderr:\n{outcome.err}"
        return
    assert status in allowed, f"exit status {status!r}; stderr:\n{outcome.err}"
    assert TRACEBACK not in outcome.err + outcome.out, f"a traceback was printed:\n{outcome.err}"
    if status == 2:
        # Warnings (a torn line skipped on the way) may precede the one line of refusal.
        lines = [line for line in _lines(outcome.err) if not line.startswith("warning ")]
        assert len(lines) == 1, f"status 2 with {len(lines)} lines on stderr:\n{outcome.err}"
        assert lines[0].startswith(ERROR_PREFIX), f"status 2 without {ERROR_PREFIX!r}:\n{outcome.err}"


# ------------------------------------------------------------------------- value pools

REGISTRY = load_registry()
DECODERS = sorted(REGISTRY.decoders)
BUILTINS = sorted(name for name, entry in REGISTRY.decoders.items()
                  if entry.package == "superposition-harness" and entry.cls.any_dictionary)

# Valid values that are large: a run at such N cannot fit any budget generated here
# (the largest is 1TiB), so it must be refused before it starts.
HUGE_INTS = (10**12, 2**63 - 1, 2**63, 2**64, 10**30)
WEIRD_INTS = (0, -1, 1, 2, 3, -(2**63), -(10**30), *HUGE_INTS)
INT_FORMS = ("", " ", "0x10", "1e3", "1.0", "1.5", " 64 ", "６４", "+64", "-0", "6_4", "64abc", "nan",
             "∞", "--1")
FLOAT_FORMS = ("nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e309", "-0.0", "0", "0.0", "1e308",
               "-1e308", "5e-324", "1e-300", "0.1", "0.05", "1", "1.5", "-0.1", "0x1p-1", "½", "1,5", "",
               " 0.1 ", "0.1_0")
STRINGS = ("", " ", "--", "-", "---", "--n", "--plugin", "-p", "ünïcödé", "日本語", "\u202e", "a\nb",
           "tab\there", "missing.toml", "nope/x.npy", "emptydir", "records/garbage.jsonl", "💥", "%s",
           "{}", "[", "mp", "--json", "-1", "1e308")
DICTIONARIES = ("rademacher", "gaussian", "bernoulli", "RADEMACHER", "", " rademacher", *NPY_FILES,
                "missing.npy", "emptydir", "records/garbage.jsonl", "valid.toml", "ñ/ö.npz", "x.safetensors",
                "nan", "a\nb.npy")
SUITE_JUNK = ("huge", "", "QUICK", "quick ", "paper.toml")

CHARACTERS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
# Never a path outside the sandbox, nor the sandbox itself ("", ".", ".."): no example
# reads or writes elsewhere, or searches a whole tree for records.
TEXT = st.text(CHARACTERS, max_size=12).filter(lambda t: "/" not in t and "\\" not in t and t.strip(". "))
INTS = st.one_of(st.sampled_from(WEIRD_INTS), st.integers(-10, 70))
INT_TEXT = st.one_of(INTS.map(str), st.sampled_from(INT_FORMS))
FLOAT_TEXT = st.one_of(st.sampled_from(FLOAT_FORMS), st.floats().map(repr))
ANY_TEXT = st.one_of(INT_TEXT, FLOAT_TEXT, st.sampled_from(STRINGS), TEXT)


def _param_value(param: Any) -> st.SearchStrategy[str]:
    """Text for ``name=value``: valid and invalid values of the parameter's type. Counts
    (iterations, sweeps) stay small: a huge count is a valid, long run, not a fault."""
    if param.type is bool:
        return st.sampled_from(["true", "false", "yes", "0", "True", "maybe", "", "2", "nan"])
    if param.type is int:
        return st.sampled_from(["1", "2", "3", "0", "-1", "x", "1.5", "", "nan", "1e3"])
    if param.type is float:
        bounded = [str(b) for b in (param.minimum, param.maximum) if b is not None]
        return st.one_of(st.sampled_from(FLOAT_FORMS + tuple(bounded)), st.floats().map(repr))
    choices = [str(c) for c in param.choices or ()]
    return st.sampled_from([*choices, "", "nope", "missing", "emptydir", "small.npy", "a=b", "ü"])


@st.composite
def _spec_with_params(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(DECODERS))
    params = REGISTRY.decoders[name].cls.parameters
    pairs = []
    for param in draw(st.lists(st.sampled_from(params), max_size=2)) if params else []:
        pairs.append(f"{param.name}={draw(_param_value(param))}")
    if draw(st.integers(0, 4)) == 0:
        pairs.append(draw(st.sampled_from(["levl=0.3", "k=3", "=3", "x", "", "a=1,a=2", " = "])))
    return f"{name}[{','.join(pairs)}]"


GOOD_SPECS = (*BUILTINS, "threshold[level=0.6]", "threshold[ level = -0.0 ]", "omp[positive=false]",
              "amp[iterations=5,threshold=fixed]", "amp-binary[damping=0.5]", "ista[nonnegative=yes]",
              "lasso-cd[max_sweeps=3]", "fista[tol=0]", "threshold[]", "mp[ ]")
MALFORMED_SPECS = ("mp[", "topk[k=", "", " ", "mp[=3]", "mp[a=1,a=2]", "[level=1]", "threshold[level=0.6",
                   "threshold]", "m p", "threshold[[level=1]]", "threshold[level=0.6]]", "mp[,]",
                   "threshold[level==0.6]", "threshold[level=0.6,]", "mp]", "mp[]extra", "threshold[level]")
UNKNOWN_SPECS = ("mpp", "MP", "thresh", "nope", "mρ", "sae", "sae[weights=missing]", "sae[weights=emptydir]",
                 "sae[weights=small.npy]", "amp_binary", "lasso", "all", "builtin", "-mp", "mp.", "_")
DECODER_SPECS = st.one_of(st.sampled_from(GOOD_SPECS), _spec_with_params(), st.sampled_from(MALFORMED_SPECS),
                          st.sampled_from(UNKNOWN_SPECS), TEXT)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the harness parser has no commands")


RUN_PARSER = _subparsers(build_parser())["run"]
# Every option of `run` as the parser declares it, new ones included (--help comes as junk).
RUN_OPTIONS = [action for action in RUN_PARSER._actions
               if action.option_strings and not isinstance(action, argparse._HelpAction)]


def _pool(valid: Any, invalid: Any) -> tuple[st.SearchStrategy[str], st.SearchStrategy[str]]:
    def strategy(values: Any) -> st.SearchStrategy[str]:
        return values if isinstance(values, st.SearchStrategy) else st.sampled_from(values)
    return strategy(valid), strategy(invalid)


COUNT = _pool(st.one_of(st.integers(4, 64), st.sampled_from(HUGE_INTS)).map(str), INT_TEXT)
# Per option (by dest): values it accepts, all cheap (or refused before any trial, like
# N ≥ 10^12), and values it must refuse; drawn 3 to 1.
VALUES: dict[str, tuple[st.SearchStrategy[str], st.SearchStrategy[str]]] = {
    "n": _pool(["64", "100", "128", "256", "512", " 256", "２５６", "6_4", *map(str, HUGE_INTS)], INT_TEXT),
    "k": _pool(st.integers(1, 8).map(str), INT_TEXT),
    "plugin": _pool(GOOD_SPECS, st.one_of(_spec_with_params(), st.sampled_from(MALFORMED_SPECS),
                                          st.sampled_from(UNKNOWN_SPECS), TEXT)),
    "dictionary": _pool(["rademacher", "gaussian", "small.npy", "ints.npy"], st.one_of(
        st.sampled_from(DICTIONARIES), TEXT)),
    "noise": _pool(["0", "0.0", "-0.0", "0.05", "0.1", "1.5", "1e-300", "5e-324", "1e308", "1e3"],
                   FLOAT_TEXT),
    "target": _pool(["0.5", "0.3", "0.6", "0.75", "1e-300", "5e-324", "0.5_0", " 0.6 "],
                    ["nan", "inf", "-inf", "0", "-0.0", "1", "1.0", "1.5", "1e308", "-1", "x", "", "95%"]),
    "resolution": _pool(["0", "0.01", "0.2", "0.49", "-0.0", "5e-324"], FLOAT_TEXT),
    "memory": _pool(["4GiB", "512MiB", "1", "64GiB", "1TiB", "1.5G", "4 GiB", "4gib", "0.0000001", "100b"],
                    ["0", "-1", "lots", "1e308", "inf", "nan", "0.000000000001", "", "1e3MiB", "½GiB",
                     "4GiB4"]),
    "threads": _pool(["1", str(10**30), str(2**64)], ["0", "-1", "x", "1.5", ""]),
    # A valid timeout runs each job in a worker process of its own (a second or two
    # each); only huge ones are generated, with one decoder (see run_arguments).
    "timeout": _pool(["1e308", "1000000000000"],
                     ["0", "-1", "-0.0", "nan", "inf", "-inf", "x", "", "1e-400"]),
    "config": _pool(["valid.toml", "empty.toml"], [c for c in CONFIG_FILES if not c.endswith("valid.toml")]),
    "results": _pool(["store"], st.one_of(st.sampled_from(["", "nowhere/deep", "records/garbage.jsonl"]),
                                         TEXT)),
}


def _option_value(action: argparse.Action) -> st.SearchStrategy[str]:
    if action.dest in VALUES:
        valid, invalid = VALUES[action.dest]
    elif action.choices:
        valid, invalid = _pool(sorted(map(str, action.choices)), SUITE_JUNK)
    else:  # the other options take a count or a seed; a new option gets anything
        valid, invalid = COUNT[0], st.one_of(COUNT[1], ANY_TEXT)
    return st.one_of(valid, valid, valid, invalid)


@st.composite
def _option(draw: st.DrawFn) -> list[str]:
    action = draw(st.sampled_from(RUN_OPTIONS))
    flag = draw(st.sampled_from(action.option_strings))
    if action.nargs == 0:
        return [flag]
    value = draw(_option_value(action))
    if flag.startswith("--") and draw(st.integers(0, 5)) == 0:
        return [f"{flag}={value}"]
    return [flag, value]


JUNK_TOKENS = st.one_of(
    st.sampled_from(["--frobnicate", "--N", "-n", "--n=", "--plugin=", "--n=64", "--", "-", "---", "--no",
                     "—n", "--trials=0", "stray", "run", "-pmp", "-p=mp", "--json=1", "-h", "--help"]),
    ANY_TEXT)


def trials_for(target: float) -> int:
    """The fewest trials per dimension (at least 8) that can show ``p ≥ target``, so that
    the run prints no warning."""
    trials = 8
    while trials < min_trials_to_pass(target, trials):
        trials += 1
    return trials


def _last_value(tokens: list[str], flag: str) -> str | None:
    """The value argparse keeps for ``flag`` in ``tokens`` (the last one), if any."""
    value = None
    for i, token in enumerate(tokens):
        if token == "--":
            break
        if token == flag and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif token.startswith(flag + "="):
            value = token.split("=", 1)[1]
    return value


def _positive_float(text: str) -> bool:
    try:
        return 0 < float(text) < math.inf
    except ValueError:
        return False


def _names_option(tokens: list[str], flag: str) -> bool:
    return any(t == flag or t.startswith(flag + "=") for t in tokens)


@st.composite
def run_arguments(draw: st.DrawFn) -> list[str]:
    """``harness run`` with up to five generated options (and, in one example of four,
    junk tokens among them) between fixed ones that keep it cheap: ``--workers 1
    --target 0.5`` (``--n 256`` / ``--k 2`` when no N / k is generated: every built-in
    runs in the examples that name no decoder, and at the default k = 16 most of their
    searches would run to ``--d-max``; one built-in decoder in half of those examples)
    before, so that generated values override them, and
    ``--trials T --d-max 64`` and the store after, so that they override generated ones
    (which argparse still checks)."""
    items = draw(st.lists(_option(), max_size=5))
    if draw(st.integers(0, 3)) == 0:
        for junk in draw(st.lists(JUNK_TOKENS, min_size=1, max_size=2)):
            items.insert(draw(st.integers(0, len(items))), [junk])
    generated = [token for item in items for token in item]
    head = ["run", "--workers", "1", "--target", "0.5"]
    if not _names_option(generated, "--n"):
        head += ["--n", "256"]
    if not _names_option(generated, "--k"):
        head += ["--k", "2"]
    named = _names_option(generated, "--plugin") or any(t.startswith("-p") for t in generated)
    timeout = _last_value(generated, "--timeout")
    if not named and (draw(st.booleans()) or (timeout is not None and _positive_float(timeout))):
        head += ["--plugin", draw(st.sampled_from(BUILTINS))]  # else every built-in runs
    try:
        target = float(_last_value(generated, "--target") or "0.5")
    except ValueError:
        target = 0.5
    trials = trials_for(target) if 0 < target < 1 else 8
    tail = ["--trials", str(trials), "--d-max", "64"]
    tail += ["--no-store"] if draw(st.booleans()) else ["--results", "store"]
    tail += ["--json"] if draw(st.booleans()) else []
    return head + generated + tail


def _expected_records(argv: list[str]) -> Counter[tuple[Any, ...]] | None:
    """(N, k, decoder) of every record a plain run (no config or suite) must print."""
    args = build_parser().parse_args(argv)
    if args.config or args.suite:
        return None
    decoders = [parse_decoder_spec(text).name for text in args.plugin] or BUILTINS
    if args.dictionary and is_dictionary_file(args.dictionary):
        return Counter(("file", name) for name in decoders)
    return Counter((n, k, name) for n in args.n or [4096] for k in args.k or [16] for name in decoders)


def assert_json_records(argv: list[str], outcome: Outcome) -> None:
    """``run --json`` printed one record per (problem, decoder), each a JSON object."""
    records = [json.loads(line) for line in outcome.out.splitlines() if line.strip()]
    assert all(isinstance(r, dict) and r.get("status") == "ok" for r in records)
    pairs = Counter((json.dumps(r["problem"], sort_keys=True), r["decoder"],
                     json.dumps(r["params"], sort_keys=True)) for r in records)
    problems = {p for p, _, _ in pairs}
    decoders = {(d, q) for _, d, q in pairs}
    assert set(pairs) == {(p, d, q) for p in problems for d, q in decoders}, "not one record per pair"
    expected = _expected_records(argv)
    if expected is not None:
        seen = Counter(("file", r["decoder"]) if r["problem"]["dictionary"] == "file"
                       else (r["problem"]["n"], r["problem"]["k"], r["decoder"]) for r in records)
        assert seen == expected


# ----------------------------------------------------------------------- the properties


@settings(FAULTS, max_examples=RUN_EXAMPLES)
@given(argv=run_arguments())
def test_every_run_command_line_runs_or_exits_2_with_one_line(sandbox, argv):
    """`harness run` with generated options (valid, invalid, junk) keeps the contract."""
    fault_counts.add("run argument lists")
    outcome = invoke(argv, sandbox)
    assert_contract(argv, outcome)
    if outcome.status == 0 and build_parser().parse_args(argv).json:
        assert_json_records(argv, outcome)


# How to corrupt the valid record: (path into it, new value or DELETE); None: leave it valid.
RECORD_PATHS = ("schema", "decoder", "plugin_version", "params", "problem", "problem.n", "problem.k",
                "problem.dictionary", "problem.noise", "problem.seed", "problem.subsets_per_draw", "target",
                "search", "search.max_trials_per_dimension", "search.d_max", "search.resolution", "d_star",
                "d_star_ci", "d_half", "entropy_bits", "bits_per_dim", "trials", "trials_by_estimate",
                "curve", "curve.0", "curve.0.d", "curve.0.trials", "curve.0.successes", "curve.0.outcomes",
                "status", "error", "provenance", "provenance.harness_version")
DELETE = "<delete>"
RECORD_VALUES = st.sampled_from([DELETE, None, "x", "", -1, 0, 1, 3, 65, 1000, 10**30, 1e308, -0.0, math.nan,
                                 math.inf, [], {}, [1, 2], True, "zz", "ff" * 64, "ok", "error", "mp", "file",
                                 {"n": 64}, [{"d": 1}]])
MUTATION = st.tuples(st.sampled_from(RECORD_PATHS), RECORD_VALUES)
MUTATIONS = st.one_of(st.none(), MUTATION, MUTATION)

# The corrupted record (in mutated/) is the most common source.
SOURCES = st.lists(st.one_of(st.sampled_from(["mutated", "mutated/records.jsonl"]),
                             st.sampled_from(RECORD_SOURCES), TEXT), max_size=2)
OUT_DIRS = st.sampled_from(["out", "out/sub", "ünï out", "records/garbage.jsonl", "small.npy", "out/../out2"])


def _flags(*flags: str) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(flags), max_size=2)


OTHER_COMMANDS = st.one_of(
    st.builds(lambda s, f, o: ["verify", *s, *f, *o], SOURCES, _flags("--json", "--all"),
              st.lists(st.tuples(st.sampled_from(["--sample", "--seed"]), INT_TEXT).map(list), max_size=2)
              .map(lambda pairs: [t for pair in pairs for t in pair])),
    st.builds(lambda s, o, f: ["publish", *s, "--out", o, *f, "--no-figures"], SOURCES, OUT_DIRS,
              _flags("--no-figures", "--frobnicate")),
    st.builds(lambda s, o, f: ["plot", *s, "--out", o, *f], SOURCES, OUT_DIRS,
              st.lists(st.sampled_from(["--format", "svg", "png", "pdf", "", "--json"]), max_size=3)),
    st.builds(lambda r, f: ["leaderboard", "--results", r, *f],
              st.one_of(st.just("mutated"), TEXT, st.sampled_from(
                  ["records-valid", "records", "nowhere", "emptydir", "records/garbage.jsonl", "", "store"])),
              _flags("--json", "-x")),
    st.builds(lambda d, f: ["check", *d, *f], st.lists(DECODER_SPECS, min_size=1, max_size=2),
              _flags("--json", "--frobnicate")),
    st.builds(lambda f: ["plugins", *f],
              st.lists(st.sampled_from(["--json", "--all", "mp", "-", ""]), max_size=2)),
    st.sampled_from([[], ["--version"], ["-h"], ["--help"], ["explode"], ["--frobnicate"], ["run", "--help"],
                     ["verify"], ["-"], [""], ["RUN"]]),
)


def _mutated(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``record`` with the value at ``path`` (keys and list indices joined by
    dots) replaced by ``value``, or removed (DELETE)."""
    record = json.loads(json.dumps(record))
    *parents, last = path.split(".")
    owner: Any = record
    for key in parents:
        if isinstance(owner, list):
            owner = owner[int(key)] if int(key) < len(owner) else None
        else:
            owner = owner.get(key) if isinstance(owner, dict) else None
    if isinstance(owner, dict):
        if value == DELETE:
            owner.pop(last, None)
        else:
            owner[last] = value
    elif isinstance(owner, list) and int(last) < len(owner):
        if value == DELETE:
            del owner[int(last)]
        else:
            owner[int(last)] = value
    return record


@settings(FAULTS, max_examples=OTHER_EXAMPLES)
@given(argv=OTHER_COMMANDS, mutation=MUTATIONS)
def test_every_other_command_line_runs_or_exits_2_with_one_line(sandbox, argv, mutation):
    """The other commands keep the contract, on records files that may hold a corrupted record."""
    fault_counts.add("other command argument lists")
    mutated = sandbox / "mutated"
    mutated.mkdir(exist_ok=True)
    lines = (sandbox / "records-valid" / "records.jsonl").read_text(encoding="utf-8").splitlines()
    if mutation is not None:
        lines = [json.dumps(_mutated(json.loads(lines[0]), *mutation))]
    (mutated / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    outcome = invoke(argv, sandbox)
    # verify's status 3: none failed, some could not be verified (README).
    allowed = frozenset({0, 1, 2, 3}) if argv[:1] == ["verify"] else frozenset({0, 1, 2})
    assert_contract(argv, outcome, allowed)


# ---------------------------------------------------------------------------- TOML configs

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    return '"' + "".join(ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                         for c in text) + '"'


def toml_key(key: str) -> str:
    return key if BARE_KEY.match(key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def toml_document(document: dict[str, Any]) -> str:
    """TOML text for ``document``: top-level values, then ``[tables]``, then ``[[arrays]]``
    of tables; anything deeper inline."""
    def is_tables(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in document.items()
             if not isinstance(v, dict) and not is_tables(v)]
    for key, value in document.items():
        if isinstance(value, dict):
            lines += ["", f"[{toml_key(key)}]",
                      *(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())]
    for key, value in document.items():
        if is_tables(value):
            for table in value:
                lines += ["", f"[[{toml_key(key)}]]",
                          *(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


SMALL_N = st.sampled_from([64, 128, 256, 512])
TOML_SCALARS = st.one_of(st.sampled_from([0, -1, 1, *HUGE_INTS, -(10**30), 1.5, -0.0, math.nan, math.inf,
                                          1e308, 5e-324, True, False, "", "x", "64", "ünï", "a\nb", "\x7f",
                                          "a\x00b", "small.npy", "emptydir"]),
                         st.datetimes(timezones=st.just(dt.timezone.utc)), st.dates(), st.times())
TOML_JUNK = st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=2), st.just([]), st.just([[64]]),
                      st.dictionaries(st.sampled_from(["a", "n", "x y", ""]), TOML_SCALARS, max_size=2))


def _one_or_two(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(values, st.lists(values, min_size=1, max_size=2))


VALID_SPECS = st.sampled_from([*GOOD_SPECS, "builtin", "all"])


def _param_value_typed(param: Any) -> st.SearchStrategy[Any]:
    if param.type is bool:
        return st.sampled_from([True, False, "true", 1, 0])
    if param.type is int:
        return st.sampled_from([1, 2, 3, 0, -1, 1.5, "3", True, [1]])
    if param.type is float:
        bounded = [b for b in (param.minimum, param.maximum) if b is not None]
        return st.sampled_from([0.5, 0.1, 1, 0, -1, math.nan, math.inf, 1e308, -0.0, "0.5", True, *bounded])
    return st.sampled_from([*(param.choices or ()), "", "nope", "emptydir", 3, ["fixed"]])


def _valid_param_value(param: Any) -> st.SearchStrategy[Any]:
    if param.choices:
        return st.sampled_from(list(param.choices))
    if param.type is bool:
        return st.booleans()
    if param.type is int:  # counts: small ones
        return st.sampled_from([param.default, 1, 2])
    bounds = [float(b) for b in (param.minimum, param.maximum) if b is not None]
    return st.sampled_from([param.default, *bounds])


@st.composite
def _valid_decoder_table(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(BUILTINS))
    table: dict[str, Any] = {"name": name}
    parameters = REGISTRY.decoders[name].cls.parameters
    if parameters and draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(parameters), max_size=2, unique_by=lambda p: p.name))
        table["params"] = {p.name: draw(_valid_param_value(p)) for p in chosen}
    return table


@st.composite
def _decoder_table(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.one_of(st.sampled_from(BUILTINS), st.sampled_from(DECODERS),
                          st.sampled_from(UNKNOWN_SPECS), TOML_SCALARS))
    table: dict[str, Any] = {} if draw(st.integers(0, 9)) == 0 else {"name": name}
    entry = REGISTRY.decoders.get(name) if isinstance(name, str) else None
    if entry is not None and entry.cls.parameters and draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(entry.cls.parameters), max_size=2, unique_by=lambda p: p.name))
        table["params"] = {p.name: draw(_param_value_typed(p)) for p in chosen}
    elif draw(st.integers(0, 3)) == 0:
        table["params"] = draw(st.one_of(TOML_JUNK, st.just({"levl": 0.3})))
    if draw(st.integers(0, 5)) == 0:
        table["extra"] = 1
    return table


# Valid values of every config field, all cheap (N ≥ 10^12 must be refused by the memory
# budget); a field added to config.FIELDS later gets small integers.
VALID_FIELDS: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("problem", "n"): _one_or_two(st.one_of(SMALL_N, SMALL_N, SMALL_N, st.sampled_from(HUGE_INTS))),
    ("problem", "k"): _one_or_two(st.integers(1, 8)),
    ("problem", "dictionary"): _one_or_two(st.sampled_from(["rademacher", "gaussian", "small.npy"])),
    ("problem", "noise"): _one_or_two(st.one_of(st.sampled_from([0, 0.0, 0.05, 0.1, -0.0]),
                                                st.sampled_from([1e308, 5e-324, 1e-300, 1e200]))),
    ("problem", "seed"): st.one_of(st.integers(0, 10), st.sampled_from(HUGE_INTS)),
    ("problem", "subsets_per_draw"): st.integers(4, 32),  # 1 is valid, and slow: a decoder call per signal
    ("search", "target"): st.sampled_from([0.5, 0.3, 0.6, 0.75, 1e-300]),
    ("search", "trials"): st.integers(1, 16),
    ("search", "d_max"): st.integers(1, 64),
    ("search", "k_max"): st.integers(1, 16),
    ("search", "resolution"): st.sampled_from([0, 0.0, 0.01, 0.2, 0.49, -0.0]),
    ("run", "batch_size"): st.one_of(st.integers(4, 64), st.sampled_from(HUGE_INTS)),
}


def _section(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        key: VALID_FIELDS.get((owner, key), st.integers(1, 8)) for owner, key in FIELDS if owner == name})


# `problem` and `decoders` are there unless a fault removes them (without decoders every
# built-in runs, which is slower).
VALID_DOCUMENT = st.fixed_dictionaries({
    "decoders": st.one_of(st.lists(VALID_SPECS, max_size=2), VALID_SPECS),
    "problem": _section("problem"),
}, optional={
    "search": _section("search"),
    "run": _section("run"),
    "decoder": st.lists(_valid_decoder_table(), min_size=1, max_size=2),
    "description": st.text(CHARACTERS, max_size=20),
})
SECTION_NAMES = sorted({owner for owner, _ in FIELDS})
JUNK_KEYS = ("problme", "Problem", "suite", "decoders_", "", "ünï", "search.extra", "N", "size", "trails",
             "seed ", "n.k", "batch", "workers", "a\nb")


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid sweep with up to two faults injected: a field, a section or a top-level
    value of the wrong type or shape, a decoder that is malformed, unknown or has bad
    parameters, a key the config does not know, or a key removed."""
    document = draw(VALID_DOCUMENT)
    problem = document.get("problem", {})
    for key in ("noise", "dictionary", "k", "n"):  # at most two problems: lists beyond that are cut
        sizes = [len(v) for v in problem.values() if isinstance(v, list)]
        if math.prod(sizes) > 2 and isinstance(problem.get(key), list):
            problem[key] = problem[key][0]
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.sampled_from([None, *SECTION_NAMES]))
        keys = [key for section, key in FIELDS if section == where] if where else list(TOP_LEVEL)
        key = draw(st.one_of(st.sampled_from(keys), st.sampled_from(JUNK_KEYS)))
        value = draw(st.one_of(TOML_JUNK, st.lists(_decoder_table(), max_size=2), DECODER_SPECS,
                               st.lists(DECODER_SPECS, max_size=2), st.just(DELETE)))
        owner = document if where is None else document.get(where)
        if value == DELETE:
            if isinstance(owner, dict):
                owner.pop(key, None)
        elif where is None:
            document[key] = value
        elif isinstance(owner, dict):
            owner[key] = value
        else:
            document[where] = {key: value}
    return document


@st.composite
def toml_configs(draw: st.DrawFn) -> bytes:
    """A TOML document: generated (most), cut short, or garbage text or bytes."""
    kind = draw(st.sampled_from(["document"] * 6 + ["truncated", "text", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "text":
        return draw(st.text(CHARACTERS, max_size=40)).encode("utf-8")
    text = toml_document(draw(documents()))
    if kind == "truncated":
        text = text[:draw(st.integers(0, max(0, len(text) - 1)))]
    return text.encode("utf-8")


def config_arguments(path: str, content: bytes) -> list[str]:
    """``run --config PATH`` with the caps, plus ``--n 256`` / ``--k 2`` / ``--target 0.5``
    where the document leaves N / k / the target to their defaults (4096 / 16 / 0.95, which
    would take a bigger problem, longer searches or more trials: a document that names no
    decoder runs every built-in)."""
    try:
        document: Any = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        document = {}
    problem = document.get("problem") if isinstance(document.get("problem"), dict) else {}
    search = document.get("search") if isinstance(document.get("search"), dict) else {}
    argv = ["run", "--config", path, "--workers", "1", "--d-max", "64", "--no-store", "--json"]
    if "n" not in problem:
        argv += ["--n", "256"]
    if "k" not in problem:
        argv += ["--k", "2"]
    target = search.get("target", 0.5)
    if "target" not in search:
        argv += ["--target", "0.5"]
    valid = isinstance(target, (int, float)) and not isinstance(target, bool) and 0 < target < 1
    return argv + ["--trials", str(trials_for(target) if valid else 8)]


@settings(FAULTS, max_examples=TOML_EXAMPLES)
@given(content=toml_configs())
def test_every_toml_config_runs_or_exits_2_with_one_line(sandbox, content):
    """`harness run --config FILE` keeps the contract for generated, broken and garbage configs."""
    fault_counts.add("TOML configs")
    path = sandbox / "generated.toml"
    path.write_bytes(content)
    argv = config_arguments(path.name, content)
    outcome = invoke(argv, sandbox)
    assert_contract(argv, outcome)
    if outcome.status == 0:
        assert_json_records(argv, outcome)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(FAULTS, max_examples=100)
@given(document=documents())
def test_the_toml_writer_writes_what_tomllib_reads_back(document):
    """The generated documents are the TOML they mean to be (so a refusal is the harness's)."""
    assert _same(tomllib.loads(toml_document(document)), document)
