"""The DIALS-free reader gives what DIALS gives, for every real file we ship."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PACKAGE_DATA, TESTS_DATA, data_path, needs_dials

from dials_refl_stats import reader as reader_module
from dials_refl_stats.reader import (
    ReflectionData,
    ReflectionFileError,
    ShoeboxColumn,
    read_layout,
    read_reflections,
    shoebox_mask_counts,
    sniff_format,
    to_dataframe,
)

REFL_FILES = sorted(TESTS_DATA.glob("**/*.refl")) + sorted(PACKAGE_DATA.glob("**/*.refl"))
ROOTS = (TESTS_DATA, PACKAGE_DATA)


def _rel(path: Path) -> str:
    for root in ROOTS:
        if root in path.parents:
            return str(path.relative_to(root))
    return path.name


SHOEBOX_FILES = [
    p
    for p in REFL_FILES
    if any(s.type_name == "Shoebox<>" for s in read_layout(p).columns.values())
]
ids = [_rel(p) for p in REFL_FILES]
sb_ids = [_rel(p) for p in SHOEBOX_FILES]


# --- helpers --------------------------------------------------------------------------


def dials_column(col, type_name: str) -> np.ndarray:
    """A flex column as numpy, in the reader's shapes."""
    if type_name == "int6":
        return col.as_int().as_numpy_array().reshape(-1, 6)
    if type_name == "cctbx::miller::index<>":
        return col.as_vec3_double().as_numpy_array()
    arr = col.as_numpy_array()
    return arr.reshape(len(col), -1) if type_name == "mat3<double>" else arr


def write_v2_twin(src: Path, dst: Path) -> None:
    """Rewrite a version-1 file as DIALS >= 3.29 would write it (documented layout):

    file version 2; each allocated shoebox record with flag 2 and a uint8 mask.
    Everything else is copied byte for byte.
    """
    raw = src.read_bytes()
    layout = read_layout(src)
    assert raw[29] == 0x01, "version should be a positive fixint right after the magic"
    sb = read_reflections(src, columns=[], shoebox="full").shoebox
    out = bytearray()
    for i in range(len(sb)):
        lo, hi = sb.offsets[i], sb.offsets[i + 1]
        flag = 2 if sb.allocated[i] else 0
        out += struct.pack("<I6iB", int(sb.panel[i]), *map(int, sb.bbox[i]), flag)
        if flag:
            assert sb.mask_values[lo:hi].max(initial=0) < 256
            out += sb.data[lo:hi].astype("<f4").tobytes()
            out += sb.mask_values[lo:hi].astype(np.uint8).tobytes()
            out += sb.background[lo:hi].astype("<f4").tobytes()
    span = layout.columns["shoebox"]
    # msgpack-c writes the smallest bin header: bin8 / bin16 / bin32
    hlen = 2 if span.nbytes < 1 << 8 else 3 if span.nbytes < 1 << 16 else 5
    assert raw[span.offset - hlen] == {2: 0xC4, 3: 0xC5, 5: 0xC6}[hlen]
    new = bytearray(raw[: span.offset - hlen])
    new[29] = 0x02
    new += b"\xc6" + struct.pack(">I", len(out)) + out + raw[span.offset + span.nbytes :]
    dst.write_bytes(bytes(new))


@pytest.fixture(scope="module")
def dials_tables():
    from dials.array_family import flex

    cache = {}

    def get(path: Path):
        if path not in cache:
            cache[path] = flex.reflection_table.from_file(str(path))
        return cache[path]

    return get


# --- against DIALS ----------------------------------------------------------------------


@needs_dials
@pytest.mark.parametrize("path", REFL_FILES, ids=ids)
def test_flat_columns_equal_dials(path, dials_tables):
    table = dials_tables(path)
    data = read_reflections(path)
    assert isinstance(data, ReflectionData)
    assert data.nrows == len(table)
    assert data.identifiers == dict(table.experiment_identifiers())
    assert data.format_version == 1
    assert set(data.column_types) == set(table.keys())
    flat = {k for k, t in data.column_types.items() if t != "Shoebox<>"}
    assert set(data.columns) == flat
    for name, arr in data.columns.items():
        expected = dials_column(table[name], data.column_types[name])
        assert arr.shape == expected.shape, name
        assert np.array_equal(arr, expected), name


