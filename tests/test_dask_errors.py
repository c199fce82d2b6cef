"""Dask failures the user can cause or meet: a scheduler file that is missing or is not
one, a scheduler that is gone, and a scheduler with no workers (none started, or all
killed mid-run). Each is one ``Sorry`` line within ``mp.dask.timeout``, never a traceback
or a wait for ever, and writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import data_path, program_path
from test_programs_common import assert_sorry, run_inprocess
from test_scale import free_port, start_scheduler, stop_processes

pytest.importorskip("distributed")

PROGRAM = "spot_size_histogram"
REFL = "sim_small/indexed.refl"

#: A worker preload that makes every batch take ``DELAY`` seconds longer (the run is
#: then underway, or unfinished, for as long as a test needs).
SLOW_TASKS = """\
import time

from dials_refl_stats.pipeline import engines

DELAY = {delay}


def _slowed(batch):
    def slow_batch(*args, **kwargs):
        time.sleep(DELAY)
        return batch(*args, **kwargs)

    slow_batch.slowed = True
    return slow_batch


# Dask imports a preload again in the worker process the nanny starts: slowed once
if not getattr(engines._packed_batch, "slowed", False):
    engines._packed_batch = _slowed(engines._packed_batch)
"""


def dask_args(*extra: str, timeout: float = 2) -> list[str]:
    return [str(data_path(REFL)), "mp.method=dask", f"mp.dask.timeout={timeout}", *extra]


def run_sorry(tmp_path: Path, *extra: str, timeout: float = 2) -> tuple[str, float]:
    """Run the program in-process in an empty directory: its one Sorry line and the
    seconds it took. Asserts it writes nothing."""
    work = tmp_path / "work"
    work.mkdir()
    start = time.monotonic()
    code, _, err = run_inprocess(PROGRAM, dask_args(*extra, timeout=timeout), work)
    elapsed = time.monotonic() - start
    assert_sorry(code, err)
    assert not list(work.iterdir())
    return err.strip(), elapsed


def test_missing_scheduler_file_is_sorry_after_the_timeout(tmp_path):
    missing = tmp_path / "nonexist.json"
    line, elapsed = run_sorry(tmp_path, f"scheduler_file={missing}")
    assert line == f"Sorry: Dask scheduler file {missing} does not exist (waited 2 s)"
    assert 2 <= elapsed < 10


NOT_SCHEDULER_FILES = {
    "text": b"garbage\n",
    "random bytes": bytes(range(256)) * 4,
    "empty": b"",
    "json list": b'["tcp://127.0.0.1:8786"]',
    "json without address": b'{"type": "Scheduler", "id": "x"}',
    "address not a string": b'{"address": 8786}',
    "empty address": b'{"address": ""}',
}


@pytest.mark.parametrize("case", sorted(NOT_SCHEDULER_FILES))
def test_a_file_that_is_not_a_scheduler_file_is_sorry(tmp_path, case):
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(NOT_SCHEDULER_FILES[case])
    line, elapsed = run_sorry(tmp_path, f"scheduler_file={garbage}")
    assert line.startswith(f"Sorry: {garbage} is not a Dask scheduler file"), line
    assert elapsed < 10


def test_a_directory_as_scheduler_file_is_sorry(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    line, _ = run_sorry(tmp_path, f"scheduler_file={folder}")
    assert line == f"Sorry: cannot read the Dask scheduler file {folder}: Is a directory"


def test_scheduler_file_of_a_dead_scheduler_is_sorry_within_the_timeout(tmp_path):
    dead = tmp_path / "scheduler.json"
    dead.write_text(json.dumps({"type": "Scheduler", "address": f"tcp://127.0.0.1:{free_port()}"}))
    line, elapsed = run_sorry(tmp_path, f"scheduler_file={dead}")
    assert line.startswith(f"Sorry: cannot connect to the Dask scheduler ({dead}): "), line
    assert "after 2 s" in line
    assert elapsed < 10


@pytest.fixture
def scheduler(tmp_path):
    """A real ``dask scheduler`` on 127.0.0.1 with no workers (as in test_scale's
    ``start_cluster``, which waits for at least one): its address."""
    process, scheduler_file, _ = start_scheduler(tmp_path)
    try:
        wait_until(scheduler_file.exists)
        time.sleep(0.2)  # written out
        yield json.loads(scheduler_file.read_text())["address"]
    finally:
        stop_processes([process])


def start_worker(
    address: str, folder: Path, delay: float, preload: Path | None = None
) -> subprocess.Popen:
    """A ``dask worker`` (nanny and worker, in a session of their own) whose batches take
    ``delay`` seconds longer (or with another ``preload``)."""
    if preload is None:
        preload = folder / f"slow_tasks_{free_port()}.py"
        preload.write_text(SLOW_TASKS.format(delay=delay))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            address,
            "--nthreads",
            "1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--preload",
            str(preload),
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        start_new_session=True,
    )


def kill_worker(worker: subprocess.Popen) -> None:
    """``kill -9`` of the worker and its nanny (its whole session)."""
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    worker.wait(timeout=30)


def wait_until(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def start_program(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [program_path(PROGRAM), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_a_scheduler_without_workers_is_sorry_after_the_timeout(tmp_path, scheduler):
    line, elapsed = run_sorry(tmp_path, f"scheduler_address={scheduler}")
    assert line.startswith(f"Sorry: no Dask workers for 2 s at {scheduler}; "), line
    assert 2 <= elapsed < 10


def test_every_worker_killed_mid_run_is_sorry_after_the_timeout(tmp_path, scheduler):
    from distributed import Client

    worker = start_worker(scheduler, tmp_path, delay=60)
    program = None
    try:
        with Client(scheduler, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
            work = tmp_path / "work"
            work.mkdir()
            args = dask_args(f"scheduler_address={scheduler}", timeout=3)
            program = start_program(args, work)
            wait_until(lambda: any(client.processing().values()))  # the run is underway
        killed = time.monotonic()
        kill_worker(worker)
        _, err = program.communicate(timeout=30)
        elapsed = time.monotonic() - killed
    finally:
        kill_worker(worker)
        if program is not None and program.poll() is None:
            program.kill()
            program.wait(timeout=30)
    assert_sorry(program.returncode, err, f"no Dask workers for 3 s at {scheduler}; ")
    assert 3 <= elapsed < 15
    assert not list(work.iterdir())


def test_one_of_two_workers_killed_mid_run_gives_the_same_result(tmp_path, scheduler):
    from distributed import Client

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(8):
        shutil.copy(data_path("ssx_CuNiR/indexed.refl"), folder / f"idx-{i:04d}_indexed.refl")
    args = [str(folder), "selection.flags=all", "output.plot=None"]
    serial = tmp_path / "serial"
    serial.mkdir()
    assert run_inprocess(PROGRAM, args, serial)[0] == 0
    workers = [start_worker(scheduler, tmp_path, delay=0.5) for _ in range(2)]
    program = None
    try:
        with Client(scheduler, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            work = tmp_path / "work"
            work.mkdir()
            dask = ["mp.method=dask", f"scheduler_address={scheduler}", "mp.nproc=2"]
            program = start_program([*args, *dask, "mp.dask.timeout=3"], work)
            wait_until(lambda: all(client.processing().values()))  # both workers busy
        kill_worker(workers[0])  # Dask hands its batches to the other worker
        _, err = program.communicate(timeout=60)
    finally:
        for worker in workers:
            kill_worker(worker)
        if program is not None and program.poll() is None:
            program.kill()
            program.wait(timeout=30)
    assert program.returncode == 0, err
    assert err == ""
    on_dask = json.loads((work / f"{PROGRAM}.json").read_text())
    expected = json.loads((serial / f"{PROGRAM}.json").read_text())
    assert on_dask["results"] == expected["results"]
    assert on_dask["selection"] == expected["selection"]


#: A worker preload whose batches kill the worker (the nanny starts another, Dask hands
#: the batch to it, until it gives up on the batch: ``KilledWorker``).
DYING_TASKS = """\
import os

from dials_refl_stats.pipeline import engines

engines._packed_batch = lambda *args, **kwargs: os._exit(1)
"""


def test_a_task_that_kills_its_workers_is_sorry(tmp_path, scheduler):
    """Dask gives up on a batch whose workers die each time (KilledWorker): one Sorry,
    nothing written (was a traceback)."""
    preload = tmp_path / "dying_tasks.py"
    preload.write_text(DYING_TASKS)
    worker = start_worker(scheduler, tmp_path, 0, preload=preload)
    try:
        line, _ = run_sorry(tmp_path, f"scheduler_address={scheduler}", timeout=20)
    finally:
        kill_worker(worker)
    assert "Dask gave up on a task after the workers running it died" in line
