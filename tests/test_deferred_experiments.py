"""Many files with their experiments: the tasks read the headers and map ids as the
driver would.

In a run of many files (``inputs.DEFER_MIN_FILES`` or more) the driver only lists them
when the program takes the headers with the rows (or runs on several processes); with
experiments, the tasks then match each table's identifiers to the experiments (the
run's :class:`~dials_refl_stats.pipeline.execute.SelectionPlan` carries them). The
results, the ``Sorry`` of a table of other experiments and the order of errors must be
those of the driver reading every header itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import data_path, needs_dials, split_stills
from test_programs_common import PROGRAMS, assert_sorry, run_inprocess

pytestmark = needs_dials

EXPT = "ssx_CuNiR/indexed.expt"
#: 5 stills x 13 copies, one still per file: more than DEFER_MIN_FILES (64)
COPIES = 13
#: Programs that take the headers with the rows when given experiments (all of them:
#: refl_stats too, as each of its statistics does)
WITH_THE_ROWS = (
    "intensity_per_frame",
    "per_image_statistics",
    "refl_stats",
    "spot_size_histogram",
    "strong_reflection_positions",
)


def quiet(program: str) -> str:
    return "output.html=None" if program == "refl_stats" else "output.plot=None"


@pytest.fixture(scope="module")
def stills(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stills")
    return split_stills("ssx_CuNiR/indexed.refl", folder, copies=COPIES)


def run_recording(program, args, cwd, monkeypatch, defer: bool) -> tuple[int, str, bool]:
    """(exit code, stderr, whether the driver only listed the files) of one run; with
    ``defer=False`` the driver reads every header itself."""
    from dials_refl_stats.pipeline import inputs
    from dials_refl_stats.pipeline import program as program_module

    listed = []
    original = program_module.open_files

    def open_files(*a, **k):
        files = original(*a, **k)
        listed.append(any(isinstance(f.info, inputs.DeferredFileInfo) for f in files))
        return files

    with monkeypatch.context() as patch:
        patch.setattr(program_module, "open_files", open_files)
        if not defer:
            patch.setattr(inputs, "DEFER_MIN_FILES", 10**9)
        code, _, err = run_inprocess(program, args, cwd)
    return code, err, any(listed)


def edited(folder: Path, name: str, edit: Callable[[Any], None]) -> Path:
    """``folder/name`` read by DIALS, changed by ``edit(table)`` and written by DIALS."""
    from dials.array_family import flex

    path = folder / name
    table = flex.reflection_table.from_file(str(path))
    edit(table)
    table.as_file(str(path))
    return path


def stranger(table) -> None:
    """The table's experiment identifiers replaced by one the experiments lack."""
    mapping = table.experiment_identifiers()
    for key in list(mapping.keys()):
        mapping[key] = "not-in-the-experiments"


def first_row(column: str, value) -> Callable[[Any], None]:
    """An edit setting row 0 of ``column`` to ``value``."""

    def edit(table) -> None:
        values = table[column]
        values[0] = value

    return edit


def copy_of(stills: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(stills, tmp_path / "files"))


def assert_one_sorry(program, inputs, modes, tmp_path, monkeypatch, *words) -> None:
    """Every mode ``(nproc, on_error, defer)`` of ``program`` on the experiments and
    ``inputs``: the same one-line ``Sorry`` with ``words``, and nothing written."""
    errors = set()
    for nproc, on_error, defer in modes:
        work = tmp_path / f"run_{nproc}_{on_error}_{defer}"
        work.mkdir()
        args = [data_path(EXPT), *inputs, quiet(program), f"mp.nproc={nproc}"]
        args.append(f"input.on_error={on_error}")
        code, err, _listed = run_recording(program, args, work, monkeypatch, defer)
        assert_sorry(code, err, *words)
        assert not list(work.iterdir())
        errors.add(err)
    assert len(errors) == 1


