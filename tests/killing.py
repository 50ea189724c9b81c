"""Stopping a command midway, as a user's kill would: for the tests of resuming."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def kill_once_journaled(command: list[str], journals: Path, lines: int = 5) -> None:
    """Run ``command`` and kill it with SIGKILL once a journal in ``journals`` holds ``lines``
    lines; fail if it ended first. Waits on healthy work for minutes, never seconds."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        found = list(journals.glob("*.journal")) if journals.is_dir() else []
        if found and found[0].read_bytes().count(b"\n") >= lines:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the command ended before it could be killed"
