"""Small files read whole and decoded in C, many at a time (serial crystallography).

The fast path must be invisible: the same header as the Python walker for every file
it accepts (and nothing the walker rejects), and the same JSON ``results`` and
``selection`` as reading the files one by one, for every program, with bad files
among good ones reported the same way.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from conftest import data_path, split_stills
from test_programs_common import assert_sorry, run_inprocess

from dials_refl_stats.pipeline import inputs, small_files
from dials_refl_stats.pipeline import program as program_module
from dials_refl_stats.pipeline.small_files import read_small_files
from dials_refl_stats.reader import ReflectionFileError, msgpack_small, read_layout

SHIPPED = [
    "ssx_CuNiR/indexed.refl",
    "ssx_CuNiR/strong_5.refl",
    "ssx_CuNiR/integrated.refl",
    "sim_small/strong.refl",
]

pytestmark = pytest.mark.skipif(
    not msgpack_small.available(), reason="the msgpack C extension is part of the set-up"
)


def assert_same_header(data: bytes, table: msgpack_small.SmallTable, layout) -> None:
    assert table.nrows == layout.nrows
    assert table.identifiers == layout.identifiers
    assert list(table.columns) == list(layout.columns)
    for name, span in layout.columns.items():
        type_name, payload = table.columns[name]
        assert type_name == span.type_name
        assert payload == data[span.offset : span.offset + span.nbytes]


@pytest.mark.parametrize("relative", SHIPPED)
def test_decoded_header_equals_the_walkers(relative):
    path = data_path(relative)
    data = path.read_bytes()
    table = msgpack_small.unpack_table(data)
    assert table is not None
    assert_same_header(data, table, read_layout(path))


def test_damaged_files_are_never_accepted_when_the_walker_refuses_them(tmp_path):
    """Bytes changed at random, mostly in the structure (before each column's data),
    and truncations: whatever the C decoder accepts, the walker reads identically."""
    path = data_path("ssx_CuNiR/indexed.refl")
    data = path.read_bytes()
    layout = read_layout(path)
    structural = [
        position
        for span in layout.columns.values()
        for position in range(max(0, span.offset - 48), span.offset)
    ] + list(range(0, 200))
    rng = random.Random(20261202)
    accepted = refused = 0
    target = tmp_path / "damaged.refl"
    for case in range(600):
        damaged = bytearray(data)
        if case % 10 == 0:
            damaged = damaged[: rng.randrange(len(data))]
        else:
            for _ in range(rng.choice((1, 1, 2, 5))):
                anywhere = rng.random() < 0.2
                position = rng.randrange(len(data)) if anywhere else rng.choice(structural)
                damaged[position] = rng.randrange(256)
        table = msgpack_small.unpack_table(bytes(damaged))
        if table is None:
            refused += 1
            continue
        target.write_bytes(damaged)
        try:
            walked = read_layout(target)
        except ReflectionFileError as error:
            raise AssertionError(f"case {case}: C path accepted what the walker refuses: {error}")
        assert_same_header(bytes(damaged), table, walked)
        accepted += 1
    assert accepted > 50 and refused > 50  # both outcomes were exercised


@pytest.fixture(scope="module")
def stills(tmp_path_factory) -> Path:
    """One file per still (cut from a real SSX table with DIALS's select/as_file), plus
    whole tables: msgpack files of a few kB to 1.7 MB."""
    from dials.array_family import flex

    folder = tmp_path_factory.mktemp("stills")
    table = flex.reflection_table.from_file(str(data_path("ssx_CuNiR/strong_5.refl")))
    for copy in range(4):
        for i in range(5):
            still = table.select(table["id"] == i)
            still.as_file(str(folder / f"still_{copy}_{i}.refl"))
    shutil.copy(data_path("ssx_CuNiR/indexed.refl"), folder / "still_9_indexed.refl")
    return folder


def documents(program: str, args, cwd: Path, monkeypatch, small: bool) -> dict:
    """The program's JSON, with the small-file path (checked to be taken) or without."""
    together = []

    def spy(files, statistic, plan):
        chunks, records, left = read_small_files(files, statistic, plan)
        together.extend(r.index for r in records)
        return chunks, records, left

    with monkeypatch.context() as patch:
        if not small:
            patch.setattr(msgpack_small, "_msgpack", None)
        patch.setattr(small_files, "read_small_files", spy)
        no_plot = [] if program == "refl_stats" else ["output.plot=None"]
        code, _out, err = run_inprocess(program, [*args, *no_plot], cwd)
    assert code == 0, err
    assert len(together) >= 10 if small else not together, together
    return json.loads((cwd / f"{program}.json").read_text())


@pytest.mark.parametrize(
    "program, args",
    [
        ("spot_size_histogram", ["selection.flags=strong"]),
        ("spot_size_histogram", []),  # default flags: the fallback rule, file by file
        ("per_image_statistics", []),
        ("strong_reflection_positions", []),
        ("refl_stats", ["output.html=None"]),
    ],
)
def test_small_file_batches_give_the_results_of_file_by_file_reading(
    stills, tmp_path, monkeypatch, program, args
):
    fast = documents(program, [stills, *args], tmp_path, monkeypatch, small=True)
    slow = documents(program, [stills, *args], tmp_path, monkeypatch, small=False)
    assert fast["results"] == slow["results"]
    assert fast["selection"] == slow["selection"]
    assert fast["inputs"]["reflections"]["rows"] == slow["inputs"]["reflections"]["rows"]


@pytest.fixture(scope="module")
def integrated_stills(tmp_path_factory) -> Path:
    """Fifteen small files of one integrated still each (three cuts of each of the five
    stills of ``ssx_CuNiR/integrated.refl``, made with DIALS's select/as_file)."""
    folder = tmp_path_factory.mktemp("integrated_stills")
    return split_stills("ssx_CuNiR/integrated.refl", folder, copies=3)


@pytest.mark.parametrize(
    "program, args",
    [
        ("strong_reflection_positions", ["selection.flags=integrated_sum", "intensity.min=50"]),
        ("refl_stats", ["output.html=None", "strong_reflection_positions.intensity.min=50"]),
        ("intensity_per_frame", []),
        ("per_image_statistics", []),
    ],
)
def test_small_files_with_experiments_give_the_results_of_file_by_file_reading(
    integrated_stills, tmp_path, monkeypatch, program, args
):
    """Statistics that use the experiments (strong positions computed in the tasks, and
    every member of refl_stats) in chunks of several files, against file by file."""
    expt = str(data_path("ssx_CuNiR/integrated.expt"))
    inputs = [expt, integrated_stills, *args]
    fast = documents(program, inputs, tmp_path, monkeypatch, small=True)
    slow = documents(program, inputs, tmp_path, monkeypatch, small=False)
    assert fast["results"] == slow["results"]
    assert fast["selection"] == slow["selection"]


def damage_shoebox(path: Path) -> None:
    """Give the first shoebox record an invalid flag byte (header and other columns intact)."""
    span = read_layout(path).columns["shoebox"]
    data = bytearray(path.read_bytes())
    data[span.offset + 28] = 7
    path.write_bytes(data)


def test_a_damaged_file_among_small_files_is_named_or_skipped_as_file_by_file(
    stills, tmp_path, monkeypatch
):
    folder = tmp_path / "some_bad"
    shutil.copytree(stills, folder)
    damage_shoebox(folder / "still_2_3.refl")
    code, _out, err = run_inprocess(
        "spot_size_histogram", [folder, "selection.flags=strong"], tmp_path
    )
    assert_sorry(code, err, "still_2_3.refl", "invalid shoebox flag 7")
    assert not list(tmp_path.glob("spot_size_histogram.*"))
    args = [folder, "selection.flags=strong", "input.on_error=skip"]
    fast = documents("spot_size_histogram", args, tmp_path, monkeypatch, small=True)
    slow = documents("spot_size_histogram", args, tmp_path, monkeypatch, small=False)
    assert fast["selection"]["skipped"] == slow["selection"]["skipped"]
    assert [s["path"] for s in fast["selection"]["skipped"]] == [str(folder / "still_2_3.refl")]
    assert fast["results"] == slow["results"]


def test_spot_sizes_of_small_files_equal_dials_count_mask_values(stills, tmp_path, monkeypatch):
    """The seed computation, plainly with DIALS's flex API, file by file."""
    from dials.algorithms.shoebox import MaskCode
    from dials.array_family import flex

    sizes = flex.int()
    for path in sorted(stills.glob("*.refl")):
        table = flex.reflection_table.from_file(str(path))
        table = table.select(table.get_flags(table.flags.strong))
        sizes.extend(table["shoebox"].count_mask_values(MaskCode.Foreground))
    args = [stills, "selection.flags=strong"]
    summary = documents("spot_size_histogram", args, tmp_path, monkeypatch, True)["results"][
        "overall"
    ]["summary"]
    assert summary["n"] == len(sizes)
    assert (summary["min"], summary["max"]) == (flex.min(sizes), flex.max(sizes))
    assert summary["mean"] == pytest.approx(flex.mean(sizes.as_double()), rel=1e-5)
    assert summary["median"] == flex.median(sizes.as_double())


def deferred_documents(program, args, cwd, monkeypatch, defer: bool) -> dict:
    """The program's JSON with small files' headers left to the tasks, or not."""
    with monkeypatch.context() as patch:
        patch.setattr(inputs, "DEFER_MIN_FILES", 2 if defer else 10**9)
        code, _out, err = run_inprocess(program, [*args, "output.plot=None"], cwd)
    if code:
        return {"code": code, "stderr": err}
    return json.loads((cwd / f"{program}.json").read_text())


@pytest.mark.parametrize("program", ["spot_size_histogram", "per_image_statistics"])
def test_headers_read_by_the_tasks_give_the_same_documents(stills, tmp_path, monkeypatch, program):
    seen = []
    original = inputs.open_files

    def spy(*args, **kwargs):
        opened = original(*args, **kwargs)
        seen.extend(isinstance(f.info, inputs.DeferredFileInfo) for f in opened)
        return opened

    monkeypatch.setattr(program_module, "open_files", spy)
    deferred = deferred_documents(program, [stills], tmp_path, monkeypatch, defer=True)
    assert seen and all(seen)
    seen.clear()
    read_first = deferred_documents(program, [stills], tmp_path, monkeypatch, defer=False)
    assert seen and not any(seen)
    for block in ("inputs", "selection", "results"):
        assert deferred[block] == read_first[block]


def test_bad_files_among_deferred_headers_are_named_or_skipped(stills, tmp_path, monkeypatch):
    folder = tmp_path / "bad_headers"
    shutil.copytree(stills, folder)
    damaged = folder / "still_1_2.refl"
    damaged.write_bytes(damaged.read_bytes()[:5000])  # truncated in the column data
    damage_shoebox(folder / "still_3_4.refl")
    args = [folder, "selection.flags=strong"]
    for defer in (True, False):
        failed = deferred_documents("spot_size_histogram", args, tmp_path, monkeypatch, defer)
        assert_sorry(failed["code"], failed["stderr"], "still_1_2.refl", "truncated")
        assert not list(tmp_path.glob("spot_size_histogram.*"))
    skip = [*args, "input.on_error=skip"]
    deferred = deferred_documents("spot_size_histogram", skip, tmp_path, monkeypatch, True)
    read_first = deferred_documents("spot_size_histogram", skip, tmp_path, monkeypatch, False)
    assert [s["path"] for s in deferred["selection"]["skipped"]] == [
        str(damaged),
        str(folder / "still_3_4.refl"),
    ]
    for block in ("inputs", "selection", "results"):
        assert deferred[block] == read_first[block]


def test_files_with_other_columns_are_read_in_their_own_groups(stills, tmp_path, monkeypatch):
    """Stills with an extra column (another column schema, as a later DIALS step writes)
    among plain ones: each schema is checked and joined on its own, same results."""
    from dials.array_family import flex

    folder = tmp_path / "two_schemas"
    shutil.copytree(stills, folder)
    for path in sorted(folder.glob("still_1_*.refl")):
        table = flex.reflection_table.from_file(str(path))
        table["extra"] = flex.double(table.size(), 1.5)
        table.as_file(str(path))
    for program, args in [
        ("spot_size_histogram", ["selection.flags=strong"]),
        ("per_image_statistics", []),
    ]:
        fast = documents(program, [folder, *args], tmp_path, monkeypatch, small=True)
        slow = documents(program, [folder, *args], tmp_path, monkeypatch, small=False)
        assert fast["results"] == slow["results"]
        assert fast["selection"] == slow["selection"]


def test_reading_small_files_from_several_threads_gives_each_its_own_table():
    """Dask workers run tasks in threads: the reused read buffer is one per thread."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [data_path(relative) for relative in SHIPPED] * 8
    expected = [msgpack_small.unpack_table(p.read_bytes()) for p in paths]
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(msgpack_small.load_small, paths))
    assert [table for table, _size in loaded] == expected
    assert [size for _table, size in loaded] == [p.stat().st_size for p in paths]


def test_files_that_cannot_be_read_whole_are_not_small(tmp_path):
    big = tmp_path / "big.refl"
    big.write_bytes(b"\x00" * (msgpack_small.SMALL_FILE_BYTES + 1))
    assert msgpack_small.load_small(big) == (None, -1)
    assert msgpack_small.load_small(tmp_path / "missing.refl") == (None, -1)
    assert msgpack_small.load_small(tmp_path) == (None, -1)  # a directory
    damaged = tmp_path / "damaged.refl"
    damaged.write_bytes(data_path("sim_small/strong.refl").read_bytes()[:1000])
    assert msgpack_small.load_small(damaged) == (None, 1000)


def test_a_large_file_among_listed_files_is_opened_as_usual(stills, tmp_path, monkeypatch):
    """With headers left to the tasks the driver does not even stat the files: a file
    over the small-file size goes to the one-file path, with the same results."""
    folder = tmp_path / "with_a_large_one"
    shutil.copytree(stills, folder)
    monkeypatch.setattr(msgpack_small, "SMALL_FILE_BYTES", 64 * 1024)  # indexed.refl: larger
    assert (folder / "still_9_indexed.refl").stat().st_size > msgpack_small.SMALL_FILE_BYTES
    monkeypatch.setattr(msgpack_small, "_buffer", msgpack_small._Buffer())
    args = [folder, "selection.flags=strong"]
    deferred = deferred_documents("spot_size_histogram", args, tmp_path, monkeypatch, True)
    read_first = deferred_documents("spot_size_histogram", args, tmp_path, monkeypatch, False)
    for block in ("inputs", "selection", "results"):
        assert deferred[block] == read_first[block]
    assert deferred["inputs"]["reflections"]["n_files"] == 21


def outcome(program, args, cwd, monkeypatch, small: bool) -> tuple:
    """(exit code, first stderr line or the JSON's results and selection), with small
    files read together and their headers left to the tasks, or one by one."""
    with monkeypatch.context() as patch:
        patch.setattr(inputs, "DEFER_MIN_FILES", 2)
        if not small:
            patch.setattr(msgpack_small, "_msgpack", None)
        code, _out, err = run_inprocess(program, [*args, "output.plot=None"], cwd)
    if code:
        assert not list(cwd.glob(f"{program}.*")), "an output file was left behind"
        return code, err.strip().splitlines()[0]
    document = json.loads((cwd / f"{program}.json").read_text())
    return code, document["results"], document["selection"]


@pytest.mark.parametrize("seed", range(int(os.environ.get("FUZZ_MANY_FILES", 12))))
def test_a_damaged_file_among_many_reads_as_one_by_one(stills, tmp_path, monkeypatch, seed):
    """Program-level fuzzing of the many-files path: random bytes of one file changed
    (anywhere, or in its structure), or the file cut short; the run ends exactly as when
    every file is read on its own: the same Sorry, or the same results."""
    rng = random.Random(7000 + seed)
    folder = tmp_path / "fuzzed"
    shutil.copytree(stills, folder)
    victim = rng.choice(sorted(folder.glob("still_*.refl")))
    data = bytearray(victim.read_bytes())
    spans = list(read_layout(victim).columns.values())
    if seed % 4 == 0:
        data = data[: rng.randrange(len(data))]
    for _ in range(0 if seed % 4 == 0 else rng.choice((1, 3, 8))):
        span = rng.choice(spans)
        near = max(0, span.offset - 40)
        position = rng.randrange(near, span.offset + 64) if rng.random() < 0.7 else None
        data[rng.randrange(len(data)) if position is None else position] = rng.randrange(256)
    victim.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    programs = {
        "spot_size_histogram": [],
        "per_image_statistics": [],
        "intensity_per_frame": ["frame.source=xyzobs"],  # series finished in the tasks
        "strong_reflection_positions": [],  # no experiments: a first pass, then the tasks
    }
    for args in ([folder, "selection.flags=strong"], [folder, "input.on_error=skip"]):
        for program, extra in programs.items():
            fast = outcome(program, [*args, *extra], out, monkeypatch, small=True)
            slow = outcome(program, [*args, *extra], out, monkeypatch, small=False)
            assert fast == slow, (program, args, victim.name)


@pytest.fixture(scope="module")
def stills_with_experiments(tmp_path_factory) -> Path:
    """Ten small strong-spot files of one still each (two cuts of the five stills of
    ``ssx_CuNiR/strong_5.refl``), whose experiments have parallax-corrected panels."""
    folder = tmp_path_factory.mktemp("stills_with_experiments")
    return split_stills("ssx_CuNiR/strong_5.refl", folder, copies=2)


@pytest.mark.parametrize("seed", range(16))
def test_a_damaged_still_among_small_files_with_experiments(
    stills_with_experiments, tmp_path, seed
):
    """Seeded damage to one of many small files read with their experiments (geometry
    and DIALS's per-image analysis in the tasks, small files in one chunk): a result, or
    one Sorry line and nothing written; never a traceback."""
    rng = random.Random(seed)
    folder = tmp_path / "stills"
    shutil.copytree(stills_with_experiments, folder)
    victim = rng.choice(sorted(folder.glob("*.refl")))
    data = bytearray(victim.read_bytes())
    for position in rng.sample(range(len(data)), rng.choice([1, 4, 30])):
        data[position] = rng.randrange(256)
    if rng.random() < 0.25:
        data = data[: rng.randrange(len(data))]
    victim.write_bytes(bytes(data))
    program, extra = [
        ("per_image_statistics", []),
        ("strong_reflection_positions", []),
        ("refl_stats", []),
        ("intensity_per_frame", ["frame.source=xyzobs"]),
    ][seed % 4]
    extra = extra + [[], ["input.on_error=skip"]][seed // 4 % 2]
    no_plot = "output.html=None" if program == "refl_stats" else "output.plot=None"
    expt = data_path("ssx_CuNiR/imported_no_ref_5.expt")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_inprocess(program, [expt, folder, no_plot, *extra], out)
    if code == 0:
        assert err == ""
        assert (out / f"{program}.json").exists()
    else:
        assert_sorry(code, err)
        assert not list(out.iterdir())


def test_a_panel_no_detector_has_among_small_files_is_named_or_skipped_as_file_by_file(
    stills, tmp_path, monkeypatch
):
    """The small-file path refuses a damaged panel column as the one-file path does."""
    folder = tmp_path / "bad_panel"
    shutil.copytree(stills, folder)
    victim = folder / "still_1_2.refl"
    span = read_layout(victim).columns["panel"]
    data = bytearray(victim.read_bytes())
    data[span.offset + 8 * 5 + 4 : span.offset + 8 * 5 + 8] = b"\xff" * 4  # row 5: >= 2^32
    victim.write_bytes(bytes(data))
    program, args = "strong_reflection_positions", [folder, "output.plot=None"]
    code, _out, err = run_inprocess(program, args, tmp_path)
    assert_sorry(code, err, "still_1_2.refl", "column 'panel': row 5", "which no detector has")
    assert not list(tmp_path.glob(f"*{program}*"))
    fast = documents(program, [folder, "input.on_error=skip"], tmp_path, monkeypatch, True)
    slow = documents(program, [folder, "input.on_error=skip"], tmp_path, monkeypatch, False)
    assert fast["selection"]["skipped"] == slow["selection"]["skipped"]
    assert [s["path"] for s in fast["selection"]["skipped"]] == [str(victim)]
    assert fast["results"] == slow["results"]
