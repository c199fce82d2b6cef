"""Small msgpack reflection files, read in one ``read`` and decoded in one C call.

Serial-crystallography runs write 10^4-10^6 files of a few tens of kB (one still each).
For them the per-file cost is what counts: walking the header in Python costs more than
reading the whole file. A file of at most :data:`SMALL_FILE_BYTES` is therefore read at
once and decoded by the ``msgpack`` C extension (``python3-msgpack``, which Dask's
``distributed`` depends on); every column's payload comes back as ``bytes``.

The result is accepted only when it has exactly the structure
:func:`~dials_refl_stats.reader.msgpack_layout.read_layout` accepts (same limits, no
duplicate columns, every column with ``nrows`` rows); anything else, including every
error of the C decoder, gives ``None`` and the caller takes the walker, whose message
names the problem. Without the extension, ``None`` always: nothing but speed depends
on it.
"""

from __future__ import annotations

import os
import stat
import threading
from typing import Any, NamedTuple

from .msgpack_layout import MAGIC, MAX_COLUMNS, MAX_IDENTIFIERS, MAX_STR, SUPPORTED_VERSIONS

try:  # the C extension only: the pure-Python fallback is slower than our walker
    from msgpack import _cmsgpack as _msgpack
except ImportError:  # pragma: no cover - depends on the installation
    _msgpack = None

#: Files up to this size are read whole and decoded in one call.
SMALL_FILE_BYTES = 4 << 20
_MAX_HEADER_KEYS = 16


class SmallTable(NamedTuple):
    """A whole small reflection file: header values and each column's raw payload."""

    nrows: int
    identifiers: dict[int, str]
    #: column name -> (DIALS type name, raw little-endian payload)
    columns: dict[str, tuple[str, bytes]]


def available() -> bool:
    """Whether the msgpack C extension is there (else every call returns ``None``)."""
    return _msgpack is not None


class _Buffer(threading.local):
    """One reusable read buffer per thread (Dask workers run tasks in threads)."""

    def __init__(self) -> None:
        self.data = bytearray(SMALL_FILE_BYTES + 1)
        self.view = memoryview(self.data)


_buffer = _Buffer()


def load_small(path: str) -> tuple[SmallTable | None, int]:
    """The table in the file at ``path`` and its size in bytes, from one ``read`` into a
    reused buffer and one C decode; ``(None, size)`` when it is not plainly valid,
    ``(None, -1)`` when it cannot be read or is larger than :data:`SMALL_FILE_BYTES`.
    """
    if _msgpack is None:
        return None, -1
    buffer = _buffer
    try:  # non-blocking: a FIFO must not wait for a writer (regular files ignore it)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None, -1
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, -1
        size = os.readv(fd, [buffer.data])  # one byte more than a small file can have
    except OSError:
        return None, -1
    finally:
        os.close(fd)
    if size > SMALL_FILE_BYTES:
        return None, -1
    return unpack_table(buffer.view[:size]), size


def unpack_table(data: bytes | memoryview) -> SmallTable | None:
    """The table in ``data`` (a whole ``.refl`` file), or ``None`` if not plainly valid."""
    if _msgpack is None or not data:
        return None
    try:
        value = _msgpack.unpackb(
            data, raw=False, strict_map_key=False, object_pairs_hook=_Map, use_list=True
        )
    except Exception:  # noqa: BLE001 - any decoder complaint: the walker explains it
        return None
    try:
        return _checked(value, len(data))
    except (TypeError, ValueError):  # a column of another shape (see _checked)
        return None


def _is_int(value: Any) -> bool:
    return type(value) is int  # not bool, which msgpack also decodes


class _Map(tuple):
    """A decoded msgpack map: its (key, value) pairs in order, duplicates kept (arrays
    decode as lists, so the two are told apart by type)."""


def _is_map(value: Any) -> bool:
    return type(value) is _Map


#: Strings this long (in characters) are within MAX_STR bytes whatever their encoding.
_SHORT = MAX_STR // 4


def _checked(value: Any, size: int) -> SmallTable | None:
    if type(value) is not list or len(value) != 3:
        return None
    magic, version, header = value
    if magic != MAGIC or not _is_int(version) or version not in SUPPORTED_VERSIONS:
        return None
    if not _is_map(header) or len(header) > _MAX_HEADER_KEYS:
        return None
    nrows, identifiers, columns = -1, {}, None
    for key, item in header:
        if key == "identifiers":
            if not _is_map(item) or len(item) > MAX_IDENTIFIERS:
                return None
            identifiers = dict(item)
            if not all(map(_is_int, identifiers)):
                return None
            if not all(type(name) is str for name in identifiers.values()):
                return None
        elif key == "nrows":
            if not _is_int(item) or item < 0:
                return None
            nrows = item
        elif key == "data":
            if not _is_map(item) or len(item) > MAX_COLUMNS:
                return None
            columns = item
        else:
            return None
    if nrows < 0 or columns is None:
        return None
    if not columns and nrows > size:
        return None
    # name: [type, [count, payload]]; a column or body of another length or kind fails
    # the unpacking (ValueError, TypeError) or the type checks below (a map decodes as
    # pairs, so its items are tuples, never str, int or bytes)
    data = {}
    for name, (type_name, (count, payload)) in columns:
        if (
            type(payload) is not bytes
            or type(count) is not int
            or count != nrows
            or type(name) is not str
            or type(type_name) is not str
        ):
            return None
        data[name] = (type_name, payload)
    if len(data) != len(columns):
        return None  # a duplicate column
    if size > _SHORT and not _short_strings(data, identifiers):
        return None
    return SmallTable(nrows, identifiers, data)


def _short_strings(data: dict, identifiers: dict) -> bool:
    """Every string within the walker's MAX_STR bytes (only a large file can fail)."""
    strings = [*data, *(t for t, _p in data.values()), *identifiers.values()]
    return all(len(s) <= _SHORT or len(s.encode("utf-8")) <= MAX_STR for s in strings)
