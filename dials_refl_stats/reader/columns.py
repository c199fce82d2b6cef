"""DIALS column types and their decoding into numpy arrays.

Every flat DIALS column is a raw little-endian array of fixed-size elements; it is read
straight into its final numpy buffer (``readinto``, one copy from the page cache) or,
with ``mmap=True``, viewed in place without any copy.
"""

from __future__ import annotations

import math
import mmap as _mmap
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .errors import ReflectionFileError
from .msgpack_layout import ColumnSpan


@dataclass(frozen=True)
class ColumnType:
    """How a DIALS column type maps to numpy: element dtype and per-row shape."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


FLAT_TYPES: dict[str, ColumnType] = {
    "bool": ColumnType(np.dtype("u1"), ()),
    "int": ColumnType(np.dtype("<i4"), ()),
    "std::size_t": ColumnType(np.dtype("<u8"), ()),
    "double": ColumnType(np.dtype("<f8"), ()),
    "vec2<double>": ColumnType(np.dtype("<f8"), (2,)),
    "vec3<double>": ColumnType(np.dtype("<f8"), (3,)),
    "mat3<double>": ColumnType(np.dtype("<f8"), (9,)),
    "int6": ColumnType(np.dtype("<i4"), (6,)),
    "cctbx::miller::index<>": ColumnType(np.dtype("<i4"), (3,)),
}
SHOEBOX_TYPE = "Shoebox<>"
#: Types DIALS can store that have no flat numpy form here.
OTHER_TYPES = frozenset({SHOEBOX_TYPE, "FrameSlicedShoebox<>", "std::string"})

#: Parts of vector columns in :func:`to_dataframe` (DIALS naming habits).
PART_NAMES: dict[str, tuple[str, ...]] = {
    "vec2<double>": ("x", "y"),
    "vec3<double>": ("x", "y", "z"),
    "cctbx::miller::index<>": ("h", "k", "l"),
    "int6": ("x0", "x1", "y0", "y1", "z0", "z1"),
    "mat3<double>": tuple(f"{r}{c}" for r in range(3) for c in range(3)),
}


def check_flat(path: str, span: ColumnSpan) -> ColumnType:
    """The :class:`ColumnType` of a flat column, checking its byte length."""
    ctype = FLAT_TYPES.get(span.type_name)
    if ctype is None:
        if span.type_name in OTHER_TYPES:
            raise ReflectionFileError(
                path, f"column '{span.name}' has type {span.type_name}, not a flat column"
            )
        raise ReflectionFileError(
            path, f"column '{span.name}' has unknown type {span.type_name[:60]!r}"
        )
    expected = span.count * ctype.row_bytes
    if span.nbytes != expected:
        raise ReflectionFileError(
            path,
            f"column '{span.name}' ({span.type_name}) has {span.nbytes} bytes, "
            f"expected {expected} for {span.count} rows",
        )
    return ctype


def _finish(raw: np.ndarray, span: ColumnSpan, ctype: ColumnType) -> np.ndarray:
    arr = raw.view(ctype.dtype).reshape((span.count,) + ctype.shape)
    if span.type_name == "bool":
        if arr.size and int(arr.max()) > 1:  # hostile bytes: normalise like C++ would
            arr = arr != 0
        else:
            arr = arr.view(np.bool_)
    return arr


def read_flat(path: str, fh: BinaryIO, span: ColumnSpan) -> np.ndarray:
    """Read one flat column into a new aligned array (a single ``readinto``)."""
    ctype = check_flat(path, span)
    raw = np.empty(span.nbytes, dtype=np.uint8)
    fh.seek(span.offset)
    got = fh.readinto(memoryview(raw)) if span.nbytes else 0
    if got != span.nbytes:
        raise ReflectionFileError(path, f"truncated file (column '{span.name}')")
    return _finish(raw, span, ctype)


def view_flat(path: str, mm: _mmap.mmap, span: ColumnSpan) -> np.ndarray:
    """Zero-copy, read-only view of one flat column in a memory map."""
    ctype = check_flat(path, span)
    if span.offset + span.nbytes > len(mm):
        raise ReflectionFileError(path, f"truncated file (column '{span.name}')")
    raw = np.frombuffer(mm, dtype=np.uint8, count=span.nbytes, offset=span.offset)
    return _finish(raw, span, ctype)
