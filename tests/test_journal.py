"""Journals of runs in progress: a run stopped midway resumes where it stopped, with the
record an uninterrupted run makes, and a journal it cannot trust is never used."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from killing import kill_once_journaled
from superposition_harness.config import Sweep, parse_decoder_spec
from superposition_harness.jobs import choose_decoders, execute, plan, run_settings
from superposition_harness.journal import UNFINISHED, Journal, journal_path, open_journal
from superposition_harness.plugins import load_registry
from superposition_harness.results import ResultStore, strip_volatile

KEY = '["a measurement"]'


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def job_of(registry, name: str = "mp"):
    sweep = Sweep(n=[1024], k=[4], seed=7, trials=64, decoders=[parse_decoder_spec(name)])
    [job] = plan([(p, None) for p in sweep.problems()], choose_decoders(sweep, registry))
    return job, run_settings(sweep)


def counting(job, stop_after: int | None = None) -> list[int]:
    """Count the job's decoder calls (on its own instance); raise KeyboardInterrupt at call
    ``stop_after + 1``, as a user's Ctrl-C (or a kill) would stop the run mid-search."""
    calls = [0]
    decode = job.decoder.decode

    def wrapped(*args, **kwargs):
        if stop_after is not None and calls[0] == stop_after:
            raise KeyboardInterrupt
        calls[0] += 1
        return decode(*args, **kwargs)
    job.decoder.decode = wrapped
    return calls


def eight_trials(root) -> object:
    """A journal of KEY in ``root`` holding one segment and the outcomes of trials 0..7 at 10
    (all decoded); its path."""
    journal = open_journal(root, KEY)
    journal.write(10, 0, [True] * 8)
    journal.close()
    return journal.path


def reopened(root) -> tuple[Journal, list[str]]:
    """The journal of KEY in ``root`` opened again, with what opening it warned of."""
    warned: list[str] = []
    return open_journal(root, KEY, warn=warned.append), warned


@pytest.fixture(scope="module")
def uninterrupted(registry):
    job, settings = job_of(registry)
    calls = counting(job)
    [record] = execute([job], settings).records
    return record, calls[0]


def interrupted(registry, root, stop_after=5):
    job, settings = job_of(registry)
    counting(job, stop_after)
    with pytest.raises(KeyboardInterrupt):
        execute([job], settings, store=ResultStore(root))
    return journal_path(root, job.measurement_key(settings))


def test_a_stopped_run_resumes_from_its_journal_with_the_record_of_an_uninterrupted_one(
        registry, tmp_path, uninterrupted):
    reference, all_calls = uninterrupted
    path = interrupted(registry, tmp_path)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 + 5  # header, segment, one line per request answered (one batch each)
    assert not (tmp_path / "records.jsonl").exists() or not ResultStore(tmp_path).load()

    job, settings = job_of(registry)
    calls = counting(job)
    notes: list[str] = []
    trials_heard: list[int] = []

    class Events:
        def trials(self, index, count, value):
            trials_heard.append(count)

        def finished(self, index, record, reused):
            pass
    [record] = execute([job], settings, store=ResultStore(tmp_path), note=notes.append,
                       events=Events()).records
    assert strip_volatile(record) == strip_volatile(reference)
    assert calls[0] == all_calls - 5  # the journaled requests were not decoded again
    resumed = record["provenance"]["resumed"]
    assert resumed["trials"] == 5 * 32 and len(resumed["segments"]) == 1
    assert resumed["segments"][0]["trials"] == 5 * 32
    assert resumed["segments"][0]["git_commit"] == record["provenance"]["git_commit"]
    assert record["wall_seconds"] >= resumed["seconds"] > 0
    assert sum(trials_heard) == record["trials"]  # the progress display hears of replayed trials too
    assert notes == [f"{job.label}: resuming from its journal, 160 trials already run ({path})"]
    assert not path.exists() and not (tmp_path / UNFINISHED).exists()  # gone once the record is stored
    assert ResultStore(tmp_path).load() == [record]


