"""The planning model: jobs replayed from records, stand-ins, and the simulated cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from superposition_harness.planning import (
    JobPlan,
    Overheads,
    Prediction,
    cost_law,
    plan_from_record,
    plan_sweep,
    record_problem,
    replay_requests,
    simulate,
    stand_in,
    where_it_stops,
)
from superposition_harness.problem import Problem
from superposition_harness.runner import RunSettings

ROOT = Path(__file__).resolve().parents[1]


def records(name):
    lines = (ROOT / "leaderboard" / name / "records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


@pytest.fixture(scope="module")
def paper():
    return records("paper")


@pytest.fixture(scope="module")
def standard():
    return records("standard")


def test_a_records_requests_are_its_curve_in_the_order_its_search_made_them(paper):
    record = paper[0]
    requests = replay_requests(record)
    assert sum(count for _, _, count in requests) == record["trials"]
    for point in record["curve"]:
        mine = [(start, count) for value, start, count in requests if value == point["d"]]
        assert sum(count for _, count in mine) == point["trials"]
        assert [start for start, _ in mine] == sorted(start for start, _ in mine)  # each probe goes on
        assert mine[0][0] == 0
    assert requests[0][0] == record["curve"][0]["d"] or requests[0][0] == round(record["entropy_bits"] + 0.5)


def test_a_record_without_outcomes_cannot_be_replayed(paper):
    record = json.loads(json.dumps(paper[0]))
    del record["curve"][3]["outcomes"]
    with pytest.raises(ValueError, match="holds no outcomes"):
        replay_requests(record)


def test_a_records_plan_shares_its_core_seconds_among_its_tasks(paper):
    record = paper[1]
    job = plan_from_record(record)
    threads = record["provenance"]["cores"]  # run in one process on every core
    assert job.work() == pytest.approx(record["wall_seconds"] * threads)
    assert job.origin == "record" and job.label == "mp N=1048576 k=64"
    # At N = 2^20 a task is one draw of 32 trials: a request of 256 trials is 8 tasks.
    assert job.smallest_task() == 32
    assert max(len(job.tasks_of(request)) for request in job.requests) == 8
    assert job.tasks() == record["trials"] // 32
    # With overheads, every task costs its worker and the scheduler more.
    assert job.work(Overheads(task=1.0)) == pytest.approx(job.work() + job.tasks())
    assert job.path(Overheads(scheduler=0.5)) == pytest.approx(job.path() + 0.5 * len(job.requests))


def test_spread_over_more_workers_a_job_has_the_same_work_in_more_tasks(paper):
    job = plan_from_record(paper[0])
    assert job.work(spread=64) == pytest.approx(job.work())
    assert job.tasks(spread=64) == job.tasks() * 8 and job.smallest_task(spread=64) == 4
    assert job.path(spread=64) == pytest.approx(job.path() / 8)
    assert job.trial_path() == pytest.approx(job.path() / 32)


def test_the_cost_law_follows_k(standard):
    mp = [r for r in standard if r["decoder"] == "mp"]
    a, b = cost_law(mp)
    # Matching pursuit's k steps each touch every feature, but through sign-bit Gram rows
    # (64 features a word): its cost per N·d grows with k, more slowly than k.
    assert a > 0 and 0 < b < 1
    topk = [r for r in standard if r["decoder"] == "topk"]
    assert cost_law(topk[:1])[1] == 0.0
    with pytest.raises(ValueError, match="no record"):
        cost_law([])


def test_a_stand_in_is_a_real_search_on_a_stretched_curve(paper, standard):
    settings = RunSettings()
    problem = Problem(n=1 << 18, k=16)  # no record; k = 16 has records at N = 2^16 and 2^20
    mp = [r for r in paper + standard if r["decoder"] == "mp"]
    job = stand_in("mp", problem, settings, mp)
    again = stand_in("mp", problem, settings, mp)
    assert job.requests == again.requests  # the same plan from the same inputs
    assert job.origin.startswith("stand-in from mp N=1048576 k=16")  # nearest k first, then largest N
    assert job.label == "mp N=262144 k=16"
    assert 20 < len(job.requests) < 200 and job.problem == problem
    assert stand_in("mp", problem, settings, mp, seed=1).requests != job.requests
    with pytest.raises(ValueError, match="no successful"):
        stand_in("mp", problem, settings, [])


def test_a_sweep_takes_each_jobs_own_record_when_it_has_one(paper, standard):
    settings = RunSettings()
    jobs = [("mp", Problem(n=1 << 20, k=64)), ("amp-binary", Problem(n=1 << 20, k=256))]
    # whatever is committed, the second job has no record here: it stands in from its nearest k
    others = [r for r in paper + standard if (r["decoder"], record_problem(r)) != jobs[1]]
    plans = plan_sweep(jobs, settings, others)
    assert [p.origin for p in plans][0] == "record"
    assert plans[1].origin.startswith("stand-in from amp-binary N=1048576 k=64")
    assert record_problem(paper[1]) == jobs[0][1]


BIG = Problem(n=1 << 20, k=4)  # where a draw of 32 trials is a task of its own


def requests_of(label, *seconds):
    """A job whose requests are one draw each, taking ``seconds`` (0.01 s apart) on one task."""
    return JobPlan(label, "test", BIG, [(round(100 * s), 32 * i, 32) for i, s in enumerate(seconds)],
                   per_weight=1 / (32 * 100))


def test_a_search_waits_for_its_requests_one_after_another():
    job = requests_of("a", 1.0, 2.0, 3.0)
    for workers in (1, 4, 64):
        assert simulate([job], workers, spread=False).wall == pytest.approx(6.0)
    slower = simulate([job], 4, Overheads(task=0.5, scheduler=0.25), spread=False)
    assert slower.wall == pytest.approx(6 + 3 * 0.75)


def test_a_lone_search_spreads_its_draws_over_the_workers():
    job = requests_of("a", 1.0, 2.0, 3.0)
    assert simulate([job], 2).wall == pytest.approx(3.0)  # each draw in two parts
    assert simulate([job], 8).wall == pytest.approx(0.75)  # in eight, of four trials each
    assert simulate([job], 64).wall == pytest.approx(0.75)  # no part smaller than four trials
    assert simulate([job], 64).tasks == 24 and simulate([job], 64, spread=False).tasks == 3
    # Two searches in flight share the workers: each splits its draws for half of them.
    # Two searches in flight share the workers: each splits its draws for half of them.
    two = [requests_of("a", 1.0), requests_of("b", 1.0)]
    assert simulate(two, 4).tasks == 4 and simulate(two, 4).wall == pytest.approx(0.5)


def test_independent_jobs_share_the_workers():
    jobs = [requests_of(str(i), 1.0) for i in range(8)]
    assert simulate(jobs, 1).wall == pytest.approx(8.0)
    assert simulate(jobs, 2, spread=False).wall == pytest.approx(4.0)
    assert simulate(jobs, 2).wall == pytest.approx(4.0) and simulate(jobs, 2).tasks == 8
    assert simulate(jobs, 8).wall == pytest.approx(1.0)
    assert simulate(jobs, 2, concurrent=1).wall == pytest.approx(4.0)  # one search, its draws in halves
    assert simulate(jobs, 2, concurrent=1).tasks == 16
    assert simulate(jobs, 2, concurrent=1, spread=False).wall == pytest.approx(8.0)
    wide = JobPlan("wide", "test", BIG, [(100, 0, 256)], per_weight=1 / (32 * 100))  # 8 draws of 1 s
    assert simulate([wide], 8).wall == pytest.approx(1.0)
    assert simulate([wide], 3, spread=False).wall == pytest.approx(3.0)


def test_the_scheduler_handles_tasks_one_at_a_time():
    wide = JobPlan("wide", "test", BIG, [(100, 0, 3200)], per_weight=0.0)  # 100 empty tasks
    prediction = simulate([wide], 64, Overheads(scheduler=0.01), spread=False)
    assert prediction.wall == pytest.approx(1.0)
    assert prediction.binding == "scheduler" and prediction.tasks == 100


def test_the_floors_and_the_binding_one():
    jobs = [requests_of("long", *[1.0] * 10)] + [requests_of(str(i), 1.0) for i in range(20)]
    few = simulate(jobs, 2, spread=False)
    assert few.work == pytest.approx(15.0) and few.path == pytest.approx(10.0) and few.binding == "work"
    assert few.wall >= max(few.work, few.path) - 1e-9
    many = simulate(jobs, 64, spread=False)
    assert many.binding == "path" and many.wall == pytest.approx(10.0) and many.longest == "long"
    assert (many.requests, many.widest, many.smallest) == (10, 1, 32)
    assert many.trial_path == pytest.approx(10 / 32)
    with pytest.raises(ValueError, match="at least one worker"):
        simulate(jobs, 0)


def test_where_the_speed_up_stops_is_said_with_its_reason():
    jobs = [requests_of("long", *[4.0] * 5)] + [requests_of(str(i), 1.0) for i in range(80)]
    predictions = [simulate(jobs, w, spread=False) for w in (1, 2, 64)]
    text = where_it_stops(predictions)
    assert "stops near 5 workers" in text and "long asks for 5 batches" in text
    assert "efficiency is 8%" in text and "the smallest holds 32 trials" in text
    assert "the task size, not the search's sequence, sets it" in text
    sequential = [JobPlan("long", "test", BIG, [(100, i, 1) for i in range(20)], per_weight=1 / 100)]
    sequential += jobs[1:]
    said = where_it_stops([simulate(sequential, w) for w in (1, 64)])
    assert "the search's sequence itself sets it" in said
    flat = [requests_of(str(i), 1.0) for i in range(20)]
    assert "holds up to 2 workers" in where_it_stops([simulate(flat, w, spread=False) for w in (1, 2)])
    scheduler = [JobPlan("wide", "test", BIG, [(100, 0, 3200)], per_weight=0.0)]
    overheads = Overheads(scheduler=0.01)
    said = where_it_stops([simulate(scheduler, w, overheads, spread=False) for w in (1, 64)], overheads)
    assert "The scheduler binds" in said
    assert where_it_stops([]) == "nothing was predicted."


def test_a_prediction_names_its_closest_floor():
    assert Prediction(8, 10.0, work=9.0, path=2.0, scheduler=1.0, tasks=3, longest="x").binding == "work"
