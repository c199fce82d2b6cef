"""Many files: directories, globs and list files; worker processes; a real Dask cluster.

Every engine must give byte-identical ``results`` to the serial run, and a bad file
among many must stop the run (default) or be skipped and reported.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TESTS_DATA, data_path, program_path, split_stills
from test_programs_common import PROGRAMS, assert_sorry, run_inprocess

from dials_refl_stats.analysis.statistic import Statistic

N_FILES = 24
#: Programs that need no experiments (the SSX stills tables have no scans).
STILLS = "ssx_CuNiR/indexed.refl"


@pytest.fixture(scope="module")
def many_files(tmp_path_factory) -> Path:
    """A directory of N_FILES copies of a real stills table (distinct files)."""
    folder = tmp_path_factory.mktemp("many")
    for i in range(N_FILES):
        shutil.copy(data_path(STILLS), folder / f"idx-{i:04d}_indexed.refl")
    return folder


def distinct_copy(stem: str, destination: Path) -> None:
    """Copy ``stem``.{refl,expt} with new experiment identifiers, written by DIALS (as
    separate processing batches would have them)."""
    from dials.array_family import flex
    from dxtbx.model.experiment_list import ExperimentListFactory

    experiments = ExperimentListFactory.from_json_file(str(data_path(f"{stem}.expt")), False)
    table = flex.reflection_table.from_file(str(data_path(f"{stem}.refl")))
    mapping = table.experiment_identifiers()
    for i, experiment in enumerate(experiments):
        new = f"{destination.name}-{i}"
        for key in list(mapping.keys()):
            if mapping[key] == experiment.identifier:
                mapping[key] = new
        experiment.identifier = new
    experiments.as_file(str(destination.with_suffix(".expt")))
    table.as_file(str(destination.with_suffix(".refl")))


def results_of(program: str, args, cwd: Path) -> dict:
    code, _, err = run_inprocess(program, [*args, "output.plot=None"], cwd)
    assert code == 0, err
    return json.loads((cwd / f"{program}.json").read_text())


def test_directory_glob_and_list_file_name_the_same_files(many_files, tmp_path):
    listing = tmp_path / "files.txt"
    names = sorted(p.name for p in many_files.iterdir())
    listing.write_text("".join(f"{many_files / n}\n" for n in names))
    documents = [
        results_of("spot_size_histogram", [arg, "selection.flags=strong"], tmp_path)
        for arg in (str(many_files), str(many_files / "idx-*_indexed.refl"), f"@{listing}")
    ]
    for document in documents:
        assert document["inputs"]["reflections"]["n_files"] == N_FILES
        assert [Path(p).name for p in document["inputs"]["reflections"]["paths"]] == names
        assert document["results"] == documents[0]["results"]
    # N copies of one file: N times the counts of one
    one = results_of("spot_size_histogram", [str(data_path(STILLS)), "flags=strong"], tmp_path)
    assert (
        documents[0]["results"]["overall"]["summary"]["n"]
        == N_FILES * (one["results"]["overall"]["summary"]["n"])
    )


def test_empty_directory_and_pattern_are_sorry(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for argument in (str(empty), str(tmp_path / "nothing-*.refl")):
        code, _, err = run_inprocess("spot_size_histogram", [argument], tmp_path)
        assert_sorry(code, err, argument)


#: Programs that read stills spot tables (intensity_per_frame needs integrated tables:
#: see test_integrated_batches_give_identical_results_on_processes).
SPOT_PROGRAMS = [p for p in PROGRAMS if p not in ("refl_stats", "intensity_per_frame")]


@pytest.mark.parametrize("program", SPOT_PROGRAMS)
def test_worker_processes_give_identical_results(many_files, tmp_path, program):
    args = [str(many_files), "selection.flags=all"]
    serial = results_of(program, args, tmp_path)
    parallel = results_of(program, [*args, "mp.nproc=2"], tmp_path)
    assert parallel["results"] == serial["results"]
    assert parallel["selection"] == serial["selection"]


def test_integrated_batches_give_identical_results_on_processes(tmp_path):
    folder = tmp_path / "batches"
    folder.mkdir()
    for i in range(6):
        distinct_copy("ssx_CuNiR/integrated", folder / f"integrated_{i}")
    args = [str(folder), "selection.flags=integrated_sum", "intensity.choice=sum"]
    serial = results_of("intensity_per_frame", args, tmp_path)
    parallel = results_of("intensity_per_frame", [*args, "mp.nproc=2"], tmp_path)
    assert parallel["results"] == serial["results"]


def test_bad_file_among_many_stops_or_is_skipped(many_files, tmp_path):
    folder = tmp_path / "with_bad"
    shutil.copytree(many_files, folder)
    bad = folder / "idx-0007_indexed.refl"
    data = bytearray(bad.read_bytes())
    bad.write_bytes(bytes(data[: len(data) // 2]))
    work = tmp_path / "work"
    work.mkdir()
    code, _, err = run_inprocess("spot_size_histogram", [str(folder)], work)
    assert_sorry(code, err, bad.name)
    assert not list(work.iterdir())
    document = results_of("spot_size_histogram", [str(folder), "input.on_error=skip"], work)
    skipped = document["selection"]["skipped"]
    assert [Path(s["path"]).name for s in skipped] == [bad.name]
    assert bad.name in (work / "dials.spot_size_histogram.log").read_text()
    assert document["selection"]["files"]["n_selected"][7] == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1."""
    pytest.importorskip("distributed")
    scheduler, workers, scheduler_file = start_cluster(tmp_path_factory.mktemp("dask"), 2)
    address = json.loads(scheduler_file.read_text())["address"]
    yield {"address": address, "file": scheduler_file, "workers": workers}
    stop_processes([*workers, scheduler])