def test_a_run_stopped_twice_lists_both_earlier_processes(registry, tmp_path, uninterrupted):
    reference, _ = uninterrupted
    interrupted(registry, tmp_path, stop_after=3)
    path = interrupted(registry, tmp_path, stop_after=4)  # replays 3 requests, decodes 4 more
    job, settings = job_of(registry)
    [record] = execute([job], settings, store=ResultStore(tmp_path)).records
    assert strip_volatile(record) == strip_volatile(reference)
    resumed = record["provenance"]["resumed"]
    assert [s["trials"] for s in resumed["segments"]] == [3 * 32, 4 * 32]
    assert resumed["trials"] == 7 * 32
    assert resumed["seconds"] == pytest.approx(sum(s["seconds"] for s in resumed["segments"]), abs=0.01)
    assert not path.exists()


def test_force_starts_the_journal_afresh(registry, tmp_path, uninterrupted):
    _, all_calls = uninterrupted
    interrupted(registry, tmp_path)
    job, settings = job_of(registry)
    calls = counting(job)
    [record] = execute([job], settings, store=ResultStore(tmp_path), reuse=False).records
    assert calls[0] == all_calls and "resumed" not in record["provenance"]


def test_an_uninterrupted_run_states_no_resumption_and_leaves_no_journal(registry, tmp_path):
    job, settings = job_of(registry)
    [record] = execute([job], settings, store=ResultStore(tmp_path)).records
    assert "resumed" not in record["provenance"] and not (tmp_path / UNFINISHED).exists()


def test_a_torn_last_line_is_skipped_quietly_and_the_next_entry_starts_a_line(registry, tmp_path,
                                                                              uninterrupted):
    reference, all_calls = uninterrupted
    path = interrupted(registry, tmp_path)
    with open(path, "ab") as handle:
        handle.write(b'{"count": 32, "outc')  # a write cut short by a kill
    job, settings = job_of(registry)
    calls = counting(job)
    warned: list[str] = []
    [record] = execute([job], settings, store=ResultStore(tmp_path), warn=warned.append).records
    assert strip_volatile(record) == strip_volatile(reference) and calls[0] == all_calls - 5
    assert warned == []


@pytest.mark.parametrize("line", [b"not json", b'{"value": 1}', b"[1, 2]",
                                  b'{"value": 10, "start": 0, "count": 32, "outcomes": "zz", "seconds": 1}',
                                  b'{"value": 10, "start": 0, "count": 32, "outcomes": "ff", "seconds": 1}',
                                  b'{"value": 10, "start": -1, "count": 8, "outcomes": "ff", "seconds": 1}',
                                  b'{"value": 10, "start": 0, "count": 8, "outcomes": "ff", "seconds": -1}',
                                  b'{"value": true, "start": 0, "count": 8, "outcomes": "ff", "seconds": 1}'],
                         ids=["garbage", "fields", "array", "hex", "length", "start", "seconds", "bool"])
def test_a_line_that_is_not_an_entry_is_skipped_with_its_segment_and_its_trials_run_again(tmp_path, line):
    path = eight_trials(tmp_path)
    entry = json.dumps({"value": 10, "start": 8, "count": 8, "outcomes": "ff", "seconds": 2.0}).encode()
    path.write_bytes(path.read_bytes() + line + b"\n" + entry + b"\n")
    again, warned = reopened(tmp_path)
    assert again.known(10, 0, 8) == [True] * 8 and again.known(10, 8, 8) is None
    assert len(warned) == 1 and "2 line(s) are not journal entries" in warned[0]
    again.write(10, 8, [False] * 8)  # a segment line of its own first: the entry is read back
    again.close()
    last = open_journal(tmp_path, KEY)
    assert last.known(10, 0, 16) == [True] * 8 + [False] * 8
    last.close()


def test_a_journal_of_another_measurement_is_started_afresh(tmp_path):
    path = eight_trials(tmp_path)
    text = path.read_text().splitlines()
    text[0] = json.dumps({"journal": 1, "key": '["another"]'})
    path.write_text("\n".join(text) + "\n")
    again, warned = reopened(tmp_path)
    assert again.known(10, 0, 8) is None and again.known_trials == 0
    assert len(warned) == 1 and "is not the journal of this run" in warned[0]
    again.close()
    assert path.read_text().splitlines() == [json.dumps({"journal": 1, "key": KEY}, sort_keys=True)]


