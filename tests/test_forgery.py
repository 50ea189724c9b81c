"""Forged records: none of them is verified, and none displaces the genuine row on the leaderboard.

The forgeries are the ones a submitter could make: outcomes deleted and a better ``d*``
claimed; a self-consistent record (counts, search and score all following from its
outcomes) with 1% of its trials flipped, chosen away from the sample that a fixed
default seed would re-run; a raised ``bits_per_dim``; a version that does not exist.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import zlib

import pytest
from superposition_harness.cli import main
from superposition_harness.plugins import load_registry
from superposition_harness.publish import JSON, publish
from superposition_harness.results import StoreError, decode_outcomes
from superposition_harness.runner import TrialRunner
from superposition_harness.verify import FAILED, UNVERIFIABLE, VERIFIED, _sample, verify_record

PROBLEM = ["--n", "256", "--k", "3", "--seed", "11"]


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def _flipped(salt: int, d: int, trial: int) -> bool:
    return zlib.crc32(f"{salt}:{d}:{trial}".encode()) % 100 == 0


def flipped_trials(record: dict, salt: int) -> set[tuple[int, int]]:
    return {(p["d"], t) for p in record["curve"] for t in range(p["trials"]) if _flipped(salt, p["d"], t)}


def _run_mp(patch: pytest.MonkeyPatch | None = None) -> dict:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["run", *PROBLEM, "--plugin", "mp", "--no-store", "--json"]) == 0
    return json.loads(buffer.getvalue())


@pytest.fixture(scope="module")
def genuine():
    """mp's real record, made by `harness run`."""
    return _run_mp()


@pytest.fixture(scope="module")
def forged():
    return make_forgery()


def make_forgery() -> tuple[dict, set[tuple[int, int]]]:
    """mp's run with 1% of its trials flipped, made by the harness itself (so that its
    counts, search and score all follow from the flipped outcomes), with none of the flips
    in the sample the old fixed default (seed 0, 32 trials) would have re-run."""
    real = TrialRunner.outcomes_of
    for salt in range(100):
        def flipping(self, d, trials, salt=salt):
            trials = list(trials)
            return [outcome != _flipped(salt, d, t)
                    for outcome, t in zip(real(self, d, trials), trials, strict=True)]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(TrialRunner, "outcomes_of", flipping)
            record = _run_mp()
        flips = flipped_trials(record, salt)
        old_default = {(d, t) for d, trials in _sample(record, 32, seed=0) for t in trials}
        if flips and not flips & old_default:
            return record, flips
    raise AssertionError("no salt gives a forgery away from the old default sample")


def test_the_forgery_is_self_consistent_and_only_its_trials_give_it_away(forged, registry):
    record, flips = forged
    assert 0.005 <= len(flips) / record["trials"] <= 0.02
    # Every check that needs no trials passes, and so did the old default (32 trials, seed 0).
    assert verify_record(record, "forged", registry, sample=0).status == VERIFIED
    assert verify_record(record, "forged", registry, sample=32, seed=0).status == VERIFIED
    for seed in range(1, 11):  # fresh seeds (fixed here, so that the test repeats): every one catches it
        verdict = verify_record(record, "forged", registry, seed=seed)
        assert verdict.status == FAILED, (seed, verdict.reasons)
        assert any("came out otherwise than stored" in reason for reason in verdict.reasons)


def test_the_genuine_record_verifies_with_any_seed(genuine, registry):
    for seed in (0, 1, 2):
        assert verify_record(genuine, "genuine", registry, seed=seed).status == VERIFIED


def _without_outcomes_and_better(record):
    fake = copy.deepcopy(record)
    for point in fake["curve"]:
        del point["outcomes"]
    h = fake["entropy_bits"]
    fake["d_star"] -= 7
    lo, hi = fake["d_star_ci"]
    fake.update(bits_per_dim=h / fake["d_star"], dims_per_bit=fake["d_star"] / h,
                bits_per_dim_ci=[h / hi, h / lo], dims_per_bit_ci=[lo / h, hi / h],
                d_star_over_counting=fake["d_star"] / fake["d_counting"])
    return fake


