"""Output targets and interruptions: a run writes every output or none, never replaces
what is not a regular file, never overwrites an input (list files and paired experiments
included), and an interrupted run leaves no temporary file and no worker process."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import stat

import pytest
from conftest import data_path, split_stills
from test_programs_common import PROGRAMS, assert_sorry, inputs, run_inprocess

from dials_refl_stats.pipeline import execute, outputs

LONG = 250  # a legal file name, too long for a temporary named "<name>.XXXXXXXX<suffix>"


def leftovers(directory) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_pipe_as_output_is_refused_and_left_a_pipe(tmp_path, program):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    code, _, err = run_inprocess(program, [*inputs(), f"output.json={fifo}"], tmp_path)
    assert_sorry(code, err, "output.json=", "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert leftovers(tmp_path) == ["pipe.json"]


def test_a_device_as_output_is_refused(tmp_path):
    code, _, err = run_inprocess(
        "spot_size_histogram", [*inputs(), "output.log=/dev/null"], tmp_path
    )
    assert_sorry(code, err, "output.log=/dev/null", "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(tmp_path) == []


def test_a_directory_where_no_file_can_be_made_is_one_sorry(tmp_path):
    code, _, err = run_inprocess(
        "spot_size_histogram", [*inputs(), "output.json=/proc/x.json"], tmp_path
    )
    assert_sorry(code, err, "output.json=/proc/x.json", "cannot make a file in /proc")
    assert leftovers(tmp_path) == []


def test_long_output_names(tmp_path):
    name = "a" * (LONG - len(".json")) + ".json"
    code, _, err = run_inprocess("spot_size_histogram", [*inputs(), f"json={name}"], tmp_path)
    assert code == 0, err
    assert name in leftovers(tmp_path) and not [n for n in leftovers(tmp_path) if n[0] == "."]
    other = tmp_path / "other"
    other.mkdir()
    too_long = "b" * 256 + ".json"
    code, _, err = run_inprocess("spot_size_histogram", [*inputs(), f"json={too_long}"], other)
    assert_sorry(code, err, "file name too long")
    assert leftovers(other) == []


def test_a_list_file_is_an_input_never_overwritten(tmp_path):
    listing = tmp_path / "files.txt"
    listing.write_text(f"{data_path('sim_small/indexed.refl')}\n")
    before = listing.read_bytes()
    for target in (f"output.json={listing}", f"output.log={listing}"):
        code, _, err = run_inprocess("spot_size_histogram", [f"@{listing}", target], tmp_path)
        assert_sorry(code, err, "would overwrite an input file")
    assert listing.read_bytes() == before
    assert leftovers(tmp_path) == ["files.txt"]


def test_paired_experiments_are_inputs_never_overwritten(tmp_path):
    """A directory's X.refl comes with its X.expt; an output named X.expt is refused, and
    an output named like any .expt does not keep the experiments from being paired."""
    folder = tmp_path / "data"
    folder.mkdir()
    for suffix in ("refl", "expt"):
        (folder / f"indexed.{suffix}").write_bytes(
            data_path(f"sim_small/indexed.{suffix}").read_bytes()
        )
    expt = (folder / "indexed.expt").read_bytes()
    program = "strong_reflection_positions"
    code, _, err = run_inprocess(
        program, [folder, f"output.log={folder / 'indexed.expt'}"], tmp_path
    )
    assert_sorry(code, err, "would overwrite an input file")
    assert (folder / "indexed.expt").read_bytes() == expt

    code, _, err = run_inprocess(program, [folder, "output.log=other.expt"], tmp_path)
    assert code == 0, err
    log = (tmp_path / "other.expt").read_text()
    assert "experiments = " in log and "No resolution shells" not in log


@pytest.mark.parametrize("argument", ["@missing.txt", "@.", "missing.lst", "@"])
def test_unreadable_list_files_are_one_line(tmp_path, argument):
    code, _, err = run_inprocess("spot_size_histogram", [argument], tmp_path)
    assert_sorry(code, err)
    assert leftovers(tmp_path) == []


def test_binary_list_file_is_one_line(tmp_path):
    (tmp_path / "bin.lst").write_bytes(b"\x00\xc3\x28\xff\xfe")
    code, _, err = run_inprocess("spot_size_histogram", ["bin.lst"], tmp_path)
    assert_sorry(code, err, "bin.lst", "cannot read the list of files")
    assert leftovers(tmp_path) == ["bin.lst"]


def test_a_target_changed_during_the_run_keeps_no_output(tmp_path, monkeypatch):
    """The plot's path became a directory while the run went on: nothing is kept."""
    commit = outputs.OutputFiles.commit

    def late_change(self):
        os.mkdir(self.targets["plot"])
        commit(self)

    monkeypatch.setattr(outputs.OutputFiles, "commit", late_change)
    code, _, err = run_inprocess("spot_size_histogram", inputs(), tmp_path)
    assert_sorry(code, err, "output.plot=", "no longer a regular file")
    assert leftovers(tmp_path) == ["spot_size_histogram.png"]  # the directory made here
    assert os.path.isdir(tmp_path / "spot_size_histogram.png")


