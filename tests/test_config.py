"""Sweep configurations, decoder selections and the built-in suites."""

from __future__ import annotations

import pytest
from superposition_harness.config import (
    SUITES,
    ConfigError,
    DecoderSpec,
    Sweep,
    apply_config,
    parse_decoder_spec,
    read_config,
    read_suite,
)
from superposition_harness.problem import ProblemError


def test_decoder_specs_parse_names_and_parameters():
    assert parse_decoder_spec("mp") == DecoderSpec("mp")
    spec = parse_decoder_spec("threshold[level=0.6, other = x]")
    assert spec.name == "threshold" and spec.texts == (("level", "0.6"), ("other", "x"))
    assert spec.label == "threshold[level=0.6,other=x]"


@pytest.mark.parametrize("text", ["", "mp[", "m p", "mp[level]", "mp[=3]", "mp[a=1,a=2]"])
def test_malformed_decoder_specs_are_refused(text):
    with pytest.raises(ConfigError):
        parse_decoder_spec(text)


def test_a_full_config_fills_the_sweep(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text("""
decoders = ["mp", "threshold[level=0.6]"]
[problem]
n = [512, 1024]
k = 4
dictionary = ["rademacher", "gaussian"]
noise = [0, 0.1]
seed = 7
subsets_per_draw = 16
[search]
target = 0.9
trials = 100
d_max = 500
[run]
batch_size = 5
[[decoder]]
name = "topk"
params = {}
""")
    sweep = apply_config(Sweep(), read_config(path), str(path))
    assert sweep.n == [512, 1024] and sweep.k == [4] and sweep.noise == [0.0, 0.1]
    assert (sweep.seed, sweep.subsets_per_draw, sweep.target, sweep.trials, sweep.d_max,
            sweep.batch_size) == (7, 16, 0.9, 100, 500, 5)
    assert [d.name for d in sweep.decoders] == ["mp", "threshold", "topk"]
    problems = sweep.problems()
    assert len(problems) == 8
    assert {p.dictionary for p in problems} == {"rademacher", "gaussian"}


@pytest.mark.parametrize("text, fragment", [
    ("[problem]\nN = 4", "unknown key 'N' in [problem]"),
    ("[problme]\nn = 4", "unknown key 'problme' in the top level"),
    ("[search]\ntrails = 4", "did you mean 'trials'"),
    ("[problem]\nn = 'big'", "n in"),
    ("[problem]\nn = true", "must be an integer"),
    ("problem = 3", "must be a table"),
    ("[[decoder]]\nparams = {}", "has no name"),
    ("[[decoder]]\nname = 'mp'\nextra = 1", "unknown key 'extra'"),
    ("decoders = [3]", "each entry of decoders"),
    ("[problem\nn = 4", "not valid TOML"),
])
def test_bad_configs_name_what_to_change(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        apply_config(Sweep(), read_config(path), str(path))
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_a_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(tmp_path / "nope.toml")


def test_invalid_problem_values_surface_when_the_sweep_is_built():
    sweep = Sweep(n=[4], k=[8])
    with pytest.raises(ProblemError, match="k must be smaller than N"):
        sweep.problems()


@pytest.mark.parametrize("name", SUITES)
def test_the_built_in_suites_are_valid_sweeps(name):
    sweep = apply_config(Sweep(), read_suite(name), name)
    problems = sweep.problems()
    assert problems and all(p.dictionary == "rademacher" and p.noise == 0 for p in problems)
    assert sweep.target == 0.95


def test_the_quick_suite_is_spec_section_5():
    sweep = apply_config(Sweep(), read_suite("quick"), "quick")
    assert sweep.n == [4096] and sweep.k == [4, 8, 16, 32] and sweep.decoder_sets == ["builtin"]
