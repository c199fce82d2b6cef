"""Hostile and broken files: the reader fails with one clear ReflectionFileError.

Targeted cases first (truncation, magic, version, row counts, bounding boxes, lengths
past the end of the file), then a short seeded fuzz run over real files; the long run
is ``benchmarks/fuzz_reader.py --iterations N``.
"""

from __future__ import annotations

import pickle
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import data_path, load_script

from dials_refl_stats.reader import (
    ReflectionFileError,
    read_layout,
    read_reflections,
    shoebox_mask_counts,
)
from dials_refl_stats.reflections import ReflectionLoadError, open_reflection_file

SOURCE = data_path("sim_small/indexed.refl")
RAW = SOURCE.read_bytes()
LAYOUT = read_layout(SOURCE)
SHOEBOX = LAYOUT.columns["shoebox"]
FIRST_RECORD = SHOEBOX.offset


def expect_error(tmp_path: Path, blob: bytes, pattern: str, name: str = "bad.refl"):
    """Every entry point raises ReflectionFileError matching ``pattern``."""
    path = tmp_path / name
    path.write_bytes(blob)
    for call in (
        lambda: read_reflections(path, shoebox="mask"),
        lambda: shoebox_mask_counts(path, 4),
    ):
        with pytest.raises(ReflectionFileError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(f"{name}: "), msg
        assert re.search(pattern, msg), msg
    return path


def patched(offset: int, fmt: str, *values) -> bytes:
    blob = bytearray(RAW)
    struct.pack_into(fmt, blob, offset, *values)
    return bytes(blob)


@pytest.mark.parametrize(
    "cut",
    [
        0,
        1,
        10,
        40,
        200,
        5000,
        FIRST_RECORD - 1,
        FIRST_RECORD + 10,
        FIRST_RECORD + 5000,
        len(RAW) - 1,
    ],
)
def test_truncated(tmp_path, cut):
    pattern = "truncated|empty file|not a DIALS|unrecognised"
    expect_error(tmp_path, RAW[:cut], pattern)


def test_truncated_message_names_column_and_sizes(tmp_path):
    path = tmp_path / "indexed.refl"
    path.write_bytes(RAW[: FIRST_RECORD + 1000])
    with pytest.raises(ReflectionFileError) as err:
        read_reflections(path)
    assert str(err.value) == (
        f"indexed.refl: truncated file (column 'shoebox' needs {SHOEBOX.nbytes} bytes, 1000 left)"
    )


def test_wrong_magic(tmp_path):
    blob = RAW.replace(b"dials::af::reflection_table", b"dials::af::reflection_tablX", 1)
    expect_error(tmp_path, blob, "not a DIALS reflection")


@pytest.mark.parametrize("version", [0, 3, 0x7F])
def test_wrong_version(tmp_path, version):
    blob = bytearray(RAW)
    blob[29] = version
    expect_error(tmp_path, bytes(blob), f"unsupported reflection file version {version}")


def test_nrows_disagrees_with_columns(tmp_path):
    i = RAW.find(b"\xa5nrows") + 6
    assert RAW[i] == 0xCD  # uint16 row count
    blob = RAW[:i] + b"\xcd" + struct.pack(">H", LAYOUT.nrows + 1) + RAW[i + 3 :]
    expect_error(tmp_path, blob, r"column '.*' has 1514 rows, table has 1515")


def test_huge_nrows_allocates_nothing(tmp_path):
    i = RAW.find(b"\xa5nrows") + 6
    blob = RAW[:i] + b"\xcf" + struct.pack(">Q", 2**63) + RAW[i + 3 :]
    expect_error(tmp_path, blob, "has 1514 rows, table has")


@pytest.mark.parametrize(
    "field, value, pattern",
    [
        (1, 2**31 - 1, r"row 0: invalid bounding box \[2147483647, "),  # x0 > x1
        (2, -5, r"row 0: invalid bounding box"),  # x1 < x0
        (5, 2**31 - 1, r"row 0: invalid bounding box"),  # z0 > z1
        (4, 2**31 - 1, r"truncated file \(row 0 needs \d+ bytes"),  # huge extent
        (6, 2**31 - 1, r"truncated file \(row 0 needs \d+ bytes"),
        (1, -5, r"invalid shoebox flag|invalid bounding box|truncated"),  # wider: misaligns
    ],
)
def test_bad_shoebox_bbox(tmp_path, field, value, pattern):
    # fields of the first record: 0 panel, 1..6 bbox (x0, x1, y0, y1, z0, z1), flag
    blob = patched(FIRST_RECORD + 4 * field, "<i", value)
    expect_error(tmp_path, blob, pattern)


def test_bad_shoebox_flag(tmp_path):
    blob = bytearray(RAW)
    blob[FIRST_RECORD + 28] = 7
    expect_error(tmp_path, bytes(blob), "row 0: invalid shoebox flag 7")


def test_bin_length_past_end(tmp_path):
    assert RAW[SHOEBOX.offset - 5] == 0xC6
    blob = patched(SHOEBOX.offset - 4, ">I", 2**32 - 1)
    expect_error(tmp_path, blob, r"truncated file \(column 'shoebox' needs 4294967295")


def test_flat_column_length_mismatch(tmp_path):
    span = LAYOUT.columns["flags"]
    hlen = 3 if span.nbytes < 1 << 16 else 5
    fmt = ">H" if hlen == 3 else ">I"
    blob = bytearray(RAW)
    struct.pack_into(fmt, blob, span.offset - hlen + 1, span.nbytes - 8)
    blob = bytes(blob[: span.offset + span.nbytes - 8] + blob[span.offset + span.nbytes :])
    path = tmp_path / "short.refl"
    path.write_bytes(blob)
    with pytest.raises(ReflectionFileError, match=r"column 'flags' \(std::size_t\) has"):
        read_reflections(path, columns=["flags"])


def test_trailing_shoebox_bytes(tmp_path):
    # one record too many inside the shoebox bin (its length grows to match)
    extra = RAW[FIRST_RECORD : FIRST_RECORD + 29]
    blob = bytearray(
        RAW[: SHOEBOX.offset + SHOEBOX.nbytes] + extra + RAW[SHOEBOX.offset + SHOEBOX.nbytes :]
    )
    struct.pack_into(">I", blob, SHOEBOX.offset - 4, SHOEBOX.nbytes + 29)
    path = tmp_path / "extra.refl"
    path.write_bytes(bytes(blob))
    with pytest.raises(ReflectionFileError, match="unexpected bytes after the last shoebox"):
        shoebox_mask_counts(path, 4)
    # flat columns never look at the shoebox bytes
    assert read_reflections(path, columns=["flags"]).nrows == LAYOUT.nrows


def test_not_a_file(tmp_path):
    with pytest.raises(ReflectionFileError, match="cannot open"):
        read_reflections(tmp_path / "missing.refl")
    with pytest.raises(ReflectionFileError):
        read_reflections(tmp_path)


def test_fuzz_seeded_mutations(tmp_path):
    """~5 s of seeded mutations of real files; the long run is benchmarks/fuzz_reader.py."""
    fuzz = load_script("benchmarks/fuzz_reader.py", "fuzz_reader")
    files = [
        data_path("sim_small/indexed.refl"),
        data_path("ssx_CuNiR/indexed.refl"),
        data_path("centroid_test_data/integrated.refl"),
    ]
    start = time.perf_counter()
    stats = fuzz.fuzz(files, iterations=200, seed=20240, workdir=tmp_path, measure_every=20)
    assert time.perf_counter() - start < 30
    outcomes = {outcome for (_kind, outcome) in stats}
    assert outcomes == {"ok", "error"}  # both paths really exercised
    assert sum(stats.values()) == 200


def test_fuzz_with_the_read_ahead_thread(tmp_path, monkeypatch):
    """The same with the read-ahead thread on for small windows, so that its guessed
    window offsets meet corrupt files too (a wrong guess must never surface)."""
    from dials_refl_stats.reader import shoebox as shoebox_module

    monkeypatch.setattr(shoebox_module, "THREAD_MIN_WINDOW", 4096)
    fuzz = load_script("benchmarks/fuzz_reader.py", "fuzz_reader")
    files = [data_path("sim_small/indexed.refl"), data_path("centroid_test_data/integrated.refl")]
    stats = fuzz.fuzz(files, iterations=120, seed=777, workdir=tmp_path, measure_every=40)
    assert {outcome for (_kind, outcome) in stats} == {"ok", "error"}
    assert sum(stats.values()) == 120


def test_random_bytes_are_unknown(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(20):
        blob = rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
        path = tmp_path / f"r{i}.refl"
        path.write_bytes(blob)
        with pytest.raises(ReflectionFileError):
            read_reflections(path)


# --- errors found after a file was opened, as the programs see them ---------------------


def _source(path, backend="fast"):
    return open_reflection_file(str(path), backend)


def _write(tmp_path: Path, blob: bytes, name: str = "bad.refl") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def _set_int32(column: str, row: int, index: int, value: int, width: int = 1) -> bytes:
    """The source file with element ``index`` of ``row`` of an int32 column set."""
    blob = bytearray(RAW)
    struct.pack_into("<i", blob, LAYOUT.columns[column].offset + 4 * (row * width + index), value)
    return bytes(blob)


class SubError(ReflectionLoadError):
    """A subclass, as the pipeline defines them (must pickle as itself)."""


def test_a_shoebox_error_found_after_opening_is_a_load_error(tmp_path):
    path = _write(tmp_path, patched(FIRST_RECORD + 4 * 2, "<i", -5))  # row 0: x1 < x0
    source = _source(path)
    assert source.column("flags").shape == (LAYOUT.nrows,)  # the header and columns read
    with pytest.raises(ReflectionLoadError) as err:
        source.shoebox_mask_counts(4)
    assert re.fullmatch(
        rf"{re.escape(str(path))}: column 'shoebox': row 0: invalid bounding box \[\d+, -5, .*\]",
        str(err.value),
    )


def test_load_error_prints_as_one_sorry_line_without_traceback(tmp_path):
    path = _write(tmp_path, patched(FIRST_RECORD + 28, "<B", 7))
    code = (
        "from dials_refl_stats.reflections import open_reflection_file;"
        f"open_reflection_file({str(path)!r}).shoebox_mask_counts(4)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == f"Sorry: {path}: column 'shoebox': row 0: invalid shoebox flag 7\n"


def test_load_error_is_a_sorry_and_pickles():
    from dials_refl_stats.pipeline.errors import Sorry

    error = ReflectionLoadError("x.refl: bad")
    assert isinstance(error, Sorry)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ReflectionLoadError and str(again) == "x.refl: bad"
    assert type(pickle.loads(pickle.dumps(SubError("y.refl: worse")))) is SubError


@pytest.mark.parametrize("backend", ["fast", "dials"])
def test_ids_below_minus_one_or_unknown_are_errors(tmp_path, backend):
    assert LAYOUT.identifiers == {0: LAYOUT.identifiers[0]}
    for value, pattern in [
        (-7, r"column 'id': row 3 has invalid experiment id -7$"),
        (5, r"column 'id': row 3 has experiment id 5, which is not among the file's 1 "),
        (2**31 - 1, r"column 'id': row 3 has experiment id 2147483647, which is not"),
    ]:
        path = _write(tmp_path, _set_int32("id", 3, 0, value), f"id{value}.refl")
        with pytest.raises(ReflectionLoadError, match=pattern):
            _source(path, backend).column("id")


@pytest.mark.parametrize("backend", ["fast", "dials"])
def test_panel_numbers_no_detector_has_are_errors(tmp_path, backend):
    """A damaged ``size_t`` panel (found by fuzzing: 2^64 - 2^32, negative as a signed
    number, became a histogram of panel -4294967296) names the file, row and value."""
    for value, ok in [(3, True), (2**31 - 1, True), (2**31, False), (2**64 - 2**32, False)]:
        blob = bytearray(RAW)
        struct.pack_into("<Q", blob, LAYOUT.columns["panel"].offset + 8 * 3, value)
        path = _write(tmp_path, bytes(blob), f"panel{value}.refl")
        if ok:
            assert int(_source(path, backend).column("panel")[3]) == value
            continue
        pattern = rf"column 'panel': row 3 has panel number {value}, which no detector has$"
        with pytest.raises(ReflectionLoadError, match=pattern):
            _source(path, backend).column("panel")


@pytest.mark.parametrize("backend", ["fast", "dials"])
def test_ids_without_identifiers_only_need_to_be_at_least_minus_one(tmp_path, backend):
    src = data_path("centroid_test_data/integrated.refl")
    raw = src.read_bytes()
    layout = read_layout(src)
    assert layout.identifiers == {}
    blob = bytearray(raw)
    struct.pack_into("<i", blob, layout.columns["id"].offset + 4 * 10, 5)
    path = _write(tmp_path, bytes(blob), "five.refl")
    assert _source(path, backend).column("id")[10] == 5
    struct.pack_into("<i", blob, layout.columns["id"].offset + 4 * 10, -2)
    path = _write(tmp_path, bytes(blob), "minus2.refl")
    with pytest.raises(ReflectionLoadError, match="row 10 has invalid experiment id -2"):
        _source(path, backend).column("id")


@pytest.mark.parametrize("backend", ["fast", "dials"])
def test_inverted_bbox_column_is_an_error(tmp_path, backend):
    x0 = int(read_reflections(SOURCE, columns=["bbox"]).columns["bbox"][2, 0])
    path = _write(tmp_path, _set_int32("bbox", 2, 1, x0 - 1, width=6))
    with pytest.raises(ReflectionLoadError, match=r"column 'bbox': row 2 has an invalid bounding"):
        _source(path, backend).column("bbox")


def test_dials_backend_never_sees_impossible_shoebox_sizes(tmp_path):
    """DIALS 3.12's from_file crashes (SIGSEGV) on a shoebox record whose bbox needs
    more bytes than the column holds: the fast reader checks the records first."""
    path = _write(tmp_path, patched(FIRST_RECORD + 4 * 6, "<i", 2**31 - 1))  # z1 huge
    with pytest.raises(ReflectionLoadError, match=r"column 'shoebox': truncated file \(row 0 "):
        _source(path, "dials")


def _msgpack_table(nrows: int) -> bytes:
    """A msgpack reflection table without columns (written by hand)."""
    magic = b"dials::af::reflection_table"
    return (
        b"\x93\xbb"
        + magic
        + b"\x01\x83\xabidentifiers\x80\xa5nrows\xcf"
        + struct.pack(">Q", nrows)
        + b"\xa4data\x80"
    )


def test_huge_nrows_without_columns_is_an_error(tmp_path):
    assert read_layout(_write(tmp_path, _msgpack_table(3), "three.refl")).nrows == 3
    path = _write(tmp_path, _msgpack_table(2**40), "huge.refl")
    with pytest.raises(ReflectionFileError, match="implausible nrows 1099511627776"):
        read_layout(path)


def test_memory_errors_become_reader_errors():
    from dials_refl_stats import reader

    with pytest.raises(ReflectionFileError, match="^x.refl: corrupt reflection file .*memory"):
        reader._guarded("x.refl", np.empty, 1 << 62, np.uint8)


# --- HDF5 tables that are inconsistent -------------------------------------------------


def _h5(tmp_path: Path, edit) -> Path:
    """The sim_small table as a DIALS-layout HDF5 file, with ``edit(group)`` applied."""
    h5py = pytest.importorskip("h5py")
    from test_reader import _write_dials_h5

    path = tmp_path / "table.refl"
    _write_dials_h5(SOURCE, path)
    with h5py.File(path, "r+") as fh:
        edit(fh["dials/processing/group_0"])
    return path


def _replace(group, name, data):
    del group[name]
    group.create_dataset(name, data=data)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda g: _replace(g, "flags", g["flags"][:-1]), r"has 1513 rows, table has 1514"),
        (lambda g: _replace(g, "flags", np.uint64(4)), r"column 'flags' is a scalar"),
        (
            lambda g: _replace(g["shoebox"], "panel", g["shoebox/panel"][:-1]),
            r"1513 panels for 1514 bounding boxes",
        ),
        (
            lambda g: _replace(g["shoebox"], "shoebox_mask", g["shoebox/shoebox_mask"][:-1]),
            r"pixel arrays .* do not match the bounding boxes",
        ),
        (
            lambda g: _replace(
                g["shoebox"], "bbox", np.where(np.arange(6) == 1, -9, g["shoebox/bbox"][()])
            ),
            r"HDF5 shoebox: row 0: invalid bounding box \[\d+, -9,",
        ),
        (
            lambda g: _replace(g["shoebox"], "bbox", g["shoebox/bbox"][()][:, :3]),
            r"HDF5 shoebox: bbox of shape \(1514, 3\), not \(n, 6\)",
        ),
    ],
)
def test_inconsistent_hdf5_tables_are_errors(tmp_path, edit, pattern):
    path = _h5(tmp_path, edit)
    with pytest.raises(ReflectionFileError, match=pattern):
        read_reflections(path, shoebox="full")


def test_hdf5_shape_beyond_the_file_allocates_nothing(tmp_path):
    import tracemalloc

    def huge(group):
        del group["flags"]
        group.create_dataset("flags", shape=(2**40,), dtype="<u8", chunks=(1024,))

    path = _h5(tmp_path, huge)
    tracemalloc.start()
    try:
        with pytest.raises(ReflectionFileError, match=r"column 'flags' claims \d+ bytes"):
            read_reflections(path, columns=["flags"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
