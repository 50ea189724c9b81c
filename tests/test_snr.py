"""The fixed-SNR track: noise of variance k/(d·S), its Shannon limit, and every room that shows it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from superposition_harness.cli import main
from superposition_harness.config import ConfigError, Sweep, apply_config
from superposition_harness.decoder import Decoder
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.plugins import load_registry
from superposition_harness.problem import (
    Problem,
    ProblemError,
    draw_noise,
    draw_subsets,
    entropy_bits,
    shannon_dimension_snr,
)
from superposition_harness.publish import make_row, track
from superposition_harness.results import SCHEMA_VERSION, score_fields
from superposition_harness.runner import TrialRunner
from superposition_harness.verify import VERIFIED, verify_record

SMALL = ["--n", "256", "--k", "3", "--trials", "96", "--seed", "5"]


def test_the_noise_variance_is_k_over_d_s_so_the_snr_per_dimension_is_s():
    problem = Problem(n=4096, k=16, snr=15.0)
    assert problem.noisy and problem.sigma(64) == pytest.approx(math.sqrt(16 / (64 * 15)))
    assert problem.sigma(64, k=4) == pytest.approx(math.sqrt(4 / (64 * 15)))
    assert Problem(n=4096, k=16, noise=0.2).sigma(64) == 0.2 and not Problem(n=4096, k=16).noisy
    # Measured on the instances themselves: signal power per coordinate over noise power.
    for d in (64, 512):
        dictionary = generated_dictionary(problem, d, 0)
        subsets = draw_subsets(problem, 0)
        clean = dictionary.superpose(subsets)
        noisy = dictionary.superpose(subsets, draw_noise(problem, 0, d), problem.sigma(d))
        signal = float(np.mean(np.sum(clean.astype(np.float64) ** 2, axis=1))) / d
        noise = float(np.mean(np.sum((noisy - clean).astype(np.float64) ** 2, axis=1))) / d
        assert signal / noise == pytest.approx(15.0, rel=0.1)


def test_the_shannon_limit_is_h_over_half_log2_one_plus_s():
    h = entropy_bits(4096, 16)
    assert shannon_dimension_snr(4096, 16, 15.0) == math.ceil(h / 2) == 74
    assert shannon_dimension_snr(4096, 16, 3.0) == math.ceil(h / 1)
    fields = score_fields(Problem(n=4096, k=16, snr=15.0), {"d_star": 111, "d_star_ci": [100, 120]}, 0.95)
    assert fields["d_shannon"] == 74 and fields["d_star_over_shannon"] == pytest.approx(111 / 74)
    with pytest.raises(ValueError):
        shannon_dimension_snr(4096, 16, 0.0)


@pytest.mark.parametrize("snr", [0.0, -1.0, float("nan"), float("inf"), 1e9, True, "15"])
def test_an_snr_out_of_range_is_one_sentence(snr):
    with pytest.raises(ProblemError, match="snr must be a signal-to-noise ratio per dimension"):
        Problem(n=4096, k=16, snr=snr)


def test_a_problem_has_sigma_or_snr_not_both():
    with pytest.raises(ProblemError, match="not both"):
        Problem(n=4096, k=16, noise=0.1, snr=15.0)
    with pytest.raises(ConfigError, match="not both"):
        Sweep(noise=[0.1], snr=[15.0]).problems()


def test_records_say_snr_only_when_there_is_one():
    assert "snr" not in Problem(n=4096, k=16).as_record()
    assert "snr" not in Problem(n=4096, k=16, noise=0.1).as_record()
    assert Problem(n=4096, k=16, snr=15.0).as_record()["snr"] == 15.0


def test_a_config_sweeps_snr_values():
    sweep = apply_config(Sweep(), {"problem": {"n": 256, "k": 3, "snr": [3, 15]}}, "test")
    assert [(p.noise, p.snr) for p in sweep.problems()] == [(0.0, 3.0), (0.0, 15.0)]


class _Listening(Decoder):
    """Hears the noise level each batch is decoded with."""

    name = "listening"
    heard: list[float] = []

    def decode(self, dictionary, signals, *, k, noise=0.0):
        type(self).heard.append(noise)
        return [np.arange(k)] * len(signals)


def test_decoders_are_given_the_noise_level_of_the_dimension_they_decode():
    problem = Problem(n=256, k=3, snr=15.0)
    runner = TrialRunner(problem, _Listening(), batch_size=32)
    _Listening.heard.clear()
    runner(40, 0, 32)
    runner(90, 0, 32)
    assert _Listening.heard == [pytest.approx(math.sqrt(3 / (d * 15))) for d in (40, 90)]


def run_json(capsys, *args):
    status = main(["run", *args, "--json"])
    return status, [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def snr_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("snr")
    assert main(["run", *SMALL, "--plugin", "mp", "--snr", "15", "--results", str(root)]) == 0
    return [json.loads(line) for line in (root / "records.jsonl").read_text().splitlines()]


def test_the_cli_runs_the_fixed_snr_track_and_the_record_says_so(snr_store, capsys):
    [record] = snr_store
    assert record["schema"] == SCHEMA_VERSION and record["problem"]["snr"] == 15.0
    assert record["problem"]["noise"] == 0.0
    assert record["d_shannon"] == shannon_dimension_snr(256, 3, 15.0)
    assert record["d_star_over_shannon"] == pytest.approx(record["d_star"] / record["d_shannon"])
    assert main(["run", *SMALL, "--plugin", "mp", "--snr", "15", "--no-store"]) == 0
    out = capsys.readouterr().out
    assert "snr" in out and "d*/d_Sh" in out


def test_a_fixed_snr_record_verifies_trial_by_trial(snr_store):
    verdict = verify_record(snr_store[0], "test:1", load_registry(), sample=16)
    assert verdict.status == VERIFIED, verdict.reasons


def test_the_command_lines_noise_replaces_the_configs(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text('decoders = ["mp"]\n[problem]\nn = 256\nk = 3\nsnr = 15\n[search]\ntrials = 64\n')
    status, [record] = run_json(capsys, "--config", str(config), "--no-store", "--noise", "0.05")
    assert status == 0 and record["problem"]["noise"] == 0.05 and "snr" not in record["problem"]
    status, [record] = run_json(capsys, "--config", str(config), "--no-store")
    assert status == 0 and record["problem"]["snr"] == 15.0


def test_both_noise_options_are_one_sentence_and_exit_2(capsys):
    assert main(["run", *SMALL, "--plugin", "mp", "--noise", "0.1", "--snr", "15", "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "not both" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_published_rows_and_figures_name_the_snr(snr_store):
    from superposition_harness import plots
    from superposition_harness.publish import Sourced

    [record] = snr_store
    row = make_row(Sourced(record, "records.jsonl", 1))
    assert track(record) == "noisy" and row["snr"] == 15.0 and row["noise"] == 0.0
    assert plots.figure_names(snr_store) == ["shannon-ratio-snr-rademacher-n256"]