def test_a_journal_that_disagrees_with_itself_is_not_used(tmp_path):
    journal = open_journal(tmp_path, KEY)
    journal.write(10, 0, [True] * 8)
    journal.write(10, 4, [False] * 8)  # trials 4..7 again, otherwise
    journal.close()
    again, warned = reopened(tmp_path)
    assert again.known_trials == 0 and again.known(10, 0, 8) is None
    assert len(warned) == 1 and "gives two outcomes for trial 4 at 10" in warned[0]
    again.close()


def test_entries_before_any_segment_line_are_not_used(tmp_path):
    path = journal_path(tmp_path, KEY)
    path.parent.mkdir()
    path.write_text(json.dumps({"journal": 1, "key": KEY}) + "\n" + json.dumps(
        {"value": 10, "start": 0, "count": 8, "outcomes": "ff", "seconds": 1.0}) + "\n")
    journal = open_journal(tmp_path, KEY, warn=lambda sentence: None)
    assert journal.known(10, 0, 8) is None
    journal.close()


def test_outcomes_come_back_only_for_requests_the_journal_covers_whole(tmp_path):
    journal = open_journal(tmp_path, KEY)
    journal.write(10, 0, [True, False] * 16)
    journal.write(10, 32, [False] * 32)
    journal.close()
    again = open_journal(tmp_path, KEY)
    assert again.known(10, 0, 32) == [True, False] * 16
    assert again.known(10, 16, 32) == [True, False] * 8 + [False] * 16
    assert again.known(10, 48, 32) is None and again.known(11, 0, 32) is None
    assert again.replayed == 64 and again.known_trials == 64
    again.close()


@pytest.mark.parametrize("kind", ["directory", "symlink", "fifo"])
def test_a_journal_path_that_is_not_a_regular_file_is_never_read_and_the_run_goes_on(
        registry, tmp_path, kind, uninterrupted):
    reference, _ = uninterrupted
    job, settings = job_of(registry)
    path = journal_path(tmp_path, job.measurement_key(settings))
    path.parent.mkdir()
    if kind == "directory":
        path.mkdir()
    elif kind == "symlink":
        (tmp_path / "elsewhere").write_text("not a journal\n")
        path.symlink_to(tmp_path / "elsewhere")
    else:
        os.mkfifo(path)
    warned: list[str] = []
    [record] = execute([job], settings, store=ResultStore(tmp_path), warn=warned.append).records
    assert strip_volatile(record) == strip_volatile(reference)
    assert len(warned) == 1 and "keeps no journal" in warned[0]
    assert ResultStore(tmp_path).load() == [record]
    if kind == "symlink":
        assert (tmp_path / "elsewhere").read_text() == "not a journal\n"


def test_a_journal_held_by_another_run_is_left_to_it(registry, tmp_path, uninterrupted):
    reference, _ = uninterrupted
    job, settings = job_of(registry)
    holder = open_journal(tmp_path, job.measurement_key(settings))
    holder.write(500, 0, [True] * 32)
    before = holder.path.read_bytes()
    warned: list[str] = []
    [record] = execute([job], settings, store=ResultStore(tmp_path), warn=warned.append).records
    assert strip_volatile(record) == strip_volatile(reference)
    assert len(warned) == 1 and "held by another process" in warned[0]
    assert holder.path.read_bytes() == before  # neither written nor removed by the other run
    holder.close()


def test_a_journal_that_cannot_be_written_ends_the_journaling_not_the_run(registry, tmp_path, monkeypatch,
                                                                          uninterrupted):
    reference, _ = uninterrupted
    writes = [0]
    append = Journal._append

    def failing(self, line):
        writes[0] += 1
        if writes[0] > 4:
            raise OSError(28, "No space left on device")
        append(self, line)
    monkeypatch.setattr(Journal, "_append", failing)
    job, settings = job_of(registry)
    warned: list[str] = []
    [record] = execute([job], settings, store=ResultStore(tmp_path), warn=warned.append).records
    assert record["status"] == "ok" and strip_volatile(record) == strip_volatile(reference)
    assert len(warned) == 1 and "could not be written (No space left on device)" in warned[0]


