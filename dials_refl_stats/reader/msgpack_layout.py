"""A minimal msgpack walker for DIALS reflection files: byte offsets, not copies.

A DIALS ``.refl`` file (``reflection_table_msgpack_adapter.h``) is one msgpack value::

    ["dials::af::reflection_table", VERSION,
     {"identifiers": {int: str}, "nrows": n,
      "data": {column: [type_name, [n, <bin: raw little-endian array>]]}}]

Only the small structural values are decoded; every column's ``bin`` payload is skipped
with a seek and recorded as ``(offset, nbytes)``, so walking a 1 GB file reads a few kB.
Every length is checked against the bytes left in the file before it is trusted.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import ReflectionFileError

MAGIC = "dials::af::reflection_table"
SUPPORTED_VERSIONS = (1, 2)
MAX_COLUMNS = 100_000
MAX_IDENTIFIERS = 10_000_000
MAX_STR = 1 << 20

_FMT = {
    0xCC: ">B",
    0xCD: ">H",
    0xCE: ">I",
    0xCF: ">Q",
    0xD0: ">b",
    0xD1: ">h",
    0xD2: ">i",
    0xD3: ">q",
}


@dataclass(frozen=True)
class ColumnSpan:
    """Where one column's raw bytes are: ``nbytes`` at absolute file ``offset``."""

    name: str
    type_name: str
    count: int
    offset: int
    nbytes: int


@dataclass
class FileLayout:
    """The decoded header of a msgpack reflection file."""

    path: str
    file_size: int
    version: int
    nrows: int
    identifiers: dict[int, str] = field(default_factory=dict)
    columns: dict[str, ColumnSpan] = field(default_factory=dict)


class _Cursor:
    """Sequential reads from a file with every length checked against the file size."""

    def __init__(self, fh: BinaryIO, path: str, size: int) -> None:
        self.fh, self.path, self.size, self.pos = fh, path, size, 0

    def fail(self, problem: str) -> ReflectionFileError:
        return ReflectionFileError(self.path, problem)

    def left(self) -> int:
        return self.size - self.pos

    def read(self, n: int, what: str) -> bytes:
        if n > self.left():
            raise self.fail(f"truncated file ({what} needs {n} bytes, {max(self.left(), 0)} left)")
        data = self.fh.read(n)
        if len(data) != n:
            raise self.fail(f"truncated file (short read in {what})")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.left():
            raise self.fail(f"truncated file ({what} needs {n} bytes, {self.left()} left)")
        self.pos += n
        self.fh.seek(self.pos)

    def unpack(self, fmt: str, what: str) -> int:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.read(size, what))[0]

    def tag(self, what: str) -> int:
        return self.read(1, what)[0]


def _type_name(tag: int) -> str:
    if tag <= 0x7F or tag >= 0xE0 or 0xCC <= tag <= 0xD3:
        return "integer"
    if 0xA0 <= tag <= 0xBF or 0xD9 <= tag <= 0xDB:
        return "string"
    if 0x90 <= tag <= 0x9F or tag in (0xDC, 0xDD):
        return "array"
    if 0x80 <= tag <= 0x8F or tag in (0xDE, 0xDF):
        return "map"
    if tag in (0xC4, 0xC5, 0xC6):
        return "bin"
    return f"msgpack type 0x{tag:02x}"


def read_int(cur: _Cursor, what: str) -> int:
    tag = cur.tag(what)
    if tag <= 0x7F:
        return tag
    if tag >= 0xE0:
        return tag - 0x100
    if tag in _FMT:
        return cur.unpack(_FMT[tag], what)
    raise cur.fail(f"{what}: expected an integer, found {_type_name(tag)}")