def _raised(record):
    fake = copy.deepcopy(record)
    fake["bits_per_dim"] *= 1.5
    return fake


def _no_such_version(record):
    fake = copy.deepcopy(record)
    fake["plugin_version"] = "7.0.0"
    return fake


def _no_such_version_and_better(record):
    fake = _no_such_version(record)
    fake["d_star"] -= 7
    return fake


def _more_trials(record):
    """Claims more trials, as a record measured with a higher cap would."""
    fake = copy.deepcopy(record)
    fake["search"]["max_trials_per_dimension"] = 4096
    fake["trials"] += 10_000
    return fake


@pytest.mark.parametrize("make, status", [
    (_without_outcomes_and_better, UNVERIFIABLE), (_raised, FAILED), (_no_such_version, UNVERIFIABLE),
    (_no_such_version_and_better, FAILED), (_more_trials, FAILED)])
def test_no_forgery_is_verified(genuine, registry, make, status):
    assert verify_record(make(genuine), "forged", registry).status == status


def _publish(tmp_path, genuine, fake):
    (tmp_path / "ours.jsonl").write_text(json.dumps(genuine) + "\n")
    (tmp_path / "theirs.jsonl").write_text(json.dumps(fake) + "\n")
    return publish([tmp_path / "ours.jsonl", tmp_path / "theirs.jsonl"], tmp_path / "out", figures=False)


@pytest.mark.parametrize("make, refusal", [
    (_without_outcomes_and_better, "same measurement with different results"),
    (_raised, "cannot be published: its bits_per_dim is"),
    (_more_trials, "cannot be published"),
    (_no_such_version_and_better, "cannot be published: its bits_per_dim is"),
])
def test_a_forgery_that_conflicts_with_the_genuine_row_stops_publishing(genuine, tmp_path, make, refusal):
    with pytest.raises(StoreError, match=refusal):
        _publish(tmp_path, genuine, make(genuine))


def test_the_flipped_forgery_beside_the_genuine_record_stops_publishing(genuine, forged, tmp_path):
    """Both are checked (each follows from its own outcomes): the refusal says that only
    re-running trials tells them apart."""
    with pytest.raises(StoreError, match="same measurement with different results") as refusal:
        _publish(tmp_path, genuine, forged[0])
    assert "only re-running trials tells them apart" in str(refusal.value)
    assert "not checked" not in str(refusal.value)


def test_a_version_that_does_not_exist_never_displaces_the_genuine_row(genuine, tmp_path):
    result = _publish(tmp_path, genuine, _no_such_version(genuine))
    assert result.rows == 1 and result.withheld == 1
    [row] = json.loads((tmp_path / "out" / JSON).read_text())["rows"]
    assert row["source"].startswith("../ours.jsonl") and row["d_star"] == genuine["d_star"]
    assert row["evidence"] == "checked"
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Records not shown" in readme and "superseded by the checked" in readme


def test_an_unverifiable_row_alone_is_shown_and_marked(genuine, tmp_path):
    lone = _without_outcomes_and_better(genuine)
    (tmp_path / "theirs.jsonl").write_text(json.dumps(lone) + "\n")
    publish([tmp_path / "theirs.jsonl"], tmp_path / "out", figures=False)
    [row] = json.loads((tmp_path / "out" / JSON).read_text())["rows"]
    assert row["evidence"] == "unverifiable" and "outcomes" in row["evidence_note"]
    assert "| unverifiable |" in (tmp_path / "out" / "README.md").read_text()


def test_outcomes_of_a_forgery_decode(forged):
    record, _ = forged
    for point in record["curve"]:
        assert int(decode_outcomes(point["outcomes"], point["trials"]).sum()) == point["successes"]