def stop_processes(processes, grace: float = 1.0) -> None:
    """Terminate, and kill what has not ended after ``grace`` seconds (Dask workers take
    seconds to shut down gracefully; nothing of theirs is needed after the tests)."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.parametrize("program", SPOT_PROGRAMS)
def test_dask_cluster_gives_identical_results(many_files, tmp_path, dask_cluster, program):
    args = [str(many_files), "selection.flags=all"]
    serial = results_of(program, args, tmp_path)
    by_address = results_of(
        program, [*args, "mp.method=dask", f"scheduler_address={dask_cluster['address']}"], tmp_path
    )
    by_file = results_of(
        program, [*args, "mp.method=dask", f"scheduler_file={dask_cluster['file']}"], tmp_path
    )
    assert by_address["results"] == serial["results"]
    assert by_file["results"] == serial["results"]
    assert by_file["selection"] == serial["selection"]


@pytest.mark.parametrize("program", ["intensity_per_frame", "refl_stats"])
def test_dask_cluster_gives_identical_results_on_integrated_batches(
    tmp_path, dask_cluster, program
):
    """The programs that need integrated tables, with their experiments paired by stem:
    intensity per frame's series finished on the workers, and every statistic at once."""
    folder = tmp_path / "batches"
    folder.mkdir()
    for i in range(4):
        distinct_copy("ssx_CuNiR/integrated", folder / f"integrated_{i}")
    quiet = "output.html=None" if program == "refl_stats" else "output.plot=None"
    documents = []
    for extra in ([], ["mp.method=dask", f"scheduler_address={dask_cluster['address']}"]):
        code, _, err = run_inprocess(program, [str(folder), quiet, *extra], tmp_path)
        assert code == 0, err
        documents.append(json.loads((tmp_path / f"{program}.json").read_text()))
    serial, on_dask = documents
    assert on_dask["results"] == serial["results"]
    assert on_dask["selection"] == serial["selection"]
    assert len(serial["inputs"]["experiments"]["paths"]) == 4