@pytest.mark.parametrize("nproc", [1, 2])
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_an_interrupted_run_leaves_nothing(tmp_path, monkeypatch, nproc, how):
    """SIGTERM (exit 143) or Ctrl-C (130, one line) while the results come in: no
    temporary output left, no worker process left, the SIGTERM handler restored."""
    folder = tmp_path / "stills"
    split_stills("ssx_CuNiR/strong_5.refl", folder, copies=4)
    update = execute.Progress.update

    def interrupted(self, result):
        if how == "SIGTERM":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            raise KeyboardInterrupt
        update(self, result)

    monkeypatch.setattr(execute.Progress, "update", interrupted)
    monkeypatch.setattr(execute, "BATCH_FILES", 2)
    handler = signal.getsignal(signal.SIGTERM)
    work = tmp_path / "work"
    work.mkdir()
    code, _, err = run_inprocess("spot_size_histogram", [folder, f"mp.nproc={nproc}"], work)
    assert code == 128 + getattr(signal, how)
    assert err == ("" if how == "SIGTERM" else "dials.spot_size_histogram: interrupted\n")
    assert leftovers(work) == []
    assert multiprocessing.active_children() == []
    assert signal.getsignal(signal.SIGTERM) == handler


INTERRUPT_AT_FIRST_RESULT = """
import os, signal, sys
from dials_refl_stats.command_line import spot_size_histogram
from dials_refl_stats.pipeline import execute

def interrupted(self, result):
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))

execute.Progress.update = interrupted
spot_size_histogram.run(sys.argv[2:])
"""


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_an_interrupted_process_pool_exits_at_once(tmp_path, how):
    """Interrupted while batches are still in the pipe to the workers (long paths: the
    pipe is full): the process ends at once (its exit once waited for ever on the
    executor's feeder thread), with no worker and no file left."""
    import subprocess
    import sys

    folder = tmp_path / ("d" * 200) / ("e" * 200)
    split_stills("ssx_CuNiR/strong_5.refl", folder, copies=300)
    work = tmp_path / "work"
    work.mkdir()
    process = subprocess.run(
        [sys.executable, "-c", INTERRUPT_AT_FIRST_RESULT, how, str(folder), "mp.nproc=2"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 128 + getattr(signal, how), process.stderr
    assert leftovers(work) == []
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(folder) not in ps


def test_inputs_named_like_a_target_are_found_as_by_matching_each_one():
    """The one-string search for inputs named like an output target (10^6 inputs) finds
    what matching every input's name finds, newlines in names and all."""
    from dials_refl_stats.pipeline.outputs import _inputs_named_like

    rng = random.Random(5)
    names = ["a.json", "b.log", "x.refl", "s_1.refl", "we\nird.refl", "ird.refl", "a.json.bak"]
    folders = ["", "d/", "/e/f/", "d/a.json/", "g\n/"]
    for _ in range(2000):
        given = [rng.choice(folders) + rng.choice(names) for _ in range(rng.randint(0, 8))]
        targets = {
            name: rng.choice([None, rng.choice(["", "o/"]) + rng.choice(names)])
            for name in ("log", "json", "plot")
        }
        wanted = {os.path.basename(p) for p in targets.values() if p}
        expected = {
            os.path.realpath(p) for p in given if any(p == n or p.endswith("/" + n) for n in wanted)
        }
        assert _inputs_named_like(targets, given) == expected, (targets, given)


def test_a_run_checks_its_targets_once(tmp_path, monkeypatch):
    """The targets are checked before any work, by the outputs the run then writes
    (prepared and committed with their own checks), not a second time."""
    checks = []
    check = outputs.check_targets
    monkeypatch.setattr(outputs, "check_targets", lambda t, i: checks.append(t) or check(t, i))
    code, _, err = run_inprocess("spot_size_histogram", inputs(), tmp_path)
    assert code == 0, err
    assert len(checks) == 1
    assert sorted(os.listdir(tmp_path)) == [
        "dials.spot_size_histogram.log",
        "spot_size_histogram.json",
        "spot_size_histogram.png",
    ]