@needs_dials
@pytest.mark.parametrize("path", SHOEBOX_FILES, ids=sb_ids)
def test_shoeboxes_equal_dials(path, dials_tables):
    sbs = dials_tables(path)["shoebox"]
    sb = read_reflections(path, columns=[], shoebox="full").shoebox
    assert isinstance(sb, ShoeboxColumn)
    assert sb.mask_values.dtype == np.int32 and sb.data.dtype == np.float32
    assert np.array_equal(sb.allocated, sbs.is_allocated().as_numpy_array())
    assert np.array_equal(sb.panel, sbs.panels().as_numpy_array())
    assert np.array_equal(sb.bbox, sbs.bounding_boxes().as_int().as_numpy_array().reshape(-1, 6))
    for i in range(len(sbs)):
        lo, hi = sb.offsets[i], sb.offsets[i + 1]
        if not sb.allocated[i]:
            assert lo == hi
            continue
        s = sbs[i]
        assert np.array_equal(sb.mask_values[lo:hi], s.mask.as_numpy_array().ravel())
        assert np.array_equal(sb.data[lo:hi], s.data.as_numpy_array().ravel())
        assert np.array_equal(sb.background[lo:hi], s.background.as_numpy_array().ravel())
        assert sb.mask(i).shape == s.mask.all()


@needs_dials
@pytest.mark.parametrize("path", SHOEBOX_FILES, ids=sb_ids)
@pytest.mark.parametrize("code", [4, 5, 1, 0, 32, 256])
def test_mask_counts_equal_dials(path, code, dials_tables):
    expected = dials_tables(path)["shoebox"].count_mask_values(code).as_numpy_array()
    assert np.array_equal(shoebox_mask_counts(path, code), expected)


@needs_dials
def test_unallocated_rows_count_zero(dials_tables):
    path = data_path("centroid_test_data/integrated.refl")
    sbs = dials_tables(path)["shoebox"]
    alloc = sbs.is_allocated().as_numpy_array()
    assert 0 < alloc.sum() < len(alloc)  # the file really is partially allocated
    counts = shoebox_mask_counts(path, 4)
    assert (counts[~alloc] == 0).all()
    assert np.array_equal(counts, sbs.count_mask_values(4).as_numpy_array())


def test_reader_does_not_import_dials():
    code = (
        "import sys; from dials_refl_stats.reader import read_reflections, "
        "shoebox_mask_counts;"
        f"read_reflections({str(REFL_FILES[0])!r}, shoebox='mask');"
        f"shoebox_mask_counts({str(SHOEBOX_FILES[0])!r}, 4);"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('dials', 'dxtbx', 'cctbx', 'scitbx', 'boost_adaptbx')];"
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# --- without DIALS: self-consistency ------------------------------------------------------


def _reference_counts(sb: ShoeboxColumn, code: int, all_bits: bool) -> np.ndarray:
    out = np.zeros(len(sb), np.int64)
    for i in range(len(sb)):
        m = sb.mask_values[sb.offsets[i] : sb.offsets[i + 1]].astype(np.int64) & code
        out[i] = (m == code).sum() if all_bits else (m != 0).sum()
    return out


@pytest.mark.parametrize("path", SHOEBOX_FILES, ids=sb_ids)
def test_counts_any_bits_and_chunking(path):
    sb = read_reflections(path, columns=[], shoebox="mask").shoebox
    for code, all_bits in [(5, False), (6, True), (3, False), (-1, True), (0x104, False)]:
        expected = _reference_counts(sb, code, all_bits)
        got = shoebox_mask_counts(path, code, all_bits=all_bits)
        assert np.array_equal(got, expected), (code, all_bits)
    expected = _reference_counts(sb, 5, True)
    for chunk in (4096, 10_000, 1 << 16, 1 << 20):  # window edges, big records, threads
        assert np.array_equal(shoebox_mask_counts(path, 5, chunk_bytes=chunk), expected)
        small = read_reflections(path, columns=[], shoebox="mask", chunk_bytes=chunk)
        assert np.array_equal(small.shoebox.mask_values, sb.mask_values)