@pytest.fixture(scope="module")
def stills_with_experiments(tmp_path_factory) -> tuple[Path, Path]:
    """The five stills of ``ssx_CuNiR/strong_5.refl``, one file each (DIALS's select and
    as_file), and their experiments (parallax-corrected panels)."""
    folder = tmp_path_factory.mktemp("stills_with_experiments")
    split_stills("ssx_CuNiR/strong_5.refl", folder)
    return data_path("ssx_CuNiR/imported_no_ref_5.expt"), folder


@pytest.mark.parametrize("program", ["strong_reflection_positions", "per_image_statistics"])
def test_dask_workers_rebuild_the_detector_geometry(
    stills_with_experiments, tmp_path, dask_cluster, program
):
    """Tasks that use the experiments' geometry (strong positions, DIALS's per-image
    analysis) get the dxtbx detector on workers that have imported nothing of DIALS (a
    plain pickle of the model cannot be read there: it killed every worker)."""
    expt, folder = stills_with_experiments
    args = [str(expt), str(folder)]
    serial = results_of(program, args, tmp_path)
    address = f"scheduler_address={dask_cluster['address']}"
    on_dask = results_of(program, [*args, "mp.method=dask", address], tmp_path)
    assert on_dask["results"] == serial["results"]


def test_a_task_the_workers_cannot_read_is_one_sorry(
    stills_with_experiments, tmp_path, dask_cluster, monkeypatch
):
    """A task a worker cannot unpickle (here: a detector that fails to rebuild) ends the
    run with one line and no output, instead of killing every worker in turn."""
    from dials_refl_stats import geometry

    monkeypatch.setattr(geometry.PicklableDetector, "__reduce__", lambda self: (int, ("x",)))
    expt, folder = stills_with_experiments
    args = [str(expt), str(folder), "mp.method=dask"]
    code, _, err = run_inprocess(
        "per_image_statistics", [*args, f"scheduler_address={dask_cluster['address']}"], tmp_path
    )
    assert code == 1
    assert err.startswith("Sorry: a Dask worker cannot read the task (ValueError")
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_dask_unreachable_scheduler_is_sorry(tmp_path, many_files):
    port = free_port()
    code, _, err = run_inprocess(
        "spot_size_histogram",
        [
            str(many_files),
            "mp.method=dask",
            f"scheduler_address=tcp://127.0.0.1:{port}",
            "mp.dask.timeout=2",
        ],
        tmp_path,
    )
    assert_sorry(code, err, "Dask scheduler")
    assert not list(tmp_path.iterdir())


def test_experiments_are_paired_by_stem_for_collections(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(3):
        distinct_copy("ssx_CuNiR/integrated", folder / f"integrated_{i}")
    args = [str(folder / "integrated_*.refl"), "selection.flags=integrated_sum"]
    paired = results_of("intensity_per_frame", args, tmp_path)
    assert paired["inputs"]["experiments"]["n_experiments"] == 3 * 5
    assert [Path(p).name for p in paired["inputs"]["experiments"]["paths"]] == [
        f"integrated_{i}.expt" for i in range(3)
    ]
    assert paired["results"]["frame_numbering"] == ["experiment_index"]
    alone = results_of("intensity_per_frame", [*args, "input.pair_experiments=False"], tmp_path)
    assert alone["inputs"]["experiments"]["n_experiments"] == 0
    assert alone["results"]["frame_numbering"] == ["z_floor"]


def start_scheduler(folder: Path) -> tuple[subprocess.Popen, Path, int]:
    """A ``dask scheduler`` on 127.0.0.1 writing ``folder/scheduler.json``: the process,
    its scheduler file and its port."""
    scheduler_file = folder / "scheduler.json"
    port = free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    quiet = {"cwd": folder, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            ":0",
            "--scheduler-file",
            str(scheduler_file),
        ],
        **quiet,
    )
    return scheduler, scheduler_file, port


