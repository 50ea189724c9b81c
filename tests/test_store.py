"""The results store never tears or blocks: failed writes, torn lines, files that are not
files, a bad ``--results``, decoders that fork or move the process, and a killed harness."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import misbehaving
import pytest
import superposition_harness.cli as cli_module
import superposition_harness.results as results
from superposition_harness.cli import main
from superposition_harness.plugins import load_registry
from superposition_harness.results import ResultStore, StoreError, read_records
from test_refusals import one_line

SMALL = ["--n", "256", "--k", "3", "--trials", "96", "--seed", "5"]


def a_record(i: int) -> dict:
    return {"decoder": "mp", "i": i, "plugin_package": "p", "plugin_version": "0", "status": "ok",
            "params": {}, "target": 0.95, "trials": 32, "provenance": {"harness_version": "0"},
            "search": {"max_trials_per_dimension": 256, "d_max": 100, "resolution": 0.01},
            "problem": {"n": 256, "k": 3, "dictionary": "rademacher", "noise": 0.0, "seed": 0,
                        "subsets_per_draw": 32},
            "curve": [{"d": 20, "trials": 32, "successes": 30}]}


# ------------------------------------------------------------------ failed writes


@pytest.mark.parametrize("failure", ["short write", "ENOSPC from write", "EIO from fsync"])
def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch, failure):
    store = ResultStore(tmp_path)
    store.append(a_record(0))
    before = store.path.read_bytes()
    real_write, real_fsync = os.write, os.fsync

    def write(fd, data):
        if failure == "short write":
            return real_write(fd, data[: len(data) // 2])  # the disk filled up half way
        if failure == "ENOSPC from write":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def fsync(fd):
        if failure == "EIO from fsync":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_fsync(fd)

    monkeypatch.setattr(results.os, "write", write)
    monkeypatch.setattr(results.os, "fsync", fsync)
    with pytest.raises(StoreError) as caught:
        store.append(a_record(1))
    message = str(caught.value)
    assert message.startswith(f"cannot write results to {store.path}: ") and "\n" not in message
    assert "the record was not stored and the file holds what it held before" in message
    assert store.path.read_bytes() == before
    monkeypatch.undo()
    store.append(a_record(2))
    assert [r["i"] for r in store.load()] == [0, 2]


def test_a_full_disk_during_a_run_is_one_sentence_and_keeps_what_was_stored(tmp_path, monkeypatch, capsys):
    store = tmp_path / "store"
    assert main(["run", *SMALL, "--plugin", "topk", "--results", str(store)]) == 0
    capsys.readouterr()
    before = (store / "records.jsonl").read_bytes()
    real_write = os.write
    monkeypatch.setattr(results.os, "write", lambda fd, data: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) if fd > 2 else real_write(fd, data))
    status = main(["run", *SMALL, "--plugin", "mp", "--results", str(store)])
    one_line(capsys, status, "cannot write results to", "No space left on device", "was not stored")
    assert (store / "records.jsonl").read_bytes() == before


# ------------------------------------------------------------------ torn lines


def test_every_reader_skips_a_torn_line_that_a_record_follows(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["run", *SMALL, "--plugin", "topk", "--results", str(store)]) == 0
    path = store / "records.jsonl"
    good = path.read_bytes()
    path.write_bytes(good + b'{"decoder": "mp", "curve": [{"d"\n')  # a write cut short ...
    assert main(["run", *SMALL, "--plugin", "mp", "--results", str(store)]) == 0  # ... and one after it
    capsys.readouterr()
    assert len(read_records(path)) == 2
    warning = "line 2 is skipped: it is not valid JSON, the remains of a write that was cut short"
    for command in (["leaderboard", "--results", str(store)], ["verify", str(store), "--sample", "2"],
                    ["publish", str(store), "--out", str(tmp_path / "out"), "--no-figures"],
                    ["run", *SMALL, "--plugin", "mp", "--plugin", "topk", "--results", str(store)]):
        assert main(command) == 0, command
        err = " ".join(capsys.readouterr().err.split())
        assert warning in err, (command, err)


# ---------------------------------------------------------- files that are not files


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "records.jsonl"
    os.mkfifo(path)
    return path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own: a reader that blocked on a pipe would hang it,
    so the generous limit only ever ends a broken build."""
    return subprocess.run([sys.executable, "-m", "superposition_harness.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300, check=False)


@pytest.mark.parametrize("command", [["verify"], ["publish", "--no-figures", "--out", "OUT"], ["plot"]])
def test_readers_refuse_a_named_pipe_without_blocking(fifo, tmp_path, command):
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    result = run_cli(*args[:1], str(fifo), *args[1:])
    assert result.returncode == 2, result.stderr
    assert "is a named pipe, not a regular file" in result.stderr and "Traceback" not in result.stderr


def test_the_store_refuses_a_records_file_that_is_a_pipe_or_a_device(tmp_path, capsys):
    os.mkfifo(tmp_path / "records.jsonl")
    one_line(capsys, main(["leaderboard", "--results", str(tmp_path)]), "is a named pipe, not a regular file")
    result = run_cli("run", *SMALL, "--plugin", "topk", "--results", str(tmp_path))
    assert result.returncode == 2 and "is a named pipe, not a regular file" in result.stderr
    device = tmp_path / "device"
    device.mkdir()
    (device / "records.jsonl").symlink_to("/dev/null")
    one_line(capsys, main(["run", *SMALL, "--plugin", "topk", "--results", str(device)]),
             "is a character device, not a regular file")


@pytest.mark.parametrize("path", ["/proc/self/status", "/dev/zero", "/sys/kernel/mm"])
def test_readers_refuse_the_kernels_files_before_reading(capsys, path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    one_line(capsys, main(["verify", path]), path.split("/")[1])


def test_a_records_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch, capsys):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(a_record(0)) + "\n")
    monkeypatch.setattr(results, "MAX_RECORDS_BYTES", 100)
    one_line(capsys, main(["verify", str(path)]), "more than the 100 allowed")


def test_a_record_naming_a_pipe_as_its_dictionary_is_unverifiable_without_blocking(tmp_path, capsys):
    import numpy as np

    matrix = tmp_path / "F.npy"
    np.save(matrix, np.random.default_rng(0).standard_normal((24, 64)).astype(np.float32))
    assert main(["run", "--dictionary", str(matrix), "--plugin", "topk", "--trials", "32", "--no-store",
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    matrix.unlink()
    os.mkfifo(matrix)
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(record) + "\n")
    result = run_cli("verify", str(records), "--json")
    assert result.returncode == 3, result.stderr
    [verdict] = [json.loads(line) for line in result.stdout.splitlines()]
    assert verdict["status"] == "unverifiable"
    assert "is a named pipe, not a regular file" in verdict["reasons"][-1]


def test_the_fingerprint_hashes_only_the_files_the_dictionary_is_read_from(tmp_path):
    from superposition_harness.weights import fingerprint, source_files
    from test_weights import random_sae, saelens_config, write_saelens

    sae = write_saelens(tmp_path / "sae", random_sae(), saelens_config("standard"))
    before = fingerprint(sae)
    (sae / "notes.txt").write_text("unrelated")
    os.mkfifo(sae / "pipe")  # would block a reader that opened it
    (sae / "big.bin").write_bytes(b"\0" * 1024)
    assert fingerprint(sae) == before
    assert [p.name for p in source_files(sae)] == ["cfg.json", "sae_weights.safetensors"]
    (sae / "sae_weights.safetensors").unlink()
    os.mkfifo(sae / "sae_weights.safetensors")
    with pytest.raises(ValueError, match="holds no SAE weights"):  # refused, never opened
        fingerprint(sae)


# ------------------------------------------------------------------ --results


@pytest.mark.parametrize("where, fragment", [("a file", "is a file, not a directory"),
                                             ("/proc", "is in /proc, where results cannot be stored"),
                                             ("under a file", "cannot write results to")])
def test_a_bad_results_path_is_refused_before_the_first_measurement(marker, tmp_path, capsys, where,
                                                                    fragment):
    target = {"a file": tmp_path / "plain.txt", "/proc": Path("/proc/harness-results"),
              "under a file": tmp_path / "plain.txt" / "store"}[where]
    (tmp_path / "plain.txt").write_text("not a store")
    one_line(capsys, main(["run", *SMALL, "--plugin", "marks", "--results", str(target)]), fragment)
    assert not marker.exists()


def test_a_read_only_results_directory_is_refused_before_the_first_measurement(marker, tmp_path, capsys,
                                                                               monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    real_open = os.open

    def read_only(path, flags, *mode):
        if str(path) == str(store / "records.jsonl") and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *mode)

    monkeypatch.setattr(results.os, "open", read_only)
    one_line(capsys, main(["run", *SMALL, "--plugin", "marks", "--results", str(store)]),
             "Read-only file system")
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not stop root")
def test_a_directory_without_write_permission_is_refused(marker, tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir(mode=0o555)
    one_line(capsys, main(["run", *SMALL, "--plugin", "marks", "--results", str(store)]), "Permission denied")
    assert not marker.exists()


# ------------------------------------------------- decoders that move the process


@pytest.fixture
def with_misbehaving(monkeypatch):
    real = load_registry
    monkeypatch.setattr(cli_module, "load_registry", lambda: real(extra_plugins=[misbehaving]))


def test_decoders_that_fork_or_change_directory_cannot_add_move_or_lose_records(with_misbehaving, tmp_path,
                                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    plugins = [arg for name in ("topk", "bad-chdir", "bad-forks", "bad-os-exit", "mp")
               for arg in ("--plugin", name)]
    status = main(["run", *SMALL, *plugins, "--workers", "1", "--results", "store"])
    assert status == 1  # bad-os-exit is recorded as an error; the run went on
    assert Path.cwd() == tmp_path
    lines = (tmp_path / "store" / "records.jsonl").read_text().splitlines()
    decoders = [json.loads(line)["decoder"] for line in lines]
    assert decoders == ["topk", "bad-chdir", "bad-forks", "bad-os-exit", "mp"]  # each once: no copy wrote
    repository = Path(misbehaving.__file__).resolve().parent.parent
    assert not (repository / "store").exists()


def test_a_copy_of_the_process_cannot_write_the_store(tmp_path):
    store = ResultStore(tmp_path)
    pid = os.fork()
    if pid == 0:  # the copy: its append must be refused, whatever it does after
        try:
            store.append(a_record(1))
            os._exit(3)
        except StoreError:
            os._exit(0)
        os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not store.path.exists() or store.path.read_text() == ""


# ------------------------------------------------------------------ a killed harness


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the workers")
@pytest.mark.parametrize("mode", [["--workers", "2"], ["--timeout", "600"]])
def test_workers_end_soon_after_the_harness_is_killed(tmp_path, mode):
    """Small problems run side by side in worker processes (or each alone, under a time
    limit); SIGKILL of the harness must not leave them computing for nobody."""
    args = ["run", "--n", "4096", "--k", "4", "--k", "8", "--k", "16", "--k", "32", "--plugin", "mp",
            "--plugin", "topk", *mode, "--results", str(tmp_path / "store")]
    harness = subprocess.Popen([sys.executable, "-m", "superposition_harness.cli", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        workers: list[int] = []
        deadline = time.monotonic() + 300
        while not workers and time.monotonic() < deadline and harness.poll() is None:
            workers = [pid for pid in _children(harness.pid) if "spawn_main" in
                       Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
            time.sleep(0.2)
        assert workers, "the harness started no worker process"
        time.sleep(1.0)  # let them get to work
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    deadline = time.monotonic() + 60  # they poll for their parent every second
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), [pid for pid in workers if _alive(pid)]
