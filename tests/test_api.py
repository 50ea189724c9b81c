"""The Python API: the README's notebook example runs, and its records are the command line's."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import superposition_harness as sh
from superposition_harness.cli import main
from superposition_harness.results import strip_volatile
from superposition_harness_builtins.mp import MatchingPursuit
from superposition_harness_builtins.omp import OrthogonalMatchingPursuit

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"n": 256, "k": 3, "seed": 4, "trials": 128}


def cli_records(*args: str) -> list[dict]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(["run", *args, "--no-store", "--json"])
    assert status == 0
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## From Python\n.*?```python\n(.*?)```", text, re.S)
    assert match, "the README has no Python example under 'From Python'"
    return match.group(1)


def test_the_readme_example_runs_and_its_record_is_the_command_lines(capsys):
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    printed = capsys.readouterr().out
    result, results, frame = namespace["result"], namespace["results"], namespace["frame"]
    assert result.ok and result.d_star is not None and "<Score mp N=1024 k=8: d*=" in printed
    [reference] = cli_records("--plugin", "mp", "--n", "1024", "--k", "8", "--seed", "1")
    assert strip_volatile(result.record) == strip_volatile(reference)
    assert result.record["provenance"]["command"][0] == "python-api"
    assert set(result.record["provenance"]) == set(reference["provenance"])
    references = cli_records("--plugin", "topk", "--plugin", "omp[positive=false]", "--n", "1024",
                             "--k", "4", "--k", "8", "--seed", "1")
    assert [strip_volatile(s.record) for s in results] == [strip_volatile(r) for r in references]
    assert list(frame["decoder"]) == ["topk", "omp", "topk", "omp"]
    assert list(frame["d_star"]) == [r["d_star"] for r in references]


def test_a_score_reads_its_record():
    result = sh.score("mp", **SMALL)
    record = result.record
    assert (result.d_star, list(result.d_star_ci)) == (record["d_star"], record["d_star_ci"])
    assert result.bits_per_dim == record["bits_per_dim"] and result.trials == record["trials"]
    assert result.curve == [(p["d"], p["trials"], p["successes"]) for p in record["curve"]]
    assert result.k_star is None and result.decoder == "mp" and result.params == {}
    assert repr(result).startswith("<Score mp N=256 k=3: d*=")


@pytest.mark.parametrize("given", ["omp[positive=false]", OrthogonalMatchingPursuit,
                                   OrthogonalMatchingPursuit(positive=False)],
                         ids=["name", "class", "instance"])
def test_a_decoder_by_name_class_or_instance_gives_the_same_record(given):
    params = {"positive": False} if given is OrthogonalMatchingPursuit else None
    record = sh.score(given, params=params, **SMALL).record
    [reference] = cli_records("--plugin", "omp[positive=false]", "--n", "256", "--k", "3", "--seed", "4",
                              "--trials", "128")
    assert strip_volatile(record) == strip_volatile(reference)


def test_params_cannot_be_given_with_a_decoder_already_made():
    with pytest.raises(TypeError, match="already made"):
        sh.score(MatchingPursuit(), params={"x": 1}, **SMALL)


def test_an_unregistered_decoder_class_is_recorded_as_unregistered():
    class Unregistered(MatchingPursuit):
        name = "mp-copy"

    result = sh.score(Unregistered, **SMALL)
    assert result.ok and result.record["plugin_version"] == "0+unregistered"
    assert result.record["decoder"] == "mp-copy" and result.d_star == sh.score("mp", **SMALL).d_star


def test_a_failing_decoder_is_a_score_with_its_error():
    class Fails(MatchingPursuit):
        name = "fails"

        def decode(self, dictionary, signals, *, k, noise):
            raise RuntimeError("no luck")

    result = sh.score(Fails, **SMALL)
    assert not result.ok and "raised RuntimeError: no luck" in result.error
    assert "error" in repr(result)


def test_a_sweep_runs_the_grid_problem_by_problem():
    results = sh.sweep(["topk", "mp"], n=256, k=[2, 3], seed=4, trials=128)
    assert [(s.decoder, s.problem["k"]) for s in results] == [("topk", 2), ("mp", 2), ("topk", 3), ("mp", 3)]


def test_side_by_side_processes_give_the_same_records():
    # Worker processes import the decoders by name: the built-ins, as installed.
    alone = sh.sweep(["topk", "mp"], n=256, k=[2, 3], seed=4, trials=128)
    pooled = sh.sweep(["topk", "mp"], n=256, k=[2, 3], seed=4, trials=128, processes=True)
    assert [strip_volatile(s.record) for s in alone] == [strip_volatile(s.record) for s in pooled]


def test_a_store_is_written_and_reused(tmp_path):
    first = sh.score("mp", results=tmp_path, **SMALL)
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == first.record
    again = sh.score("mp", results=tmp_path, **SMALL)
    assert again.record == first.record  # reused, not measured again
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 1
    frame = sh.records_frame(tmp_path)
    assert list(frame["decoder"]) == ["mp"] and frame["d_star"][0] == first.d_star


def test_a_fixed_dictionary_scores_k_star(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((48, 256))
    path = tmp_path / "dictionary.npy"
    np.save(path, matrix)
    result = sh.score("mp", dictionary=path, trials=128)
    [reference] = cli_records("--plugin", "mp", "--dictionary", str(path), "--trials", "128")
    assert strip_volatile(result.record) == strip_volatile(reference)
    assert result.k_star == reference["k_star"] and result.d_star is None
    assert result.curve[0][0] == reference["curve"][0]["k"]
    assert repr(result).startswith("<Score mp d=48 N=256: k*=")


def test_bad_settings_raise_the_harness_errors():
    with pytest.raises(sh.ProblemError):
        sh.score("mp", n=256, k=300)
    from superposition_harness.plugins import UnknownDecoder

    with pytest.raises(UnknownDecoder):
        sh.score("no-such-decoder", **SMALL)
    with pytest.raises(TypeError, match="a decoder is a name"):
        sh.score(42, **SMALL)  # type: ignore[arg-type]


def test_records_frame_without_pandas_says_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match="records_frame needs pandas: pip install pandas"):
        sh.records_frame([])