@pytest.mark.parametrize("program", PROGRAMS)
def test_headers_read_in_the_tasks_map_ids_as_the_driver_does(
    stills, tmp_path, monkeypatch, program
):
    """Every program, serially and on 2 processes: the same document whether the tasks
    or the driver read the headers."""
    documents = {}
    for nproc in (1, 2):
        for defer in (True, False):
            work = tmp_path / f"{nproc}_{defer}"
            work.mkdir()
            args = [data_path(EXPT), stills, quiet(program), f"mp.nproc={nproc}"]
            code, err, listed = run_recording(program, args, work, monkeypatch, defer)
            assert code == 0, err
            assert err == ""
            assert listed == (defer and (nproc == 2 or program in WITH_THE_ROWS))
            documents[nproc, defer] = json.loads((work / f"{program}.json").read_text())
    reference = documents[1, False]
    assert reference["inputs"]["reflections"]["n_files"] == 5 * COPIES
    for key, document in documents.items():
        for part in ("inputs", "selection", "results"):
            assert document[part] == reference[part], (key, part)


@pytest.fixture(scope="module")
def with_stranger(tmp_path_factory) -> tuple[Path, Path]:
    """The stills with one file (``still_9_3.refl``) of an experiment not in the list,
    written by DIALS, and the name of that file."""
    folder = split_stills("ssx_CuNiR/indexed.refl", tmp_path_factory.mktemp("x"), COPIES)
    return folder, edited(folder, "still_9_3.refl", stranger)


@pytest.mark.parametrize("program", ["spot_size_histogram", "strong_reflection_positions"])
@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_table_of_other_experiments_among_many_is_the_same_sorry(
    with_stranger, tmp_path, monkeypatch, program, on_error
):
    """Not skippable (the inputs disagree): one line naming the file, no outputs, the
    same words whoever reads the header."""
    folder, odd_one = with_stranger
    errors = set()
    for nproc in (1, 2):
        for defer in (True, False):
            work = tmp_path / f"{nproc}_{defer}"
            work.mkdir()
            args = [data_path(EXPT), folder, quiet(program), f"mp.nproc={nproc}"]
            args.append(f"input.on_error={on_error}")
            code, err, _listed = run_recording(program, args, work, monkeypatch, defer)
            assert_sorry(code, err, odd_one.name, "not-in-the-experiments")
            assert "is not in the experiments given" in err
            assert not list(work.iterdir())
            errors.add(err)
    assert len(errors) == 1


