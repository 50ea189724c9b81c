"""Result records, provenance and the append-only store."""

from __future__ import annotations

import json
import multiprocessing

import pytest
from superposition_harness import Problem
from superposition_harness.results import (
    RECORDS_FILE,
    ResultStore,
    StoreError,
    best_records,
    decode_outcomes,
    encode_outcomes,
    make_record,
    provenance,
    record_key,
    strip_volatile,
)
from superposition_harness.runner import RunSettings, TrialRunner, run_decoder
from superposition_harness_builtins.topk import TopKDecoder

REQUIRED = {"decoder", "plugin_package", "plugin_version", "params", "problem", "target", "d_star",
            "d_star_ci", "d_half", "entropy_bits", "bits_per_dim", "dims_per_bit", "trials",
            "curve", "status", "error", "wall_seconds", "provenance"}


def record_of(problem):
    run = run_decoder(problem, TopKDecoder(), RunSettings(max_trials=128))
    return make_record(run, decoder_name="topk", plugin_package="superposition-harness",
                       plugin_version="0", provenance=provenance(argv=["run"]))


def test_a_record_has_every_field_of_the_schema(small_problem):
    record = record_of(small_problem)
    assert set(record) >= REQUIRED
    assert set(record["problem"]) == {"n", "k", "dictionary", "noise", "seed", "subsets_per_draw"}
    assert record["bits_per_dim"] == pytest.approx(record["entropy_bits"] / record["d_star"])
    assert record["dims_per_bit"] == pytest.approx(1 / record["bits_per_dim"])
    lo, hi = record["d_star_ci"]
    assert record["bits_per_dim_ci"] == pytest.approx([record["entropy_bits"] / hi,
                                                       record["entropy_bits"] / lo])
    assert all(set(p) == {"d", "trials", "successes", "outcomes"} for p in record["curve"])
    for point in record["curve"]:
        outcomes = decode_outcomes(point["outcomes"], point["trials"])
        assert outcomes.sum() == point["successes"]
    assert "d_shannon" not in record
    json.dumps(record, allow_nan=False)


def test_provenance_names_versions_machine_and_date():
    prov = provenance(argv=["run", "--plugin", "mp"])
    for key in ("harness_version", "git_commit", "python", "numpy", "numba", "blas", "cpu",
                "cores", "date", "command"):
        assert key in prov
    assert prov["command"] == ["run", "--plugin", "mp"]


def test_the_noisy_track_carries_the_shannon_limit():
    record = record_of(Problem(n=256, k=4, noise=0.1, seed=1, subsets_per_draw=8))
    assert record["d_shannon"] is not None
    assert record["d_star_over_shannon"] == pytest.approx(record["d_star"] / record["d_shannon"])
    assert record["d_star_over_shannon"] > 1


def test_the_noiseless_rademacher_track_carries_the_counting_limit(small_problem):
    """d_counting at the record's target, and the ratio to it; Gaussian and noisy tracks
    have none (no finite information limit there, or the Shannon limit instead)."""
    from superposition_harness.problem import counting_dimension

    record = record_of(small_problem)
    assert small_problem.dictionary == "rademacher" and not small_problem.noisy
    assert record["d_counting"] == counting_dimension(small_problem.n, small_problem.k, record["target"])
    assert record["d_star_over_counting"] == pytest.approx(record["d_star"] / record["d_counting"])
    assert record["d_star_over_counting"] > 1
    assert record["search"]["confirm_trials"] == 256  # twice the 128 trials of a probe
    for other in (Problem(n=256, k=4, dictionary="gaussian", seed=1, subsets_per_draw=8),
                  Problem(n=256, k=4, noise=0.1, seed=1, subsets_per_draw=8)):
        assert "d_counting" not in record_of(other)


def test_a_schema_1_record_is_laid_out_as_schema_1_was():
    """An older layout, as `harness verify` rebuilds it: no confirmation, no counting limit."""
    run = run_decoder(Problem(n=256, k=3, seed=2, subsets_per_draw=8), TopKDecoder(),
                      RunSettings(max_trials=64, confirm_trials=64))
    old = make_record(run, decoder_name="topk", plugin_package="superposition-harness", plugin_version="0",
                      provenance={}, schema=1)
    assert old["schema"] == 1 and "confirm_trials" not in old["search"]
    assert "d_counting" not in old and "d_star_over_counting" not in old