@pytest.mark.parametrize("path", SHOEBOX_FILES, ids=sb_ids)
def test_v2_twin_reads_like_v1(path, tmp_path):
    twin = tmp_path / f"v2_{path.name}"
    write_v2_twin(path, twin)
    v1 = read_reflections(path, shoebox="full")
    v2 = read_reflections(twin, shoebox="full")
    assert v2.format_version == 2
    assert v2.shoebox.mask_values.dtype == np.uint8
    assert v2.identifiers == v1.identifiers and v2.nrows == v1.nrows
    for name, arr in v1.columns.items():
        assert np.array_equal(v2.columns[name], arr), name
    for field in ("panel", "bbox", "allocated", "offsets", "mask_values", "data", "background"):
        assert np.array_equal(getattr(v2.shoebox, field), getattr(v1.shoebox, field)), field
    for code, all_bits in [
        (4, True),
        (5, True),
        (0, True),
        (5, False),
        (256, True),
        (0x105, False),
    ]:
        assert np.array_equal(
            shoebox_mask_counts(twin, code, all_bits),
            shoebox_mask_counts(path, code, all_bits),
        ), (code, all_bits)
        assert np.array_equal(
            shoebox_mask_counts(twin, code, all_bits, chunk_bytes=4096),
            _reference_counts(v1.shoebox, code, all_bits),
        ), (code, all_bits)


def test_sequential_fallback_matches(monkeypatch):
    """Without a usable bbox column the records are walked one by one: same result."""
    path = data_path("sim_twoexp/indexed.refl")
    fast = read_reflections(path, columns=[], shoebox="full").shoebox
    fast_counts = shoebox_mask_counts(path, 5)
    monkeypatch.setattr(reader_module, "_bbox_for_prediction", lambda *a: None)
    slow = read_reflections(path, columns=[], shoebox="full").shoebox
    for field in ("panel", "bbox", "allocated", "offsets", "mask_values", "data", "background"):
        assert np.array_equal(getattr(slow, field), getattr(fast, field)), field
    assert np.array_equal(shoebox_mask_counts(path, 5), fast_counts)


def test_projection_never_touches_shoebox_bytes(tmp_path):
    src = data_path("sim_small/indexed.refl")
    span = read_layout(src).columns["shoebox"]
    raw = bytearray(src.read_bytes())
    raw[span.offset : span.offset + span.nbytes] = bytes(span.nbytes)
    zeroed = tmp_path / "zeroed.refl"
    zeroed.write_bytes(bytes(raw))
    names = ["xyzobs.px.value", "flags", "id"]
    a = read_reflections(src, columns=names)
    b = read_reflections(zeroed, columns=names)
    assert list(b.columns) == names
    for name in names:
        assert np.array_equal(a.columns[name], b.columns[name])
    assert b.columns["xyzobs.px.value"].shape == (a.nrows, 3)
    assert b.columns["flags"].dtype == np.uint64 and b.columns["id"].dtype == np.int32
    with pytest.raises(ReflectionFileError):  # the shoebox bytes really are garbage now
        shoebox_mask_counts(zeroed, 4)


def test_dtypes_and_shapes():
    data = read_reflections(data_path("sim_small/indexed.refl"))
    expect = {
        "entering": (np.bool_, ()),
        "id": (np.int32, ()),
        "flags": (np.uint64, ()),
        "intensity.sum.value": (np.float64, ()),
        "xyzcal.px": (np.float64, (3,)),
        "bbox": (np.int32, (6,)),
        "miller_index": (np.int32, (3,)),
    }
    for name, (dtype, shape) in expect.items():
        arr = data.columns[name]
        assert arr.dtype == dtype and arr.shape == (data.nrows,) + shape, name
        assert arr.flags.c_contiguous and arr.flags.aligned, name


