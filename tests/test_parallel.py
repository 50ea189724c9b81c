"""Worker threads: parts cover every column once, any worker count, errors propagate."""

from __future__ import annotations

import threading

import pytest
from superposition_harness import parallel


@pytest.fixture
def workers():
    previous = parallel.workers()
    yield parallel.set_workers
    parallel.set_workers(previous)


@pytest.mark.parametrize("stop, pieces", [(10, 3), (4096, 4), (5, 8), (1, 1), (7, 1)])
def test_split_covers_the_range_in_order_without_overlap(stop, pieces):
    ranges = list(parallel.split(stop, pieces))
    assert ranges[0][0] == 0 and ranges[-1][1] == stop
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert len(ranges) == min(pieces, stop)
    widths = [hi - lo for lo, hi in ranges]
    assert max(widths) - min(widths) <= 1


@pytest.mark.parametrize("count", [1, 2, 5])
def test_every_part_runs_once(workers, count):
    workers(count)
    seen = []
    lock = threading.Lock()

    def record(part):
        with lock:
            seen.append(part)

    parallel.run_parts(record, list(range(37)))
    assert sorted(seen) == list(range(37))


def test_parts_run_on_worker_threads_when_there_are_several(workers):
    workers(2)
    names = set()
    parallel.run_parts(lambda part: names.add(threading.current_thread().name), list(range(8)))
    assert all(name.startswith("harness-worker") for name in names)
    workers(1)
    names.clear()
    parallel.run_parts(lambda part: names.add(threading.current_thread().name), list(range(8)))
    assert names == {threading.current_thread().name}


def test_an_exception_in_a_part_reaches_the_caller(workers):
    workers(2)

    def fail(part):
        if part == 3:
            raise RuntimeError("part 3 failed")

    with pytest.raises(RuntimeError, match="part 3 failed"):
        parallel.run_parts(fail, list(range(6)))


def test_workers_must_be_positive(workers):
    with pytest.raises(ValueError, match="positive"):
        workers(0)


def _blas_threads():
    from threadpoolctl import threadpool_info
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_blas_threads_lowers_the_limit_inside_and_restores_it(workers):
    before = _blas_threads()
    with parallel.blas_threads(1):
        assert all(count == 1 for count in _blas_threads())
    assert _blas_threads() == before
    with parallel.blas_threads(10_000):
        assert _blas_threads() == before


def test_threaded_parts_run_with_one_blas_thread_each(workers):
    workers(2)
    seen = []
    parallel.run_parts(lambda part: seen.append(_blas_threads()), [0, 1, 2], threaded=True)
    assert all(all(count == 1 for count in counts) for counts in seen)
    seen.clear()
    parallel.run_parts(lambda part: seen.append(threading.current_thread().name), [0, 1, 2],
                       threaded=False)
    assert set(seen) == {threading.current_thread().name}


def _after_import(variable: str, given: str | None) -> str:
    """``variable`` in a fresh process's environment after it imports the harness, with
    the user's ``given`` value (``None``: unset)."""
    import os
    import subprocess
    import sys
    env = {key: value for key, value in os.environ.items() if key != variable}
    if given is not None:
        env[variable] = given
    code = f"import os, superposition_harness; print(os.environ[{variable!r}])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_waiting_threads_sleep_unless_the_user_says_otherwise():
    """OpenMP's waiting threads must not spin on a core that another process needs
    (benchmarks/test_contention.py); a policy the user set is kept."""
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        assert _after_import("OMP_WAIT_POLICY", given) == expected


#: After a product on two threads, the CPU time the process uses while its main thread
#: sleeps: OpenBLAS's worker spinning for its timeout, or nothing.
_SPIN_PROBE = """
import superposition_harness, time, numpy as np
from threadpoolctl import threadpool_info
blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
matrix = np.ones((1024, 1024), np.float32)
matrix @ matrix
began = time.process_time()
time.sleep(0.3)
print(blas[0]["internal_api"] if blas else "none", blas[0]["num_threads"] if blas else 0,
      time.process_time() - began)
"""


def test_openblas_threads_sleep_after_a_product_unless_the_user_says_otherwise():
    """OpenBLAS's worker threads must not spin after a product while the compiled kernels
    that follow need the cores: with the harness imported before NumPy, a process that
    sleeps right after a two-thread product uses no CPU. The same process with OpenBLAS's
    default timeout (2^28 cycles) is the control: its spinning worker must show, or the
    machine is too busy to tell the two apart and the test says so. A timeout the user
    set is kept."""
    import os
    import subprocess
    import sys

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("this process may use one core: OpenBLAS would not start a second thread")

    def cpu_while_sleeping(timeout: str | None) -> float:
        # Two BLAS threads whatever this process's environment says (Dask's nanny, started
        # by other tests in this process, sets OPENBLAS_NUM_THREADS=1 and OMP_NUM_THREADS=1).
        env = {key: value for key, value in os.environ.items()
               if key not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        env["OPENBLAS_NUM_THREADS"] = "2"
        if timeout is not None:
            env["OPENBLAS_THREAD_TIMEOUT"] = timeout
        done = subprocess.run([sys.executable, "-c", _SPIN_PROBE], env=env, capture_output=True,
                              text=True, check=True)
        library, threads, seconds = done.stdout.split()
        if library != "openblas" or int(threads) < 2:
            pytest.skip(f"NumPy's BLAS here is {library} on {threads} thread(s), not OpenBLAS on several")
        return float(seconds)

    spinning = max(cpu_while_sleeping("28") for _ in range(3))
    if spinning < 0.02:
        pytest.skip(f"OpenBLAS's default spin used only {spinning:.4f} s of CPU here: the machine is "
                    "too busy to tell spinning from sleeping")
    assert cpu_while_sleeping(None) < min(0.015, spinning / 3)
    for given, expected in ((None, "4"), ("20", "20")):
        assert _after_import("OPENBLAS_THREAD_TIMEOUT", given) == expected