def test_the_first_problem_in_file_order_is_named(with_stranger, tmp_path, monkeypatch):
    """A damaged file before the table of other experiments: both are found by the
    tasks (the damaged one on the one-file path), yet the run names the damaged file,
    as the driver reading the headers in order does."""
    folder = copy_of(with_stranger[0], tmp_path)
    damaged = folder / "still_2_1.refl"
    os.truncate(damaged, damaged.stat().st_size // 2)
    errors = set()
    for attempt, (nproc, defer) in enumerate(((1, False), (1, True), (2, True), (2, True))):
        work = tmp_path / f"run{attempt}"
        work.mkdir()
        args = [data_path(EXPT), folder, "output.plot=None", f"mp.nproc={nproc}"]
        code, err, listed = run_recording("spot_size_histogram", args, work, monkeypatch, defer)
        assert listed == defer
        assert_sorry(code, err, damaged.name)
        errors.add(err)
    assert len(errors) == 1


def test_a_table_lacking_a_column_gets_the_programs_sorry(stills, tmp_path, monkeypatch):
    """Strong positions with experiments take the headers with the rows: a file without
    the intensity column among many still stops the run with the program's own reason,
    as when the driver checks every header first, and writes nothing."""
    folder = copy_of(stills, tmp_path)
    lacking = edited(folder, "still_7_2.refl", lambda t: t.__delitem__("intensity.sum.value"))
    errors = set()
    for attempt, (nproc, defer) in enumerate(((1, False), (1, True), (2, True))):
        work = tmp_path / f"run{attempt}"
        work.mkdir()
        args = [data_path(EXPT), folder, "output.plot=None", f"mp.nproc={nproc}"]
        program = "strong_reflection_positions"
        code, err, listed = run_recording(program, args, work, monkeypatch, defer)
        assert listed == defer
        assert_sorry(code, err, lacking.name, "no 'intensity.sum.value' column (")
        assert not list(work.iterdir())
        errors.add(err)
    assert len(errors) == 1


def test_the_header_pass_leaves_row_problems_to_the_run(stills, tmp_path, monkeypatch):
    """refl_stats reads the headers with the rows (it read them in a first pass on 2
    processes before): a later file's bad ``id`` value (a row problem) must not be named
    before an earlier file's rows on a panel the detector lacks, which the serial run
    finds first (found by ``benchmarks/fuzz_many_files.py``)."""
    folder = copy_of(stills, tmp_path)
    on_panel_2 = edited(folder, "still_8_0.refl", first_row("panel", 2))
    edited(folder, "still_8_3.refl", first_row("id", 7))
    errors = set()
    for nproc in (1, 2):
        work = tmp_path / f"run{nproc}"
        work.mkdir()
        args = [data_path(EXPT), folder, "output.html=None", f"mp.nproc={nproc}"]
        code, err, listed = run_recording("refl_stats", args, work, monkeypatch, True)
        assert listed
        assert_sorry(code, err, on_panel_2.name, "reflections on panel 2")
        assert not list(work.iterdir())
        errors.add(err)
    assert len(errors) == 1


def test_per_image_analysis_without_variances_is_a_missing_column(stills, tmp_path, monkeypatch):
    """DIALS's per-image analysis needs ``intensity.sum.variance``: a file without it is
    the program's missing-column ``Sorry`` when read (in file order: before a later
    file's bad id, on 1 or 2 processes), not DIALS's assertion at a task's end; with
    ``resolution_analysis=False`` the run needs no variances."""
    import shutil

    folder = copy_of(stills, tmp_path)
    drop = lambda t: t.__delitem__("intensity.sum.variance")  # noqa: E731
    no_variance = edited(folder, "still_10_1.refl", drop)
    bad_id = edited(folder, "still_12_0.refl", first_row("id", 7))
    # a missing column is the program's Sorry, never skipped, whoever reads the header
    modes = [(1, "stop", True), (2, "stop", True), (2, "skip", True), (1, "skip", False)]
    words = (no_variance.name, "no 'intensity.sum.variance' column (")
    assert_one_sorry("per_image_statistics", [folder], modes, tmp_path, monkeypatch, *words)
    shutil.copyfile(stills / bad_id.name, bad_id)
    work = tmp_path / "no_analysis"
    work.mkdir()
    args = [data_path(EXPT), folder, "output.plot=None", "resolution_analysis=False"]
    code, err, _listed = run_recording("per_image_statistics", args, work, monkeypatch, True)
    assert code == 0, err


@pytest.mark.parametrize(
    "column, program",
    [
        ("flags", "intensity_per_frame"),
        ("id", "intensity_per_frame"),
        ("panel", "strong_reflection_positions"),
    ],
)
def test_integer_columns_of_another_type_are_one_sorry(
    stills, tmp_path, monkeypatch, column, program
):
    """A table whose ``flags`` (``id``, ``panel``) DIALS was made to write as doubles:
    one ``Sorry`` naming the file, alone or among many, on 1 or 2 processes (``flags``
    went into the bit selection and raised numpy's TypeError; found by
    ``benchmarks/fuzz_many_files.py``)."""
    from dials.array_family import flex

    def as_doubles(table) -> None:
        table[column] = flex.double([float(v) for v in table[column]])

    folder = copy_of(stills, tmp_path)
    odd = edited(folder, "still_7_0.refl", as_doubles)
    errors = set()
    for attempt, (inputs, nproc) in enumerate((([odd], 1), ([folder], 1), ([folder], 2))):
        work = tmp_path / f"run{attempt}"
        work.mkdir()
        args = [data_path(EXPT), *inputs, "output.plot=None", f"mp.nproc={nproc}"]
        code, err, _listed = run_recording(program, args, work, monkeypatch, True)
        assert_sorry(code, err, odd.name, f"column '{column}' holds float64 values")
        assert not list(work.iterdir())
        errors.add(err.replace(str(odd), "X"))
    assert len(errors) == 1


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_problem_of_files_taken_together_names_the_first_file(
    stills, tmp_path, monkeypatch, on_error
):
    """Small files are computed together: a later file's rows on a missing panel (found
    in that joined computation) must not be named before an earlier file of other
    experiments (handed back to the one-file path); serially as on 2 processes (found by
    ``benchmarks/fuzz_many_files.py``)."""
    folder = copy_of(stills, tmp_path)
    other = edited(folder, "still_4_2.refl", stranger)
    edited(folder, "still_6_4.refl", first_row("panel", 2))
    modes = [(1, on_error, True), (2, on_error, True)]
    words = (other.name, "not-in-the-experiments")
    assert_one_sorry("strong_reflection_positions", [folder], modes, tmp_path, monkeypatch, *words)


@pytest.fixture(scope="module")
def strong_stills(tmp_path_factory) -> Path:
    """Strong spots of the 5 stills (no predictions: intensity per frame cannot run)."""
    return split_stills("ssx_CuNiR/strong_5.refl", tmp_path_factory.mktemp("s"), COPIES)


@pytest.mark.parametrize("nproc", [1, 2])
def test_refl_stats_leaves_out_after_the_run_what_it_left_out_before(
    strong_stills, tmp_path, monkeypatch, nproc
):
    """refl_stats on many strong-spot files with their experiments: the tasks read the
    headers, so intensity per frame (no ``xyzcal.px``) is found out after the run; the
    document is the one of the driver reading every header first, the reason included."""
    documents = {}
    for defer in (True, False):
        work = tmp_path / f"{defer}"
        work.mkdir()
        expt = data_path("ssx_CuNiR/imported_no_ref_5.expt")
        args = [expt, strong_stills, "output.html=None", f"mp.nproc={nproc}"]
        code, err, listed = run_recording("refl_stats", args, work, monkeypatch, defer)
        assert code == 0, err
        assert listed == defer
        documents[defer] = json.loads((work / "refl_stats.json").read_text())
    deferred, reference = documents[True], documents[False]
    (left_out,) = reference["results"]["not_computed"]
    assert left_out["statistic"] == "intensity_per_frame" and "xyzcal.px" in left_out["reason"]
    for part in ("inputs", "selection", "results"):
        assert deferred[part] == reference[part], part


def test_refl_stats_leaves_out_per_image_statistics_for_a_file_without_variances(
    stills, tmp_path, monkeypatch
):
    """Among many files with their experiments, one without ``intensity.sum.variance``
    (DIALS's per-image analysis needs it, and intensity per frame): the other statistics
    are computed and those are left out with their programs' reasons, whoever reads the
    headers."""
    folder = copy_of(stills, tmp_path)
    edited(folder, "still_10_1.refl", lambda t: t.__delitem__("intensity.sum.variance"))
    documents = {}
    for nproc, defer in ((1, True), (2, True), (1, False)):
        work = tmp_path / f"run_{nproc}_{defer}"
        work.mkdir()
        args = [data_path(EXPT), folder, "output.html=None", f"mp.nproc={nproc}"]
        code, err, listed = run_recording("refl_stats", args, work, monkeypatch, defer)
        assert code == 0, err
        assert listed == defer
        documents[nproc, defer] = json.loads((work / "refl_stats.json").read_text())
    reference = documents[1, False]
    reasons = {e["statistic"]: e["reason"] for e in reference["results"]["not_computed"]}
    reason = reasons["per_image_statistics"]
    assert "still_10_1.refl: no 'intensity.sum.variance' column" in reason
    assert "spot_size_histogram" in reference["results"]["statistics"]
    for document in documents.values():
        for part in ("inputs", "selection", "results"):
            assert document[part] == reference[part], part