def test_no_store_keeps_no_journal(registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job, settings = job_of(registry)
    execute([job], settings)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_killed_mid_run_resumes_from_the_journal(tmp_path):
    """`harness run` killed with SIGKILL once its run has journaled a few requests: run
    again, it says it resumes, replays them and stores the record of an uninterrupted run."""
    sweep = ["run", "--n", "4096", "--k", "8", "--plugin", "mp", "--seed", "11", "--trials", "128",
             "--workers", "1"]
    store = tmp_path / "store"
    command = [sys.executable, "-m", "superposition_harness.cli", *sweep, "--results", str(store), "--json"]
    journals = store / UNFINISHED
    kill_once_journaled(command, journals)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "mp N=4096 k=8: resuming from its journal, " in again.stderr
    [record] = [json.loads(line) for line in again.stdout.splitlines()]
    assert record["provenance"]["resumed"]["trials"] >= 3 * 32
    whole = subprocess.run([*command[:-3], "--no-store", "--json"], capture_output=True, text=True,
                           timeout=300)
    assert strip_volatile(json.loads(whole.stdout)) == strip_volatile(record)
    assert not journals.exists()


def test_an_entry_written_after_a_torn_line_is_read_back(tmp_path):
    with open(eight_trials(tmp_path), "ab") as handle:
        handle.write(b'{"value": 10, "sta')
    again = open_journal(tmp_path, KEY)
    again.write(10, 8, [False] * 8)
    again.close()
    last = open_journal(tmp_path, KEY)
    assert last.known(10, 0, 16) == [True] * 8 + [False] * 8
    last.close()


def test_a_journal_that_cannot_be_started_is_removed_and_the_run_goes_on(registry, tmp_path, monkeypatch,
                                                                         uninterrupted):
    reference, _ = uninterrupted

    def failing(self, line):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Journal, "_append", failing)
    job, settings = job_of(registry)
    warned: list[str] = []
    [record] = execute([job], settings, store=ResultStore(tmp_path), warn=warned.append).records
    assert strip_volatile(record) == strip_volatile(reference)
    assert len(warned) == 1 and "keeps no journal" in warned[0] and "No space left" in warned[0]
    assert not (tmp_path / UNFINISHED).exists()


# ------------------------------------------------------- journals that are not to be trusted


