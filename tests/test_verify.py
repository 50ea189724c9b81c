"""`harness verify`: records whose counts hold up pass, edited ones fail, others are unverifiable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from superposition_harness.cli import main
from superposition_harness.plugins import load_registry
from superposition_harness.problem import Problem
from superposition_harness.results import decode_outcomes, encode_outcomes
from superposition_harness.verify import (
    DEFAULT_SAMPLE,
    FAILED,
    SKIPPED,
    UNVERIFIABLE,
    VERIFIED,
    _sample,
    detection_probability,
    exit_status,
    memory_hint,
    verify_record,
)

SMALL = ["--n", "256", "--k", "3", "--trials", "96", "--seed", "5"]


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with two real records (mp and topk) made by `harness run`."""
    root = tmp_path_factory.mktemp("store")
    assert main(["run", *SMALL, "--plugin", "mp", "--plugin", "topk", "--results", str(root)]) == 0
    return root


def records_of(store):
    """The store's records by decoder (mp, topk): jobs side by side store them as they finish."""
    records = [json.loads(line) for line in (store / "records.jsonl").read_text().splitlines()]
    return sorted(records, key=lambda record: record["decoder"])


def check(record, registry, **options):
    return verify_record(record, "test:1", registry, **options)


def test_records_made_by_the_harness_verify(store, registry):
    for record in records_of(store):
        verdict = check(record, registry, sample=20)
        assert verdict.status == VERIFIED, verdict.reasons
        assert verdict.rerun_trials == 20


def test_every_trial_can_be_re_run(store, registry):
    record = records_of(store)[0]
    verdict = check(record, registry, sample=None)
    assert verdict.status == VERIFIED and verdict.rerun_trials == record["trials"]