def start_cluster(folder: Path, n_workers: int):
    """A ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1."""
    from distributed import Client

    scheduler, scheduler_file, port = start_scheduler(folder)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    quiet = {"cwd": folder, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                f"tcp://127.0.0.1:{port}",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ],
            **quiet,
        )
        for _ in range(n_workers)
    ]
    deadline = time.monotonic() + 60
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    with Client(scheduler_file=str(scheduler_file), timeout="30s") as client:
        client.wait_for_workers(n_workers, timeout=60)
    return scheduler, workers, scheduler_file


def test_worker_killed_mid_run_gives_identical_result_or_sorry(tmp_path):
    import threading

    pytest.importorskip("distributed")
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(160):
        shutil.copy(data_path("ssx_CuNiR/strong_5.refl"), folder / f"still_{i:04d}.refl")
    serial = results_of("spot_size_histogram", [str(folder), "flags=strong"], tmp_path)
    scheduler, workers, scheduler_file = start_cluster(tmp_path, 2)
    work = tmp_path / "work"
    work.mkdir()
    outcome = {}

    def run():
        args = [str(folder), "flags=strong", "mp.method=dask", f"scheduler_file={scheduler_file}"]
        outcome["run"] = run_inprocess("spot_size_histogram", [*args, "output.plot=None"], work)

    try:
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(1.0)
        workers[0].send_signal(signal.SIGKILL)  # dies mid-run; Dask reschedules its tasks
        thread.join(timeout=300)
        assert not thread.is_alive()
    finally:
        for process in [*workers, scheduler]:
            process.kill()
            process.wait(timeout=30)
    code, _, err = outcome["run"]
    if code == 0:
        document = json.loads((work / "spot_size_histogram.json").read_text())
        assert document["results"] == serial["results"]
    else:
        assert_sorry(code, err)
        assert not list(work.iterdir())


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream,drawn", [(Terminal(), True), (io.StringIO(), False)])
def test_progress_bar_only_on_a_terminal(stream, drawn):
    from dials_refl_stats.pipeline.execute import FileRecord, Progress, RunPartial

    progress = Progress(n_files=4, n_rows=40, stream=stream)
    for index in range(4):
        progress.update(RunPartial(None, [FileRecord(index, 10, 5, ("all",))]))
    text = stream.getvalue()
    if drawn:
        assert "4/4 files" in text and text.endswith("\n") and "#" * 30 in text
    else:
        assert text == ""


def test_logs_stay_small_with_many_series(tmp_path):
    folder = tmp_path / "batches"
    folder.mkdir()
    for i in range(21):
        distinct_copy("ssx_CuNiR/integrated", folder / f"integrated_{i}")
    args = [str(folder), "selection.flags=integrated_sum"]
    document = results_of("intensity_per_frame", args, tmp_path)
    assert len(document["results"]["series"]) == 21
    log = (tmp_path / "dials.intensity_per_frame.log").read_text()
    assert "per-frame tables and per-series warnings are logged with -vv" in log
    assert len(log.splitlines()) < 60


