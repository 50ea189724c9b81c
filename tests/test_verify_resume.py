"""`harness verify` stopped midway resumes: the trials it re-ran are journaled, draw by
draw, in the verifier's own directory, and a check run again with the same seed reaches
the verdict of an uninterrupted one without re-running them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from killing import kill_once_journaled
from superposition_harness.cli import main
from superposition_harness.journal import journal_path, open_journal
from superposition_harness.plugins import load_registry
from superposition_harness.runner import LocalTrials, TrialRunner
from superposition_harness.verify import (
    FAILED,
    VERIFIED,
    default_journals,
    verify_journal_key,
    verify_record,
)

SEED = 12345

#: ``LocalTrials.outcomes`` as the harness has it (each ``counting`` wraps this one).
REAL_OUTCOMES = LocalTrials.outcomes


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """A real `mp` record of about 1,300 trials, its sample spread over many draws."""
    root = tmp_path_factory.mktemp("store")
    assert main(["run", "--n", "256", "--k", "3", "--trials", "96", "--seed", "5", "--plugin", "mp",
                 "--results", str(root)]) == 0
    [line] = (root / "records.jsonl").read_text().splitlines()
    return json.loads(line)


def counting(monkeypatch, stop_after: int | None = None) -> list[int]:
    """The draws re-run (calls of ``LocalTrials.outcomes``, one per draw), as the number of
    trials each re-ran; raise KeyboardInterrupt at call ``stop_after + 1``, as a user's
    Ctrl-C would stop the check."""
    calls: list[int] = []
    real = REAL_OUTCOMES

    def wrapped(self, value, trials):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append(len(trials))
        return real(self, value, trials)
    monkeypatch.setattr(LocalTrials, "outcomes", wrapped)
    return calls


def check(record, registry, journals, **options):
    options.setdefault("seed", SEED)
    return verify_record(record, "test:1", registry, journals=journals, **options)


def test_a_check_stopped_midway_resumes_with_the_verdict_of_an_uninterrupted_one(record, registry,
                                                                                  tmp_path, monkeypatch):
    whole = check(record, registry, None)
    draws = counting(monkeypatch)
    check(record, registry, None)
    assert whole.status == VERIFIED and len(draws) > 10

    counting(monkeypatch, stop_after=7)
    with pytest.raises(KeyboardInterrupt):
        check(record, registry, tmp_path)
    path = journal_path(tmp_path, verify_journal_key(record), "")
    assert path.is_file()

    calls = counting(monkeypatch)
    notes: list[str] = []
    again = check(record, registry, tmp_path, note=notes.append)
    assert (again.status, again.rerun_trials, again.sample_seed, again.reasons) == \
        (whole.status, whole.rerun_trials, whole.sample_seed, whole.reasons)
    assert calls == draws[7:]  # the seven draws journaled are not re-run
    assert 7 <= again.resumed["trials"] < whole.rerun_trials
    [segment] = again.resumed["segments"]
    assert segment["trials"] == again.resumed["trials"]
    assert len(notes) == 1 and "resuming from its journal" in notes[0]
    assert f"{again.resumed['trials']} of the sample's {whole.rerun_trials} trials" in notes[0]
    assert not path.exists() and tmp_path.is_dir()  # the check is over: its journal is gone, not its folder


def test_a_check_that_is_not_stopped_leaves_no_journal_and_says_it_resumed_nothing(record, registry,
                                                                                   tmp_path):
    verdict = check(record, registry, tmp_path / "journals")
    assert verdict.status == VERIFIED and verdict.resumed is None
    assert list((tmp_path / "journals").iterdir()) == []
    assert verdict.as_dict()["resumed"] is None


def test_trials_journaled_under_another_seed_serve_where_the_samples_meet(record, registry, tmp_path,
                                                                          monkeypatch):
    """An outcome does not depend on the sample that re-runs it: a full check after a
    stopped sampled one re-runs only what the journal lacks."""
    counting(monkeypatch, stop_after=5)
    with pytest.raises(KeyboardInterrupt):
        check(record, registry, tmp_path, sample=100)
    calls = counting(monkeypatch)
    full = check(record, registry, tmp_path, sample=None)
    assert full.status == VERIFIED and full.rerun_trials == record["trials"]
    assert 0 < full.resumed["trials"] <= 100
    assert sum(calls) == record["trials"] - full.resumed["trials"]


def forged(tmp_path) -> dict:
    """A record made by the harness itself with trial 5 of every probe flipped: its counts,
    search and score all follow from its outcomes, and only its trials give it away."""
    real = TrialRunner.outcomes_of

    def flipping(self, d, trials):
        trials = list(trials)
        return [outcome != (t == 5) for outcome, t in zip(real(self, d, trials), trials, strict=True)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrialRunner, "outcomes_of", flipping)
        assert main(["run", "--n", "256", "--k", "3", "--trials", "96", "--seed", "5", "--plugin", "mp",
                     "--results", str(tmp_path)]) == 0
    [line] = (tmp_path / "records.jsonl").read_text().splitlines()
    return json.loads(line)


def test_a_resumed_check_of_a_forgery_still_fails(registry, tmp_path, monkeypatch):
    forgery = forged(tmp_path / "store")
    counting(monkeypatch, stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        check(forgery, registry, tmp_path, sample=None)
    counting(monkeypatch)
    verdict = check(forgery, registry, tmp_path, sample=None)
    assert verdict.status == FAILED and verdict.resumed["trials"] > 0
    assert any("came out otherwise than stored (trials 5)" in reason for reason in verdict.reasons)


def test_a_planted_journal_of_other_code_is_not_used(record, registry, tmp_path, monkeypatch):
    """A journal of outcomes written by other code (here: claiming every trial succeeds) is
    replaced, and every trial is re-run."""
    key = verify_journal_key(record)
    journal = open_journal(tmp_path, key, folder="")
    journal._segment["git_commit"] = "0" * 40
    for point in record["curve"]:
        journal.write(point["d"], 0, [True] * point["trials"])
    journal.close()
    warned: list[str] = []
    calls = counting(monkeypatch)
    verdict = check(record, registry, tmp_path, sample=None, warn=warned.append)
    assert verdict.status == VERIFIED and verdict.resumed is None and sum(calls) == record["trials"]
    assert any("was written by other code" in sentence for sentence in warned)


def test_a_journal_directory_that_cannot_be_written_only_costs_the_resume(record, registry, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    warned: list[str] = []
    verdict = check(record, registry, blocked, warn=warned.append)
    assert verdict.status == VERIFIED and verdict.rerun_trials > 0
    assert len(warned) == 1 and "this check keeps no journal" in warned[0]
    assert blocked.read_text() == "not a directory"


def test_the_default_journal_directory_is_the_verifiers_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_journals() == tmp_path / "superposition-harness" / "verify"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_journals() == tmp_path / "home" / ".cache" / "superposition-harness" / "verify"


def test_the_command_keeps_its_journal_in_the_cache_and_none_with_no_journal(record, tmp_path, monkeypatch,
                                                                            capsys):
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(record) + "\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    opened: list[str] = []
    real = open_journal

    def spying(root, key, **options):
        opened.append(str(root))
        return real(root, key, **options)
    monkeypatch.setattr("superposition_harness.verify.open_journal", spying)
    assert main(["verify", str(records), "--seed", "3", "--sample", "40"]) == 0
    assert opened == [str(cache / "superposition-harness" / "verify")]
    assert "which also resumes it if it is stopped" in capsys.readouterr().err
    assert main(["verify", str(records), "--seed", "3", "--sample", "40", "--no-journal"]) == 0
    assert len(opened) == 1 and "resumes it" not in capsys.readouterr().err
    assert main(["verify", str(records), "--seed", "3", "--sample", "40", "--journal",
                 str(tmp_path / "mine")]) == 0
    assert opened[1:] == [str(tmp_path / "mine")]
    assert main(["verify", str(records), "--no-journal", "--journal", "x"]) == 2


def test_a_check_killed_midway_resumes_from_its_journal(record, tmp_path):
    """`harness verify --all` killed with SIGKILL once a few draws are journaled: run again
    with the same seed, it says it resumes and reaches the same verdict."""
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(record) + "\n")
    journals = tmp_path / "journals"
    command = [sys.executable, "-m", "superposition_harness.cli", "verify", str(records), "--all",
               "--seed", "1", "--journal", str(journals), "--json"]
    kill_once_journaled(command, journals)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming from its journal" in again.stderr
    [verdict] = [json.loads(line) for line in again.stdout.splitlines()]
    assert verdict["status"] == VERIFIED and verdict["rerun_trials"] == record["trials"]
    assert 0 < verdict["resumed"]["trials"] < record["trials"]
    assert list(journals.iterdir()) == []  # the check is over: its journal is gone


def test_a_journal_of_another_users_or_writable_by_others_is_never_read(record, registry, tmp_path):
    """A journal is the word of whoever wrote it: one another user could have written (its
    mode lets others write, or it belongs to another user) is not used, whatever it holds,
    and the check re-runs every trial (a forged record's planted journal verifies nothing)."""
    key = verify_journal_key(record)
    journal = open_journal(tmp_path, key, folder="")
    for point in record["curve"]:
        journal.write(point["d"], 0, [True] * point["trials"])
    journal.close()
    os.chmod(journal.path, 0o666)
    warned: list[str] = []
    verdict = check(record, registry, tmp_path, sample=50, warn=warned.append)
    assert verdict.status == VERIFIED and verdict.resumed is None
    assert any("can be written by other users" in sentence for sentence in warned)
    if os.geteuid() == 0:  # only root can give a file to another user
        os.chmod(journal.path, 0o644)
        os.chown(journal.path, 54321, 54321)
        warned.clear()
        verdict = check(record, registry, tmp_path, sample=50, warn=warned.append)
        assert verdict.status == VERIFIED and verdict.resumed is None
        assert any("belongs to another user (uid 54321)" in sentence for sentence in warned)


def test_a_directory_named_unfinished_that_the_user_gave_is_kept(record, registry, tmp_path):
    mine = tmp_path / "unfinished"
    verdict = check(record, registry, mine, sample=20)
    assert verdict.status == VERIFIED and mine.is_dir() and list(mine.iterdir()) == []


def test_without_a_home_directory_the_check_keeps_no_journal_and_says_so(record, tmp_path, monkeypatch,
                                                                         capsys):
    import pathlib
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(record) + "\n")
    monkeypatch.delenv("XDG_CACHE_HOME")

    def homeless(cls):
        raise RuntimeError("Could not determine home directory.")
    monkeypatch.setattr(pathlib.Path, "home", classmethod(homeless))
    assert default_journals() is None
    assert main(["verify", str(records), "--seed", "3", "--sample", "20"]) == 0
    err = capsys.readouterr().err
    assert "keeps no journal (there is no home directory" in err and "resumes it" not in err