def test_a_hand_edited_success_count_fails(store, registry):
    record = records_of(store)[0]
    point = record["curve"][len(record["curve"]) // 2]
    point["successes"] -= 1
    verdict = check(record, registry)
    assert verdict.status == FAILED
    assert any(f"claims {point['successes']} successes" in reason for reason in verdict.reasons)


def test_counts_and_outcomes_edited_together_fail_when_re_run(store, registry):
    """An edit that keeps the record consistent is caught by the trials themselves."""
    record = records_of(store)[1]
    point = next(p for p in record["curve"] if 0 < p["successes"] < p["trials"])
    bits = decode_outcomes(point["outcomes"], point["trials"])
    failed = int(np.flatnonzero(~bits)[0])
    bits[failed] = True
    point["outcomes"], point["successes"] = encode_outcomes(bits), point["successes"] + 1
    verdict = check(record, registry, sample=None)
    assert verdict.status == FAILED
    # caught by re-running the trial, or by the replayed search (which the extra success
    # sends elsewhere, or to an estimate other than the record's)
    assert any(f"trials {failed}" in reason or "counts give" in reason or "probes" in reason
               or "does not replay" in reason for reason in verdict.reasons), verdict.reasons


def test_an_edited_estimate_fails_the_replayed_search(store, registry):
    record = records_of(store)[0]
    record["d_star"] -= 3
    verdict = check(record, registry, sample=1)
    assert verdict.status == FAILED
    assert any(reason.startswith("its d_star is") for reason in verdict.reasons)


def test_outcomes_that_do_not_fit_the_trials_fail(store, registry):
    record = records_of(store)[0]
    record["curve"][0]["outcomes"] += "00"
    assert check(record, registry).status == FAILED


@pytest.mark.parametrize("edit, fragment", [
    (lambda r: r.update(plugin_version="9.9"), "is installed from superposition-harness 0.1.0"),
    (lambda r: r.update(decoder="not-installed"), "is not installed"),
    (lambda r: r["provenance"].update(harness_version="0.0.1"), "made with harness 0.0.1"),
])
def test_other_versions_and_missing_decoders_are_unverifiable_not_passing(store, registry, edit, fragment):
    record = records_of(store)[0]
    edit(record)
    verdict = check(record, registry)
    assert verdict.status == UNVERIFIABLE and verdict.rerun_trials == 0
    assert any(fragment in reason for reason in verdict.reasons), verdict.reasons
    assert exit_status([verdict]) == 3


def test_an_unverifiable_record_with_edited_counts_still_fails(store, registry):
    record = records_of(store)[0]
    record["plugin_version"] = "9.9"
    record["curve"][0]["successes"] += 1
    assert check(record, registry).status == FAILED


def test_an_error_record_is_skipped(store, registry):
    record = records_of(store)[0]
    record.update(status="error", error="decoder 'mp' raised RuntimeError: boom")
    verdict = check(record, registry)
    assert verdict.status == SKIPPED and exit_status([verdict]) == 0


def test_a_record_without_outcomes_is_unverifiable_never_verified(store, registry):
    record = records_of(store)[0]
    for point in record["curve"]:
        del point["outcomes"]
    verdict = check(record, registry, sample=None)
    assert verdict.status == UNVERIFIABLE and verdict.rerun_trials == 0
    assert any("do not hold their trials' outcomes" in reason for reason in verdict.reasons)
    assert exit_status([verdict]) == 3


def test_outcomes_deleted_with_a_better_d_star_is_not_verified(store, registry):
    """Without outcomes nothing checks the estimates; a score that does not follow from
    them fails, and one that does is still only unverifiable."""
    record = records_of(store)[0]
    for point in record["curve"]:
        del point["outcomes"]
    record["d_star"] -= 5
    assert check(record, registry).status == FAILED  # bits_per_dim no longer follows from d_star
    h = record["entropy_bits"]
    record.update(bits_per_dim=h / record["d_star"], dims_per_bit=record["d_star"] / h)
    record["bits_per_dim_ci"] = [h / record["d_star_ci"][1], h / record["d_star_ci"][0]]
    record["dims_per_bit_ci"] = [record["d_star_ci"][0] / h, record["d_star_ci"][1] / h]
    record["d_star_over_counting"] = record["d_star"] / record["d_counting"]
    verdict = check(record, registry)
    assert verdict.status == UNVERIFIABLE, verdict.reasons


@pytest.mark.parametrize("field, value", [
    ("bits_per_dim", 9.99), ("entropy_bits", 1.0), ("dims_per_bit", 0.1), ("bits_per_dim_ci", [0.5, 9.0]),
    ("dims_per_bit_ci", [0.01, 0.02])])
def test_a_raised_score_fails_whatever_else_holds(store, registry, field, value):
    record = records_of(store)[0]
    record[field] = value
    verdict = check(record, registry, sample=0)
    assert verdict.status == FAILED
    assert any(reason.startswith(f"its {field} is") for reason in verdict.reasons), verdict.reasons


def test_a_field_the_harness_does_not_make_is_unverifiable(store, registry):
    record = records_of(store)[0]
    record["certified"] = True
    verdict = check(record, registry, sample=0)
    assert verdict.status == UNVERIFIABLE
    assert any("certified" in reason for reason in verdict.reasons)


def test_a_missing_score_field_fails(store, registry):
    record = records_of(store)[0]
    del record["bits_per_dim_ci"]
    assert check(record, registry, sample=0).status == FAILED


def test_a_version_that_does_not_exist_is_unverifiable(store, registry):
    record = records_of(store)[0]
    record.update(plugin_version="99.0.0")
    verdict = check(record, registry)
    assert verdict.status == UNVERIFIABLE and verdict.rerun_trials == 0
    record.update(plugin_version="0.1.0", plugin_package="superposition-harness-pro")
    assert check(record, registry).status == UNVERIFIABLE


def test_the_sample_depends_on_the_seed_and_the_record_not_on_its_place(store):
    record = records_of(store)[0]
    first = _sample(record, 16, seed=0)
    assert first == _sample(json.loads(json.dumps(record)), 16, seed=0)
    assert first != _sample(record, 16, seed=1)
    assert sum(len(trials) for _, trials in first) == 16
    assert sum(len(trials) for _, trials in _sample(record, 10**6, seed=0)) == record["trials"]


def test_the_default_sample_is_drawn_from_fresh_entropy_and_reported(store, registry):
    record = records_of(store)[0]
    seeds = {check(record, registry, sample=4).sample_seed for _ in range(3)}
    assert len(seeds) == 3 and None not in seeds
    assert check(record, registry, sample=4, seed=12345).sample_seed == 12345


def test_the_default_sample_catches_one_percent_of_flipped_trials_with_probability_099():
    assert DEFAULT_SAMPLE == 459
    assert (1 - 0.01) ** DEFAULT_SAMPLE <= 0.01 < (1 - 0.01) ** (DEFAULT_SAMPLE - 1)
    for trials in (100, 459, 460, 1000, 4448, 100_000):
        assert detection_probability(trials, DEFAULT_SAMPLE) >= 0.99
    assert detection_probability(300, DEFAULT_SAMPLE) == 1.0  # a smaller record is re-run whole
    assert detection_probability(10_000, 32) < 0.3  # the old default of 32 trials missed most forgeries


def test_a_fixed_dictionary_record_needs_its_file(tmp_path, registry, capsys):
    rng = np.random.default_rng(4)
    matrix = (rng.choice([-1.0, 1.0], size=(48, 256)) / np.sqrt(48)).astype(np.float32)
    path = tmp_path / "F.npy"
    np.save(path, matrix)
    assert main(["run", "--dictionary", str(path), "--plugin", "topk", "--trials", "64",
                 "--no-store", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert check(record, registry).status == VERIFIED
    np.save(path, -matrix)
    verdict = check(record, registry)
    assert verdict.status == UNVERIFIABLE and "SHA-256" in verdict.reasons[-1]
    path.unlink()
    assert check(record, registry).status == UNVERIFIABLE


def test_the_command_exits_0_1_or_3_and_names_what_it_found(store, tmp_path, capsys):
    assert main(["verify", str(store), "--sample", "8"]) == 0
    out = capsys.readouterr().out
    assert "2 verified, 0 failed, 0 unverifiable, 0 skipped" in out

    edited = records_of(store)
    edited[0]["curve"][0]["successes"] += 1
    edited[1]["plugin_version"] = "9.9"
    bad = tmp_path / "submitted.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in edited))
    assert main(["verify", str(bad), "--json"]) == 1
    verdicts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [v["status"] for v in verdicts] == [FAILED, UNVERIFIABLE]
    assert verdicts[0]["source"] == f"{bad}:1"

    bad.write_text(json.dumps(edited[1]) + "\n")
    assert main(["verify", str(bad)]) == 3


def test_a_budget_too_small_for_the_draws_is_named_and_changes_nothing(store, tmp_path, capsys):
    """`--memory` is the re-runs' budget: one too small to keep a draw's sign bits makes them
    again for every product (slower), says so with the budget that would hold them, and
    gives the same verdicts and re-run outcomes as the default."""
    assert main(["verify", str(store), "--sample", "8", "--seed", "3", "--no-journal", "--json"]) == 0
    default = capsys.readouterr()
    assert "do not fit" not in default.err
    assert main(["verify", str(store), "--sample", "8", "--seed", "3", "--no-journal", "--json",
                 "--memory", "1MiB"]) == 0
    small = capsys.readouterr()
    assert small.out == default.out
    hints = [line for line in small.err.splitlines() if "do not fit" in line]
    assert len(hints) == 2 and all("give --memory 1GiB or more" in line for line in hints), hints


def test_the_memory_hint_names_the_budget_that_holds_a_draw():
    paper = Problem(n=2**20, k=256)
    budget, working = 4 << 30, 500 << 20
    # 2^20 codewords of 54976 dimensions: 859 words each, 6.7 GiB of sign bits (7.2 with the rest).
    hint = memory_hint(paper, 54976, working, budget)
    assert hint is not None and "d = 54976" in hint and "give --memory 8GiB or more" in hint
    assert memory_hint(paper, 54976, working, 8 << 30) is None
    assert memory_hint(paper, 4096, working, budget) is None  # 512 MiB fits
    assert memory_hint(Problem(n=2**20, k=256, dictionary="gaussian"), 54976, working, budget) is None
    assert memory_hint(paper, 54976, None, budget) is None  # the fixed track: the file's dictionary
    # A budget smaller than the run's own needs asks for both.
    assert "give --memory 2GiB" in memory_hint(paper, 4096, 1536 << 20, 1 << 20)


def test_a_memory_budget_that_is_not_a_size_exits_2(store, capsys):
    assert main(["verify", str(store), "--memory", "plenty"]) == 2
    err = capsys.readouterr().err
    assert "--memory" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"),
    ("[1, 2]\n{}\n", "line 1 is not a result record"),
])
def test_unreadable_inputs_exit_2_with_one_line(tmp_path, capsys, content, fragment):
    path = tmp_path / "records.jsonl"
    if content is not None:
        path.write_text(content)
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_a_torn_last_line_is_not_an_error(store, tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    path.write_text((store / "records.jsonl").read_text() + '{"decoder": "mp", "cur')
    assert main(["verify", str(path), "--sample", "4", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2



def test_the_committed_records_add_up_and_replay(registry):
    """Steps 1 and 2 for every committed record, and a few re-run trials of quick's."""
    from pathlib import Path

    from superposition_harness.results import read_records, record_files

    leaderboard = Path(__file__).resolve().parents[1] / "leaderboard"
    checked = 0
    for path in record_files([leaderboard]):
        for line, record in read_records(path):
            cheap = "quick" in path.parts and record["decoder"] in ("topk", "mp", "threshold")
            verdict = verify_record(record, f"{path}:{line}", registry, sample=2 if cheap else 0)
            assert verdict.status == VERIFIED, (verdict.source, verdict.reasons)
            checked += 1
    assert checked >= 38


def schema_1_record():
    """An mp record as the harness wrote it before schema 2 (its search confirmed nothing)."""
    from superposition_harness import Problem
    from superposition_harness.results import make_record, provenance
    from superposition_harness.runner import RunSettings, run_decoder
    from superposition_harness_builtins.mp import MatchingPursuit

    settings = RunSettings(max_trials=96, confirm_trials=96)
    run = run_decoder(Problem(n=256, k=3, seed=5), MatchingPursuit(), settings)
    record = make_record(run, decoder_name="mp", plugin_package="superposition-harness",
                         plugin_version="0.1.0", provenance=provenance(argv=["run"]), schema=1)
    return json.loads(json.dumps(record))


def test_a_schema_1_record_is_verified_under_its_own_rules(registry):
    record = schema_1_record()
    assert verify_record(record, "old", registry, sample=4).status == VERIFIED


def test_a_schema_1_record_relabelled_as_schema_2_fails(registry):
    record = schema_1_record()
    record["schema"] = 2
    reasons = " ".join(verify_record(record, "relabelled", registry, sample=0).reasons)
    assert "it lacks d_counting" in reasons


def test_a_record_of_an_unknown_schema_is_unverifiable(registry):
    record = schema_1_record()
    record["schema"] = 7
    verdict = verify_record(record, "future", registry, sample=0)
    assert verdict.status == UNVERIFIABLE
    assert "record schema 7, which this harness cannot read (it reads 1, 2)" in verdict.reasons[0]