def test_mmap_views_equal_copies():
    path = data_path("sim_small/indexed.refl")
    a = read_reflections(path)
    b = read_reflections(path, mmap=True)
    for name in a.columns:
        assert np.array_equal(a.columns[name], b.columns[name])
        assert not b.columns[name].flags.writeable


def test_missing_column_names_column_and_file():
    with pytest.raises(ReflectionFileError) as err:
        read_reflections(data_path("sim_small/indexed.refl"), columns=["flags", "nope"])
    assert str(err.value) == "indexed.refl: no column 'nope' in the file"


def test_shoebox_column_is_not_flat():
    with pytest.raises(ReflectionFileError, match="shoebox.*not a flat column"):
        read_reflections(data_path("sim_small/indexed.refl"), columns=["shoebox"])


def test_no_shoebox_column():
    path = data_path("sim_small/integrated.refl")
    with pytest.raises(ReflectionFileError, match="no Shoebox"):
        shoebox_mask_counts(path, 4)
    with pytest.raises(ReflectionFileError, match="no Shoebox"):
        read_reflections(path, shoebox="mask")


def test_bad_arguments_are_value_errors():
    path = data_path("sim_small/indexed.refl")
    with pytest.raises(ValueError):
        read_reflections(path, shoebox="pixels")
    with pytest.raises(ValueError):
        shoebox_mask_counts(path, 1 << 40)


def test_sniff_format(tmp_path):
    assert sniff_format(data_path("sim_small/indexed.refl")) == "msgpack"
    pickle_file = data_path("centroid_test_data/strong.pickle")
    assert sniff_format(pickle_file) == "pickle"
    h5 = tmp_path / "x.refl"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    assert sniff_format(h5) == "hdf5"
    junk = tmp_path / "junk.refl"
    junk.write_bytes(b"hello world")
    assert sniff_format(junk) == "unknown"
    with pytest.raises(ReflectionFileError) as err:
        read_reflections(pickle_file)
    assert str(err.value) == (
        "strong.pickle: legacy pickle reflection table: not supported by the fast reader"
    )
    with pytest.raises(ReflectionFileError, match="junk.refl: not a DIALS reflection file"):
        read_reflections(junk)


def test_to_dataframe():
    pd = pytest.importorskip("pandas")
    data = read_reflections(
        data_path("sim_small/indexed.refl"), columns=["xyzobs.px.value", "miller_index", "flags"]
    )
    df = to_dataframe(data)
    assert isinstance(df, pd.DataFrame) and len(df) == data.nrows
    assert list(df.columns) == [
        "xyzobs.px.value.x",
        "xyzobs.px.value.y",
        "xyzobs.px.value.z",
        "miller_index.h",
        "miller_index.k",
        "miller_index.l",
        "flags",
    ]
    assert np.array_equal(df["xyzobs.px.value.z"], data.columns["xyzobs.px.value"][:, 2])


def test_to_dataframe_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    data = read_reflections(data_path("sim_small/indexed.refl"), columns=["flags"])
    with pytest.raises(ImportError, match="pandas"):
        to_dataframe(data)


def _write_dials_h5(src: Path, dst: Path) -> None:
    """An HDF5 twin in the layout of DIALS's table_as_hdf5_file.py (uncompressed)."""
    h5py = pytest.importorskip("h5py")
    data = read_reflections(src, shoebox="full")
    with h5py.File(dst, "w") as fh:
        g = fh.create_group("dials").create_group("processing").create_group("group_0")
        g.attrs["identifiers"] = list(data.identifiers.values())
        g.attrs["experiment_ids"] = np.array(list(data.identifiers), dtype=np.uint64)
        for name, arr in data.columns.items():
            if data.column_types[name] == "mat3<double>":
                arr = arr.reshape(-1, 3, 3)
            g.create_dataset(name, data=arr)
        if data.shoebox is not None:
            sb = g.create_group("shoebox")
            sb.create_dataset("shoebox_data", data=data.shoebox.data)
            sb.create_dataset("shoebox_background", data=data.shoebox.background)
            sb.create_dataset("shoebox_mask", data=data.shoebox.mask_values)
            sb.create_dataset("bbox", data=data.shoebox.bbox)
            sb.create_dataset("panel", data=data.shoebox.panel.astype(np.uint64))