def test_the_store_appends_and_loads_in_order(tmp_path):
    store = ResultStore(tmp_path / "results")
    for i in range(3):
        store.append({"decoder": "x", "i": i})
    assert [r["i"] for r in store.load()] == [0, 1, 2]
    assert (tmp_path / "results" / RECORDS_FILE).read_text().count("\n") == 3


def test_a_torn_last_line_is_skipped_and_does_not_swallow_the_next(tmp_path):
    store = ResultStore(tmp_path)
    store.append({"decoder": "a"})
    with open(store.path, "a", encoding="utf-8") as handle:
        handle.write('{"decoder": "torn", "d_st')
    assert [r["decoder"] for r in store.load()] == ["a"]
    store.append({"decoder": "b"})
    assert [r["decoder"] for r in store.load()] == ["a", "b"]


def test_an_unwritable_store_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot write results"):
        ResultStore(blocker / "sub").append({"decoder": "x"})


def _append_many(path, worker):
    store = ResultStore(path)
    for i in range(50):
        store.append({"decoder": f"w{worker}", "i": i, "pad": "x" * 5000})


def test_concurrent_writers_lose_nothing(tmp_path):
    """Four processes appending large records at once: every record arrives whole."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(tmp_path, w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    records = ResultStore(tmp_path).load()
    assert len(records) == 200
    assert sorted((r["decoder"], r["i"]) for r in records) == sorted(
        (f"w{w}", i) for w in range(4) for i in range(50))


def test_best_records_keeps_the_most_trials_and_prefers_success():
    base = {"decoder": "mp", "params": {}, "problem": {"n": 8}, "target": 0.95}
    records = [dict(base, trials=10, status="ok", tag=1), dict(base, trials=99, status="error", tag=2),
               dict(base, trials=50, status="ok", tag=3), dict(base, trials=50, status="ok", tag=4),
               dict(base, decoder="topk", trials=1, status="error", tag=5)]
    best = {r["decoder"]: r["tag"] for r in best_records(records)}
    assert best == {"mp": 4, "topk": 5}


def test_record_key_ignores_results_and_timings():
    a = {"decoder": "mp", "params": {"x": 1}, "problem": {"n": 8}, "target": 0.95, "d_star": 3}
    b = dict(a, d_star=4, wall_seconds=9)
    assert record_key(a) == record_key(b)
    assert strip_volatile(dict(a, provenance={}, wall_seconds=1)) == a


def test_outcomes_are_stored_bit_by_bit_in_trial_order():
    bits = [True, False, False, True, True, False, False, False, True]
    assert encode_outcomes(bits) == "1901"  # trials 0, 3, 4 in byte 0; trial 8 in byte 1
    assert decode_outcomes("1901", 9).tolist() == bits
    assert encode_outcomes([]) == "" and decode_outcomes("", 0).tolist() == []


@pytest.mark.parametrize("text,trials", [("19", 9), ("190100", 9), ("1903", 9), ("zz", 4)])
def test_outcomes_of_the_wrong_length_or_padding_are_refused(text, trials):
    with pytest.raises(ValueError):
        decode_outcomes(text, trials)


def test_each_probe_stores_the_outcome_of_every_trial_it_counted(small_problem):
    """The stored outcomes are those of the trials run one at a time."""
    run = run_decoder(small_problem, TopKDecoder(), RunSettings(max_trials=64))
    record = make_record(run, decoder_name="topk", plugin_package="p", plugin_version="0",
                         provenance={})
    runner = TrialRunner(small_problem, TopKDecoder(), batch_size=1)
    for point in record["curve"][:3]:
        stored = decode_outcomes(point["outcomes"], point["trials"]).tolist()
        assert stored == runner.outcomes_of(point["d"], range(point["trials"]))