def read_str(cur: _Cursor, what: str) -> str:
    tag = cur.tag(what)
    if 0xA0 <= tag <= 0xBF:
        n = tag & 0x1F
    elif tag == 0xD9:
        n = cur.unpack(">B", what)
    elif tag == 0xDA:
        n = cur.unpack(">H", what)
    elif tag == 0xDB:
        n = cur.unpack(">I", what)
    else:
        raise cur.fail(f"{what}: expected a string, found {_type_name(tag)}")
    if n > MAX_STR:
        raise cur.fail(f"{what}: implausible string length {n}")
    raw = cur.read(n, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise cur.fail(f"{what}: string is not valid UTF-8") from None


def read_array_len(cur: _Cursor, what: str) -> int:
    tag = cur.tag(what)
    if 0x90 <= tag <= 0x9F:
        return tag & 0x0F
    if tag == 0xDC:
        return cur.unpack(">H", what)
    if tag == 0xDD:
        return cur.unpack(">I", what)
    raise cur.fail(f"{what}: expected an array, found {_type_name(tag)}")


def read_map_len(cur: _Cursor, what: str) -> int:
    tag = cur.tag(what)
    if 0x80 <= tag <= 0x8F:
        return tag & 0x0F
    if tag == 0xDE:
        return cur.unpack(">H", what)
    if tag == 0xDF:
        return cur.unpack(">I", what)
    raise cur.fail(f"{what}: expected a map, found {_type_name(tag)}")


def read_bin_len(cur: _Cursor, what: str) -> int:
    tag = cur.tag(what)
    if tag == 0xC4:
        return cur.unpack(">B", what)
    if tag == 0xC5:
        return cur.unpack(">H", what)
    if tag == 0xC6:
        return cur.unpack(">I", what)
    raise cur.fail(f"{what}: expected binary data, found {_type_name(tag)}")


def _read_identifiers(cur: _Cursor) -> dict[int, str]:
    n = read_map_len(cur, "identifiers")
    if n > MAX_IDENTIFIERS or 2 * n > cur.left():
        raise cur.fail(f"identifiers: implausible count {n}")
    ids: dict[int, str] = {}
    for _ in range(n):
        key = read_int(cur, "identifier key")
        ids[key] = read_str(cur, "identifier")
    return ids


def _read_column(cur: _Cursor, name: str) -> ColumnSpan:
    what = f"column '{name}'"
    if read_array_len(cur, what) != 2:
        raise cur.fail(f"{what}: expected [type, data]")
    type_name = read_str(cur, f"{what} type")
    if read_array_len(cur, what) != 2:
        raise cur.fail(f"{what}: expected [size, bytes]")
    count = read_int(cur, f"{what} size")
    if count < 0:
        raise cur.fail(f"{what}: negative size {count}")
    nbytes = read_bin_len(cur, what)
    offset = cur.pos
    cur.skip(nbytes, what)
    return ColumnSpan(name, type_name, count, offset, nbytes)


def read_layout(path: str | os.PathLike, fh: BinaryIO | None = None) -> FileLayout:
    """Walk the msgpack structure of a DIALS reflection file (no column data is read)."""
    path = os.fspath(path)
    if fh is None:
        with open(path, "rb") as own:
            return read_layout(path, own)
    size = os.fstat(fh.fileno()).st_size
    fh.seek(0)
    cur = _Cursor(fh, path, size)
    if size == 0:
        raise cur.fail("empty file")
    if read_array_len(cur, "file header") != 3:
        raise cur.fail("not a DIALS reflection table (wrong msgpack structure)")
    magic = read_str(cur, "file magic")
    if magic != MAGIC:
        raise cur.fail(f"not a DIALS reflection table (magic {magic[:40]!r})")
    version = read_int(cur, "format version")
    if version not in SUPPORTED_VERSIONS:
        raise cur.fail(f"unsupported reflection file version {version} (expected 1 or 2)")
    layout = FileLayout(path=path, file_size=size, version=version, nrows=-1)
    nkeys = read_map_len(cur, "table header")
    if nkeys > 16:
        raise cur.fail(f"table header: implausible number of keys {nkeys}")
    seen_data = False
    for _ in range(nkeys):
        key = read_str(cur, "table header key")
        if key == "identifiers":
            layout.identifiers = _read_identifiers(cur)
        elif key == "nrows":
            layout.nrows = read_int(cur, "nrows")
            if layout.nrows < 0:
                raise cur.fail(f"negative nrows {layout.nrows}")
        elif key == "data":
            seen_data = True
            ncols = read_map_len(cur, "column map")
            if ncols > MAX_COLUMNS or 4 * ncols > cur.left():
                raise cur.fail(f"column map: implausible number of columns {ncols}")
            for _ in range(ncols):
                name = read_str(cur, "column name")
                if name in layout.columns:
                    raise cur.fail(f"duplicate column '{name}'")
                layout.columns[name] = _read_column(cur, name)
        else:
            raise cur.fail(f"unknown key {key[:40]!r} in table header")
    if layout.nrows < 0:
        raise cur.fail("number of rows (nrows) not found")
    if not seen_data:
        raise cur.fail("table data not found")
    if not layout.columns and layout.nrows > size:
        raise cur.fail(f"implausible nrows {layout.nrows} for a table without columns")
    for span in layout.columns.values():
        if span.count != layout.nrows:
            raise cur.fail(f"column '{span.name}' has {span.count} rows, table has {layout.nrows}")
    return layout