def test_a_journal_path_hard_linked_to_the_records_is_never_read_or_written(tmp_path):
    """A journal's path that is another name of the store's records file: refused (it has two
    names), so the records are neither cut short nor appended to, and the run stores its own."""
    store = tmp_path / "store"
    small = ["run", "--n", "1024", "--k", "4", "--plugin", "mp", "--trials", "64", "--workers", "1",
             "--results", str(store)]
    first = subprocess.run([sys.executable, "-m", "superposition_harness.cli", *small, "--seed", "9"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    records = store / "records.jsonl"
    before = records.read_bytes()
    registry = load_registry()
    sweep = Sweep(n=[1024], k=[4], seed=10, trials=64, decoders=[parse_decoder_spec("mp")])
    [job] = plan([(p, None) for p in sweep.problems()], choose_decoders(sweep, registry))
    path = journal_path(store, job.measurement_key(run_settings(sweep)))
    path.parent.mkdir()
    os.link(records, path)
    second = subprocess.run([sys.executable, "-m", "superposition_harness.cli", *small, "--seed", "10"],
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "has 2 names (hard links), not one" in " ".join(second.stderr.split())
    after = records.read_bytes()
    assert after.startswith(before) and len(after.splitlines()) == 2
    assert [json.loads(line)["problem"]["seed"] for line in after.splitlines()] == [9, 10]


def _journal_with(tmp_path, *lines: bytes) -> tuple[list[str], Journal]:
    """Open a journal of KEY holding a segment of this code, one entry, then ``lines``; what it says."""
    path = eight_trials(tmp_path)
    with open(path, "ab") as handle:
        handle.write(b"".join(line + b"\n" for line in lines))
    again, warned = reopened(tmp_path)
    again.close()
    return warned, again


ENTRY = b'{"value": 10, "start": 8, "count": 8, "outcomes": "ff", "seconds": '


@pytest.mark.parametrize("line", [b"[" * 200_000, b'{"value": ' + b"[" * 200_000, ENTRY + b"NaN}",
                                  ENTRY + b"1e308}", ENTRY + b"Infinity}"],
                         ids=["deep", "deep-entry", "nan", "huge", "infinity"])
def test_lines_no_json_reader_should_take_are_skipped(tmp_path, line):
    warned, journal = _journal_with(tmp_path, line)
    assert journal.known(10, 0, 8) == [True] * 8 and journal.known(10, 8, 8) is None
    assert len(warned) == 1 and "1 line(s) are not journal entries" in warned[0]


def test_a_deeply_nested_header_is_not_a_journal(tmp_path):
    path = journal_path(tmp_path, KEY)
    path.parent.mkdir()
    path.write_bytes(b"[" * 200_000 + b"\n")
    warned: list[str] = []
    journal = open_journal(tmp_path, KEY, warn=warned.append)
    assert journal is not None and journal.known_trials == 0
    assert len(warned) == 1 and "is not the journal of this run" in warned[0]
    journal.close()


@pytest.mark.parametrize("fields", [{"cpu": float("nan")}, {"cpu": {"nested": [1, 2]}}, {"cpu": "x" * 1000},
                                    {"cores": [1]}], ids=["nan", "object", "long", "list"])
def test_a_segment_that_a_record_could_not_state_is_skipped_with_its_entries(tmp_path, fields):
    path = eight_trials(tmp_path)
    lines = path.read_text().splitlines()
    segment = json.loads(lines[1])["segment"]
    text = json.dumps({"segment": {**segment, **fields}})
    entry = json.dumps({"value": 10, "start": 8, "count": 8, "outcomes": "ff", "seconds": 2.0})
    path.write_text("\n".join([*lines, text, entry]) + "\n")
    again, warned = reopened(tmp_path)
    assert again.known(10, 0, 8) == [True] * 8 and again.known(10, 8, 8) is None
    assert len(warned) == 1 and "2 line(s) are not journal entries" in warned[0]
    again.close()


def test_a_segment_states_only_its_own_fields(tmp_path):
    path = eight_trials(tmp_path)
    lines = path.read_text().splitlines()
    segment = json.loads(lines[1])["segment"]
    lines[1] = json.dumps({"segment": {**segment, "injected": {"html": "<script>"}}})
    path.write_text("\n".join(lines) + "\n")
    again = open_journal(tmp_path, KEY)
    assert again.known(10, 0, 8) == [True] * 8
    [stated] = again.summary()["segments"]
    assert "injected" not in stated and set(stated) == set(segment) | {"trials", "seconds"}
    again.close()


@pytest.mark.parametrize("field, value", [("git_commit", "0" * 40), ("git_dirty", "changed"),
                                          ("harness_version", "0.0.1")])
def test_a_journal_written_by_other_code_is_not_used(tmp_path, field, value):
    path = eight_trials(tmp_path)
    lines = path.read_text().splitlines()
    segment = json.loads(lines[1])["segment"]
    if field == "git_dirty":
        value = not segment["git_dirty"]
    lines[1] = json.dumps({"segment": {**segment, field: value}})
    path.write_text("\n".join(lines) + "\n")
    again, warned = reopened(tmp_path)
    assert again.known_trials == 0 and again.known(10, 0, 8) is None
    assert len(warned) == 1 and "was written by other code" in warned[0]
    again.close()


def test_outcomes_far_apart_take_memory_for_themselves_only(tmp_path):
    journal = open_journal(tmp_path, KEY)
    journal.write(10, 0, [True])
    journal.write(10, (1 << 20) - 1, [False])
    journal.write(10, 1, [False] * 3)  # touches the first run: kept apart, read back as one span
    journal.close()
    again = open_journal(tmp_path, KEY)
    runs = again._known[10]
    assert sum(run.nbytes for run in runs.runs) == 5 and runs.starts == [0, 1, (1 << 20) - 1]
    assert again.known(10, 0, 4) == [True, False, False, False] and again.known(10, 0, 5) is None
    assert again.known(10, 1, 2) == [False, False] and again.known(10, 3, 2) is None
    again.close()


def test_overlapping_entries_that_agree_merge_and_any_span_of_them_comes_back(tmp_path):
    journal = open_journal(tmp_path, KEY)
    journal.write(10, 0, [True, False] * 8)  # trials 0..15
    journal.write(10, 16, [True] * 16)  # touches: kept apart
    journal.write(10, 8, [True, False] * 4 + [True] * 4)  # overlaps both, agrees: one run
    journal.write(10, 40, [False] * 8)  # a gap before it
    journal.close()
    again = open_journal(tmp_path, KEY)
    runs = again._known[10]
    assert runs.starts == [0, 40] and runs.ends == [32, 48]
    assert again.known(10, 12, 10) == [True, False] * 2 + [True] * 6
    assert again.known(10, 30, 12) is None and again.known(10, 40, 8) == [False] * 8
    again.close()


def test_a_short_write_leaves_whole_lines_only(tmp_path, monkeypatch):
    journal = open_journal(tmp_path, KEY)
    journal.write(10, 0, [True] * 8)
    real_write = os.write

    def short(fd, data):
        return real_write(fd, data[:len(data) // 2])
    monkeypatch.setattr(os, "write", short)
    journal.write(10, 8, [False] * 8)
    monkeypatch.undo()
    assert len(journal.notes) == 1 and "could not be written" in journal.notes[0]
    journal.close()
    again, warned = reopened(tmp_path)
    assert again.known(10, 0, 8) == [True] * 8 and again.known(10, 8, 8) is None and warned == []
    again.close()


def test_a_journal_left_behind_goes_once_the_store_holds_its_record(registry, tmp_path, uninterrupted):
    """Stopped midway, then measured by another way (here: the record put in the store
    directly): the next run reuses the record and removes the journal nobody holds."""
    reference, _ = uninterrupted
    path = interrupted(registry, tmp_path)
    ResultStore(tmp_path).append(reference)
    job, settings = job_of(registry)
    outcome = execute([job], settings, store=ResultStore(tmp_path))
    assert outcome.reused == {0} and not path.exists() and not (tmp_path / UNFINISHED).exists()


def test_a_journal_held_by_a_running_process_is_not_removed_by_another(registry, tmp_path, uninterrupted):
    reference, _ = uninterrupted
    job, settings = job_of(registry)
    holder = open_journal(tmp_path, job.measurement_key(settings))
    ResultStore(tmp_path).append(reference)
    execute([job], settings, store=ResultStore(tmp_path))
    assert holder.path.exists()
    holder.close()


def test_the_resume_note_is_printed_as_written():
    import io

    from rich.console import Console
    from superposition_harness.cli import _say

    console = Console(file=io.StringIO(), width=200)
    _say(console, "x /tmp/:fire:/[bold]store[/bold] y")
    assert console.file.getvalue() == "x /tmp/:fire:/[bold]store[/bold] y\n"


# ------------------------------------------------------- samples: trials that are not consecutive


def test_a_sample_of_scattered_trials_is_kept_and_recalled_trial_by_trial(tmp_path):
    """What `harness verify` keeps: the outcomes of scattered trials, one entry per run of
    consecutive ones; recalled, each trial the journal does not hold is None."""
    journal = open_journal(tmp_path, KEY, folder="", work="check")
    journal.keep(10, [3, 4, 5, 9, 40], [True, False, True, False, True])
    journal.close()
    lines = journal.path.read_text().splitlines()
    assert [json.loads(line).get("start") for line in lines[2:]] == [3, 9, 40]
    again, warned = open_journal(tmp_path, KEY, folder="", work="check"), []
    assert again.recall(10, [2, 3, 5, 9, 10, 40], replay=False) == [None, True, True, False, None, True]
    assert again.replayed == 0
    assert again.recall(10, [4, 5, 40]) == [False, True, True] and again.replayed == 3
    assert again.recall(11, [4]) == [None]
    again.close()
    again.remove()
    assert tmp_path.is_dir() and warned == []  # a folder of the caller's is never removed