def test_a_local_dask_cluster_keeps_stderr_empty(stills_with_experiments, tmp_path):
    """distributed logs to stderr, also from the worker processes (here: stale worker
    directories of a killed run are purged, at INFO); a workflow's stderr stays empty."""
    space = tmp_path / "dask" / "dask-worker-space"
    space.mkdir(parents=True)
    for name in ("worker-stale1", "worker-stale2"):
        (space / name).mkdir()
        (space / f"{name}.dirlock").write_text("")  # a lock nobody holds: stale
    _expt, folder = stills_with_experiments
    environment = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(tmp_path / "dask")}
    done = subprocess.run(
        [program_path("spot_size_histogram"), str(folder), "mp.method=dask", "mp.nproc=2"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert not (space / "worker-stale1").exists()  # the purge happened, quietly


class JoinedTuples(Statistic):
    """Partials are tuples of task numbers, merged by joining them; every ``merge`` and
    ``merge_many`` call is recorded (the sizes of what it merged)."""

    name = "joined_tuples"

    def __init__(self):
        self.pairs, self.groups = [], []

    def columns(self, available):
        return ()

    def partial(self, chunk):
        raise NotImplementedError

    def merge(self, first, second):
        self.pairs.append((len(first), len(second)))
        return first + second

    def merge_many(self, partials):
        self.groups.append([len(p) for p in partials])
        return super().merge_many(partials)

    def finalize(self, partial):
        return partial


def test_task_results_are_merged_as_they_arrive_in_a_balanced_stack():
    """The driver merges task results on arrival, MERGE_FAN_IN at once, and holds at
    most (FAN_IN - 1) log_FAN_IN(tasks) + 1 partials; merged sizes stay balanced (each
    merge joins FAN_IN partials of equal numbers of tasks, until the end)."""
    import math

    from dials_refl_stats.analysis.statistic import MERGE_FAN_IN
    from dials_refl_stats.pipeline.execute import MergeStack

    n_tasks, statistic = 1000, JoinedTuples()
    stack = MergeStack(statistic)
    held = []
    for task in range(n_tasks):
        stack.add((task,))
        held.append(len(stack.stack))
    assert sorted(stack.result()) == list(range(n_tasks))
    levels = math.ceil(math.log(n_tasks, MERGE_FAN_IN))
    assert max(held) <= (MERGE_FAN_IN - 1) * levels + 1
    *during, final = statistic.groups
    assert all(len(m) == MERGE_FAN_IN and len(set(m)) == 1 for m in during)
    assert sum(final) == n_tasks and len(final) <= (MERGE_FAN_IN - 1) * levels


def test_default_merge_of_many_partials_is_a_balanced_tree_of_pairs():
    """``Statistic.merge_all`` without an n-ary override merges pairs of equal size
    (``None``, the identity, left out)."""
    statistic = JoinedTuples()
    parts = [(i,) for i in range(16)]
    assert statistic.merge_all([None, *parts[:8], None, *parts[8:]]) == tuple(range(16))
    assert all(a == b for a, b in statistic.pairs) and len(statistic.pairs) == 15
    assert statistic.merge_all([None, None]) is None
    assert statistic.merge_all([(1,)]) == (1,)


@pytest.fixture(scope="module")
def listed_files(tmp_path_factory) -> Path:
    """Enough copies of a real stills table for the driver only to list them."""
    from dials_refl_stats.pipeline.inputs import DEFER_MIN_FILES

    folder = tmp_path_factory.mktemp("listed")
    for i in range(DEFER_MIN_FILES + 6):
        shutil.copy(data_path("ssx_CuNiR/strong_5.refl"), folder / f"still_{i:04d}.refl")
    return folder


@pytest.mark.parametrize("program", ["strong_reflection_positions", "refl_stats"])
def test_headers_a_program_needs_first_are_read_by_the_workers(
    listed_files, tmp_path, monkeypatch, program
):
    """A program that needs the headers before its run (panel sizes, columns for each
    statistic) gets them from a first pass on the workers: the same results as the
    serial run, whose driver reads them itself (strong positions: a first pass of the
    serial engine, which finds the panel sizes too); a damaged file among them stops
    the run with the same ``Sorry``, or is skipped and reported alike."""
    from dials_refl_stats.pipeline import program as program_module

    passes = []
    original = program_module.headers_first
    monkeypatch.setattr(
        program_module, "headers_first", lambda *a: passes.append(1) or original(*a)
    )
    quiet = "output.html=None" if program == "refl_stats" else "output.plot=None"
    folder = tmp_path / "with_bad"
    shutil.copytree(listed_files, folder)
    bad = folder / "still_0033.refl"
    os.truncate(bad, bad.stat().st_size // 3)
    for where in ("stop", "skip"):
        documents, errors = [], []
        for nproc in (1, 2):
            work = tmp_path / f"{where}_{nproc}"
            work.mkdir()
            args = [str(folder), quiet, f"mp.nproc={nproc}", f"input.on_error={where}"]
            code, _, err = run_inprocess(program, args, work)
            if where == "stop":
                assert_sorry(code, err, bad.name)
                assert not list(work.iterdir())
                errors.append(err)
                continue
            assert code == 0, err
            documents.append(json.loads((work / f"{program}.json").read_text()))
        if where == "stop":
            assert errors[0] == errors[1]
            continue
        serial, parallel = documents
        assert parallel["results"] == serial["results"]
        assert parallel["selection"] == serial["selection"]
        assert parallel["inputs"] == serial["inputs"]
    # the runs on 2 processes; strong positions' serial runs too
    assert len(passes) == (4 if program == "strong_reflection_positions" else 2)


@pytest.mark.parametrize("damaged", [False, True])
def test_strong_positions_find_panel_sizes_with_the_headers(
    listed_files, tmp_path, monkeypatch, damaged
):
    """Without experiments the panel sizes come from the rows: the pass that reads the
    headers finds them when every file reads plainly (no pass of their own), serially
    and on 2 processes; a damaged file (skipped) leaves them to a pass of their own.
    The results are those of the rows joined in the driver."""
    from dials_refl_stats.pipeline import program as program_module

    passes = []
    original = program_module.Run.reduce

    def reduce(self, statistic):
        passes.append(type(statistic).__name__)
        return original(self, statistic)

    monkeypatch.setattr(program_module.Run, "reduce", reduce)
    folder = listed_files
    if damaged:
        folder = tmp_path / "damaged"
        shutil.copytree(listed_files, folder)
        bad = folder / "still_0033.refl"
        os.truncate(bad, bad.stat().st_size // 3)
    documents = {}
    runs = {"1": "mp.nproc=1", "2": "mp.nproc=2", "joined": "rows_on_driver=True"}
    for label, extra in runs.items():
        passes.clear()
        work = tmp_path / label
        work.mkdir()
        args = [str(folder), "output.plot=None", "input.on_error=skip", extra]
        code, _, err = run_inprocess("strong_reflection_positions", args, work)
        assert code == 0, err
        documents[label] = json.loads((work / "strong_reflection_positions.json").read_text())
        if label != "joined":
            first = ["HeaderPass", "PanelExtentsStatistic"] if damaged else ["HeaderPass"]
            assert passes == [*first, "StrongPositionsStatistic"]
    sizes = documents["1"]["results"]["position_histograms"]["panels"]
    assert sizes and all(panel["image_size"][0] > 0 for panel in sizes)
    for label in ("2", "joined"):
        assert documents[label]["results"] == documents["1"]["results"]
        assert documents[label]["selection"] == documents["1"]["selection"]
    if damaged:
        assert [s["path"] for s in documents["1"]["selection"]["skipped"]] == [str(bad)]


def test_workers_are_forked_only_from_a_driver_without_threads(many_files, tmp_path):
    """A thread of the driver holding a lock at the fork would leave the worker waiting
    for ever (seen with a Dask client's threads in the test process): with another
    thread running, the workers start from a fork server instead, with the same results."""
    import threading

    from dials_refl_stats.pipeline.engines import start_method

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    args = [str(many_files), "selection.flags=all"]
    serial = results_of("spot_size_histogram", args, tmp_path)
    alone = threading.active_count() == 1
    assert (start_method() == "fork") == alone
    other.start()
    try:
        assert start_method() == "forkserver"
        parallel = results_of("spot_size_histogram", [*args, "mp.nproc=2"], tmp_path)
    finally:
        stop.set()
        other.join()
    assert parallel["results"] == serial["results"]
    assert parallel["selection"] == serial["selection"]


@pytest.mark.parametrize(
    "program, extra, lacking",
    [
        ("spot_size_histogram", ["source=shoebox"], "ssx_CuNiR/integrated.refl"),
        ("intensity_per_frame", [], "ssx_CuNiR/strong_5.refl"),
    ],
)
def test_a_file_lacking_a_column_gets_the_programs_own_sorry_when_tasks_read_headers(
    listed_files, tmp_path, program, extra, lacking
):
    """The driver only lists the files (the tasks read the headers), yet a file without a
    column the program needs stops the run with the program's explanation, as when the
    driver reads the header itself (two files)."""
    folder = tmp_path / "mixed"
    shutil.copytree(listed_files, folder)
    odd = folder / "still_0020.refl"
    shutil.copyfile(data_path(lacking), odd)
    if program == "intensity_per_frame":  # every file lacks xyzcal: the first one is named
        odd = folder / "still_0000.refl"
    expected = None
    for files, nproc in (([str(odd), str(folder / "still_0001.refl")], 1), ([str(folder)], 1),
                         ([str(folder)], 2)):  # fmt: skip
        work = tmp_path / f"w{len(files)}_{nproc}"
        work.mkdir()
        code, _, err = run_inprocess(program, [*files, *extra, f"mp.nproc={nproc}"], work)
        assert_sorry(code, err, odd.name)
        assert not list(work.iterdir())
        assert "(" in err  # the program's reason, not only the missing column
        expected = expected or err
        assert err == expected


def test_the_first_bad_file_in_order_stops_a_run_on_several_processes(listed_files, tmp_path):
    """Two damaged files in different tasks: whichever task fails first, the run names the
    first of them in file order, as the serial run does."""
    folder = tmp_path / "two_bad"
    shutil.copytree(listed_files, folder)
    (folder / "still_0030.refl").write_bytes(b"not a reflection table")
    late = folder / "still_0060.refl"
    os.truncate(late, late.stat().st_size // 2)
    errors = set()
    for attempt, nproc in enumerate((1, 2, 2, 2)):
        work = tmp_path / f"run{attempt}"
        work.mkdir()
        args = [str(folder), "output.plot=None", f"mp.nproc={nproc}"]
        code, _, err = run_inprocess("strong_reflection_positions", args, work)
        assert_sorry(code, err, "still_0030.refl")
        errors.add(err)
    assert len(errors) == 1


def test_headers_first_on_a_dask_cluster(listed_files, tmp_path, dask_cluster):
    """The header pass of a program that needs the headers before its run, on real Dask
    workers: the same document as the serial run."""
    documents = []
    for extra in ([], ["mp.method=dask", f"scheduler_address={dask_cluster['address']}"]):
        code, _, err = run_inprocess(
            "strong_reflection_positions", [str(listed_files), "output.plot=None", *extra], tmp_path
        )
        assert code == 0, err
        documents.append(json.loads((tmp_path / "strong_reflection_positions.json").read_text()))
    serial, on_dask = documents
    for block in ("results", "selection", "inputs"):
        assert on_dask[block] == serial[block]


@pytest.mark.parametrize("program", ["per_image_statistics", "strong_reflection_positions"])
def test_headers_with_experiments_on_a_dask_cluster(tmp_path, dask_cluster, program):
    """Many stills with their experiments, headers read by Dask workers (which map each
    table's ids to the experiments shipped with the run): the serial run's document."""
    from dials_refl_stats.pipeline.inputs import DEFER_MIN_FILES

    folder = split_stills("ssx_CuNiR/indexed.refl", tmp_path / "stills", copies=13)
    assert len(list(folder.iterdir())) > DEFER_MIN_FILES
    args = [str(data_path("ssx_CuNiR/indexed.expt")), str(folder)]
    serial = results_of(program, args, tmp_path)
    address = f"scheduler_address={dask_cluster['address']}"
    on_dask = results_of(program, [*args, "mp.method=dask", address], tmp_path)
    for block in ("results", "selection", "inputs"):
        assert on_dask[block] == serial[block]


@pytest.mark.parametrize("verbose", [False, True])
def test_strong_positions_log_per_file_lines_past_20_files_only_with_vv(
    many_files, tmp_path, verbose
):
    """Past 20 files the per-file lines are debug lines: made and written with -vv only."""
    args = [str(many_files), *(["-vv"] if verbose else [])]
    results_of("strong_reflection_positions", args, tmp_path)
    log = (tmp_path / "dials.strong_reflection_positions.log").read_text()
    lines = [line for line in log.splitlines() if "reflections selected (" in line]
    per_file = [line for line in lines if "intensity from" in line]
    assert len(per_file) == (N_FILES if verbose else 0), lines[:3]


def retyped(source: Path, destination: Path, column: str, type_name: str) -> None:
    """``source`` with ``column``'s DIALS type name replaced (same bytes), as a damaged
    file may have it: ``vec3<double>`` and ``int6`` rows are both 24 bytes."""
    import msgpack

    document = msgpack.unpackb(source.read_bytes(), raw=False, strict_map_key=False)
    document[2]["data"][column][0] = type_name
    destination.write_bytes(msgpack.packb(document, use_bin_type=True))


@pytest.mark.parametrize("program", ["strong_reflection_positions", "refl_stats"])
@pytest.mark.parametrize("nproc", [1, 2])
def test_a_centroid_column_of_another_type_is_one_line(tmp_path, program, nproc):
    """Found by fuzz_many_files.py: an ``int6`` ``xyzobs.px.value`` (the bytes of a
    ``vec3<double>``) read as 6 values a row crashed strong positions. Now the file is
    named (or skipped), by every reader path: many small files read together, and alone."""
    folder = tmp_path / "stills"
    folder.mkdir()
    for i in range(70):  # past the deferred-headers threshold: small files read together
        shutil.copy(data_path(STILLS), folder / f"still_{i:03d}.refl")
    bad = folder / "still_007.refl"
    retyped(data_path(STILLS), bad, "xyzobs.px.value", "int6")
    work = tmp_path / "work"
    work.mkdir()
    plot = "output.html=None" if program == "refl_stats" else "output.plot=None"
    args = [str(folder), f"mp.nproc={nproc}", plot]
    code, _, err = run_inprocess(program, args, work)
    assert_sorry(code, err, str(bad), "column 'xyzobs.px.value' holds 6 values a row")
    assert "vec3<double>" in err
    assert not list(work.iterdir())
    code, _, err = run_inprocess(program, [*args, "input.on_error=skip"], work)
    assert code == 0, err
    document = json.loads(next(work.glob("*.json")).read_text())
    (skipped,) = document["selection"]["skipped"]
    assert skipped["path"] == str(bad) and "holds 6 values a row" in skipped["reason"]
    assert document["inputs"]["reflections"]["n_files"] == 70


def test_a_list_file_naming_a_path_twice_is_sorry_naming_it(tmp_path):
    """A list file that names a file twice, or is not a list of paths at all (an
    experiment list saved as .txt): a Sorry naming the list file and the line."""
    listing = tmp_path / "files.txt"
    refl = data_path("ssx_CuNiR/strong_5.refl")
    listing.write_text(f"# stills\n{refl}\n\n{refl}\n")
    code, _, err = run_inprocess("spot_size_histogram", [str(listing)], tmp_path)
    assert_sorry(code, err, f"{listing}: line 4 names", "again")
    not_a_list = tmp_path / "experiments.txt"
    not_a_list.write_text((TESTS_DATA / "ssx_CuNiR" / "indexed.expt").read_text())
    code, _, err = run_inprocess("per_image_statistics", [str(not_a_list)], tmp_path)
    assert_sorry(code, err, str(not_a_list), "one reflection file path per line")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments.txt", "files.txt"]
