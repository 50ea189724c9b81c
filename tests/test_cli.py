"""The `harness` command end to end: runs, listings, the leaderboard and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from superposition_harness.cli import main
from superposition_harness.plugins import load_registry
from superposition_harness.results import stored_measurement_key, strip_volatile

SMALL = ["--n", "256", "--k", "3", "--trials", "96", "--seed", "5"]


def harness(*args, cwd=None, env=None):
    """Run the installed command in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "superposition_harness.cli", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def run_json(capsys, *args):
    status = main(["run", *args, "--json"])
    out = capsys.readouterr().out
    return status, [json.loads(line) for line in out.splitlines() if line.strip()]


def test_run_prints_json_records_and_appends_them_to_the_store(tmp_path, capsys):
    status, records = run_json(capsys, *SMALL, "--plugin", "mp", "--plugin", "topk",
                               "--results", str(tmp_path))
    assert status == 0
    assert [r["decoder"] for r in records] == ["mp", "topk"]
    assert all(r["status"] == "ok" and r["d_star"] for r in records)
    stored = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    # The store holds records in the order their runs finished, which workers running side by
    # side do not fix: the same records, keyed by what they measure.
    assert {stored_measurement_key(r): r for r in stored} == {stored_measurement_key(r): r for r in records}
    assert len(stored) == len(records)


def test_run_without_plugins_runs_every_built_in(tmp_path, capsys):
    status, records = run_json(capsys, *SMALL, "--no-store")
    assert status == 0
    builtins = {e.name for e in load_registry().decoders.values()
                if e.package == "superposition-harness" and e.cls.any_dictionary}
    assert {"mp", "threshold", "topk"} <= builtins
    assert sorted(r["decoder"] for r in records) == sorted(builtins)
    assert not (tmp_path / "harness-results").exists()


def test_decoder_parameters_reach_the_decoder_and_the_record(capsys):
    status, records = run_json(capsys, *SMALL, "--no-store", "--plugin", "threshold[level=0.7]")
    assert status == 0 and records[0]["params"] == {"level": 0.7}


def test_records_do_not_depend_on_batch_size_or_threads(capsys):
    runs = []
    for extra in (["--batch-size", "32", "--threads", "2"], ["--batch-size", "5", "--workers", "1"],
                  ["--batch-size", "7", "--workers", "3", "--memory", "1GiB"]):
        status, records = run_json(capsys, *SMALL, "--no-store", *extra)
        assert status == 0
        runs.append([strip_volatile(r) for r in records])
    assert runs[0] == runs[1] == runs[2]