def test_hdf5_layout(tmp_path):
    src = data_path("sim_small/indexed.refl")
    dst = tmp_path / "h5.refl"
    _write_dials_h5(src, dst)
    assert sniff_format(dst) == "hdf5"
    a = read_reflections(src, shoebox="full")
    b = read_reflections(dst, shoebox="full")
    assert b.format == "hdf5" and b.nrows == a.nrows and b.identifiers == a.identifiers
    assert b.column_types == a.column_types
    for name, arr in a.columns.items():
        assert b.columns[name].dtype == arr.dtype and np.array_equal(b.columns[name], arr)
    for field in ("panel", "bbox", "offsets", "mask_values", "data", "background"):
        assert np.array_equal(getattr(b.shoebox, field), getattr(a.shoebox, field)), field
    assert np.array_equal(shoebox_mask_counts(dst, 5), shoebox_mask_counts(src, 5))
    sub = read_reflections(dst, columns=["flags"])
    assert list(sub.columns) == ["flags"]


def test_error_is_one_line_and_names_file(tmp_path):
    bad = tmp_path / "my table.refl"
    raw = data_path("sim_small/indexed.refl").read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReflectionFileError) as err:
        read_reflections(bad)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("my table.refl: ")
    assert re.search(r"truncated file \(column '.*' needs \d+ bytes, \d+ left\)", msg)


def test_package_never_imports_dials_in_source():
    pkg = Path(reader_module.__file__).parent
    pattern = re.compile(r"^\s*(import|from)\s+(dials|dxtbx|cctbx|scitbx)\b", re.M)
    for source in pkg.glob("*.py"):
        assert not pattern.search(source.read_text()), source.name


def test_parametrisation_covers_both_kinds():
    assert len(SHOEBOX_FILES) >= 6 and len(REFL_FILES) > len(SHOEBOX_FILES)


def test_memory_mapped_windows_match(monkeypatch):
    from dials_refl_stats.reader import shoebox as shoebox_module

    path = data_path("quartz_processed/indexed.refl")
    expected = shoebox_mask_counts(path, 5, chunk_bytes=1 << 20)
    masks = read_reflections(path, columns=[], shoebox="mask").shoebox.mask_values
    monkeypatch.setattr(shoebox_module, "USE_MMAP", True)
    for chunk in (4096, 1 << 20, 1 << 30):
        assert np.array_equal(shoebox_mask_counts(path, 5, chunk_bytes=chunk), expected)
        assert np.array_equal(
            shoebox_mask_counts(path, 4, chunk_bytes=chunk),
            shoebox_mask_counts(path, 4, chunk_bytes=chunk * 2),
        )
        got = read_reflections(path, columns=[], shoebox="mask", chunk_bytes=chunk)
        assert np.array_equal(got.shoebox.mask_values, masks)


@pytest.mark.parametrize("path", SHOEBOX_FILES, ids=sb_ids)
def test_read_ahead_thread_and_its_guesses(path, monkeypatch):
    """Small windows with the read-ahead thread on: guessed window offsets (from the
    predicted record sizes) are used when right and reread when wrong (e.g. rows
    without shoeboxes), and the results do not change."""
    from dials_refl_stats.reader import shoebox as shoebox_module

    sb = read_reflections(path, columns=[], shoebox="mask").shoebox
    expected = _reference_counts(sb, 4, True)
    monkeypatch.setattr(shoebox_module, "THREAD_MIN_WINDOW", 1024)
    for chunk in (4096, 10_000, 1 << 16):
        assert np.array_equal(shoebox_mask_counts(path, 4, chunk_bytes=chunk), expected)
        got = read_reflections(path, columns=[], shoebox="mask", chunk_bytes=chunk).shoebox
        assert np.array_equal(got.mask_values, sb.mask_values)
        assert np.array_equal(got.offsets, sb.offsets)