def test_a_run_over_the_memory_budget_is_refused_before_it_starts(tmp_path):
    result = harness("run", "--plugin", "mp", "--n", "1048576", "--k", "64", "--memory", "512MiB",
                     "--results", str(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--memory" in lines[0] and "512.0 MiB" in lines[0]
    assert not (tmp_path / "records.jsonl").exists()


def test_the_record_states_the_resolution_of_its_search(capsys):
    status, records = run_json(capsys, *SMALL, "--no-store", "--plugin", "mp", "--resolution", "0.05")
    assert status == 0 and records[0]["search"]["resolution"] == 0.05


def test_the_table_names_every_column(tmp_path):
    result = harness("run", *SMALL, "--plugin", "mp", "--results", str(tmp_path), "--wide")
    assert result.returncode == 0, result.stderr
    for column in ("decoder", "params", "N", "k", "H (bits)", "d*(0.95)", "bits/dim", "dims/bit",
                   "d*(0.5)", "trials", "wall (s)"):
        assert column in result.stdout
    assert "records appended to" in result.stderr


def test_the_noisy_track_shows_the_shannon_columns(capsys):
    status, records = run_json(capsys, *SMALL, "--no-store", "--plugin", "mp", "--noise", "0.05")
    assert status == 0 and records[0]["d_shannon"] and records[0]["d_star_over_shannon"] > 1
    main(["run", *SMALL, "--no-store", "--plugin", "mp", "--noise", "0.05"])
    assert "d*/d_Sh" in capsys.readouterr().out


def test_a_config_file_drives_a_sweep(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text('decoders = ["topk"]\n[problem]\nn = 256\nk = [2, 3]\n[search]\ntrials = 96\n')
    status, records = run_json(capsys, "--config", str(config), "--no-store")
    assert status == 0 and [r["problem"]["k"] for r in records] == [2, 3]
    status, records = run_json(capsys, "--config", str(config), "--no-store", "--k", "4")
    assert [r["problem"]["k"] for r in records] == [4]


def test_leaderboard_shows_the_best_stored_record(tmp_path, capsys):
    run_json(capsys, *SMALL, "--plugin", "topk", "--results", str(tmp_path))
    run_json(capsys, "--n", "256", "--k", "3", "--trials", "128", "--seed", "5", "--plugin", "topk",
             "--results", str(tmp_path))
    assert main(["leaderboard", "--results", str(tmp_path), "--json"]) == 0
    best = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(best) == 1
    assert main(["leaderboard", "--results", str(tmp_path)]) == 0
    assert "topk" in capsys.readouterr().out


def test_plugins_lists_the_built_ins_with_their_parameters(capsys):
    assert main(["plugins", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    decoders = {d["name"]: d for d in document["decoders"]}
    assert {"threshold", "topk", "mp"} <= set(decoders)
    assert decoders["threshold"]["parameters"][0]["name"] == "level"
    assert decoders["threshold"]["capabilities"]["needs_k"] is False
    assert all(d["package"] == "superposition-harness" for n, d in decoders.items()
               if n in ("threshold", "topk", "mp"))
    assert main(["plugins"]) == 0
    assert "threshold" in capsys.readouterr().out


BAD_INPUTS = [
    (["run", "--n", "0"], "--n"),
    (["run", "--n", "many"], "--n"),
    (["run", "--n", "8", "--k", "8"], "k must be smaller than N"),
    (["run", "--k", "-3"], "--k"),
    (["run", "--d-max", "0"], "--d-max"),
    (["run", "--target", "1.5"], "target"),
    (["run", "--target", "zero"], "--target"),
    (["run", "--trials", "0"], "--trials"),
    (["run", "--seed", "-1"], "--seed"),
    (["run", "--memory", "lots"], "4GiB"),
    (["run", "--memory", "0"], "positive"),
    (["run", "--workers", "0"], "--workers"),
    (["run", "--resolution", "0.7"], "resolution"),
    (["run", "--noise", "-0.1"], "noise"),
    (["run", "--snr", "0"], "snr must be a signal-to-noise ratio"),
    (["run", "--snr", "loud"], "--snr"),
    (["run", "--snr", "15", "--noise", "0.1"], "not both"),
    (["run", "--dictionary", "bernoulli"], "dictionary must be one of rademacher, gaussian"),
    (["run", "--plugin", "mpp"], "did you mean 'mp'"),
    (["run", "--plugin", "threshold[levl=0.3]"], "did you mean 'level'"),
    (["run", "--plugin", "threshold[level=high]"], "must be a number"),
    (["run", "--plugin", "mp[steps=3]"], "takes no parameters"),
    (["run", "--plugin", "mp[broken"], "cannot read decoder"),
    (["run", "--config", "missing.toml"], "does not exist"),
    (["run", "--suite", "huge"], "--suite"),
    (["run", "--frobnicate"], "unrecognized arguments"),
    (["leaderboard", "--results", "nowhere"], "no results in nowhere"),
    (["explode"], "invalid choice"),
]


@pytest.mark.parametrize("args, fragment", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, args, fragment):
    result = harness(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("harness: error:")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("text, fragment", [
    ("[problem\nn=4", "not valid TOML"),
    ("[problem]\nsize = 4", "unknown key 'size'"),
    ("decoders = ['nope']", "no decoder named 'nope'"),
])
def test_bad_configs_exit_2_with_one_line(tmp_path, text, fragment):
    (tmp_path / "bad.toml").write_text(text)
    result = harness("run", "--config", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        line for line in result.stderr.splitlines() if fragment in line]


def test_too_few_trials_for_the_target_warns(capsys):
    status = main(["run", "--n", "256", "--k", "3", "--trials", "32", "--no-store", "--plugin",
                   "topk", "--json"])
    captured = capsys.readouterr()
    assert status == 0 and json.loads(captured.out)["d_star_ci"][1] is None
    assert "no dimension can show" in captured.err


def test_the_record_splits_its_trials_between_the_two_estimates(capsys):
    status, records = run_json(capsys, *SMALL, "--no-store", "--plugin", "topk")
    record = records[0]
    split = record["trials_by_estimate"]
    assert set(split) == {"d_star", "d_half"} and min(split.values()) >= 0
    assert split["d_star"] + split["d_half"] == record["trials"] == sum(p["trials"] for p in record["curve"])


def test_the_record_states_the_peak_memory_of_its_process(capsys):
    from superposition_harness.results import VOLATILE
    status, records = run_json(capsys, *SMALL, "--no-store", "--plugin", "topk")
    peak = records[0]["peak_memory_bytes"]
    assert status == 0 and isinstance(peak, int) and 10 * 2**20 < peak < 64 * 2**30
    assert "peak_memory_bytes" in VOLATILE and "peak_memory_bytes" not in strip_volatile(records[0])


def test_a_finished_sweep_is_reused_not_measured_again(tmp_path, capsys):
    store = tmp_path / "store"
    args = [*SMALL, "--plugin", "mp", "--plugin", "topk", "--results", str(store)]
    status, first = run_json(capsys, *args)
    lines = (store / "records.jsonl").read_text().splitlines()
    status_again, again = run_json(capsys, *args)
    assert status == status_again == 0 and again == first
    assert (store / "records.jsonl").read_text().splitlines() == lines
    # Another parameter, seed or search setting is another measurement; --force measures again.
    status, changed = run_json(capsys, *args, "--resolution", "0.05")
    assert len((store / "records.jsonl").read_text().splitlines()) == len(lines) + 2
    status, forced = run_json(capsys, *args, "--force")
    assert [strip_volatile(r) for r in forced] == [strip_volatile(r) for r in first]
    assert len((store / "records.jsonl").read_text().splitlines()) == len(lines) + 4


def test_an_interrupted_sweep_resumes_with_the_runs_it_lacks(tmp_path, capsys):
    store = tmp_path / "store"
    status, partial = run_json(capsys, *SMALL, "--plugin", "mp", "--results", str(store))
    status, whole = run_json(capsys, *SMALL, "--plugin", "mp", "--plugin", "topk", "--results", str(store))
    assert status == 0 and whole[0] == partial[0] and whole[1]["decoder"] == "topk"
    assert len((store / "records.jsonl").read_text().splitlines()) == 2


def test_a_sweep_killed_mid_run_resumes_without_measuring_finished_rows_again(tmp_path):
    """SIGKILL after the first records; the re-run keeps them, adds the rest once, and ends
    with the records of an uninterrupted sweep."""
    import os
    import signal
    import time

    sweep = ["run", "--n", "256", "--k", "2", "--k", "3", "--k", "4", "--k", "5", "--plugin", "mp",
             "--plugin", "topk", "--plugin", "omp", "--seed", "5", "--workers", "1"]
    store = tmp_path / "killed" / "records.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "superposition_harness.cli", *sweep,
                                "--results", str(store.parent)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if store.exists() and store.read_bytes().count(b"\n") >= 2:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the sweep ended before it could be killed"
    before = store.read_text().splitlines()
    assert 2 <= len(before) < 12

    again = harness(*sweep, "--results", str(store.parent), "--json")
    assert again.returncode == 0, again.stderr
    after = store.read_text().splitlines()
    assert after[:len(before)] == before and len(after) == 12
    assert f"{len(before)} of 12 runs were already in" in again.stderr

    whole = harness(*sweep, "--no-store", "--json").stdout.splitlines()

    def measured(lines):
        return sorted(json.dumps(strip_volatile(json.loads(line)), sort_keys=True) for line in lines)
    assert measured(after) == measured(whole)


def _commands() -> list[str]:
    import argparse

    from superposition_harness.arguments import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_prints_its_help(command, capsys):
    """`harness COMMAND --help` shows its usage and exits 0 (help text is a %-format: a
    stray % in it would crash instead)."""
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    assert f"usage: harness {command}" in capsys.readouterr().out
