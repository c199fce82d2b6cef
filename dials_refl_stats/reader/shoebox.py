"""The ``Shoebox<>`` column: layout v1/v2, vectorised record scanning, ragged arrays.

Layout (``reflection_table_msgpack_adapter.h``): one ``bin`` holding, per row::

    u32 panel | 6 x i32 bbox (x0, x1, y0, y1, z0, z1) | u8 flag | payload

``flag`` 0: no pixels. 1 (DIALS <= 3.28, file version 1): ``float32 data[n]``,
``int32 mask[n]``, ``float32 background[n]``; 2 (DIALS >= 3.29): the same with a
``uint8`` mask; ``n = (z1-z0)(y1-y0)(x1-x0)``, C order (z, y, x).

Records are variable-length, so their offsets form a chain. They are found without a
Python loop per row: sizes are *predicted* from the table's ``bbox`` column (usually the
shoebox bbox) and the flag of the previous record, and the headers at the predicted
offsets are checked in one vectorised step (a header whose flag is the expected one and
whose bbox bytes equal the table's has the predicted size, so the next offset is right).
At a mismatch (e.g. shoeboxes allocated for some rows only) the true header is read, the
prediction restarts from there with a small, doubling window; files where prediction
keeps failing are walked record by record (the last resort). The column is read in
windows of ``chunk_bytes`` into two reusable buffers (``preadv``; or memory-mapped with
``MADV_DONTNEED`` after each window if ``USE_MMAP``). A helper thread reads window i+1,
at the offset the predictions give (checked once window i is parsed; reread on a miss),
while this thread parses window i and the caller processes it. The resident memory
stays bounded whatever the file size.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .errors import ReflectionFileError
from .mask_counts import Scratch, block_mask_counts
from .msgpack_layout import ColumnSpan

HEADER_BYTES = 29
_HEADER = struct.Struct("<I6iB")
HEADER_DTYPE = np.dtype([("panel", "<u4"), ("bbox", "<i4", (6,)), ("flag", "u1")])
#: Map the file instead of reading windows with ``preadv``. Measured no faster on the
#: benchmark (page faults cost what the copy saves), and a file truncated by another
#: process while mapped would kill us with SIGBUS, so reading is the default.
USE_MMAP = False
#: Smallest window for which a helper thread reads ahead (smaller: all in this thread).
THREAD_MIN_WINDOW = 1 << 20
_POPULATE = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform.startswith("linux") else 0)


@dataclass
class RowBlock:
    """Headers of consecutive rows ``row0 .. row0+len-1`` inside one window."""

    row0: int
    start: np.ndarray  # int64, record offsets relative to the window
    panel: np.ndarray  # uint32
    bbox: np.ndarray  # (k, 6) int32
    flag: np.ndarray  # uint8
    npix: np.ndarray  # int64, 0 where flag == 0

    def __len__(self) -> int:
        return len(self.start)

    @property
    def mask_start(self) -> np.ndarray:
        return self.start + HEADER_BYTES + 4 * self.npix

    @property
    def mask_width(self) -> np.ndarray:
        return np.where(self.flag == 2, 1, 4)


def record_size(npix: np.ndarray, flag: int | np.ndarray) -> np.ndarray:
    """Bytes of each record given its pixel count and flag (0, 1 or 2)."""
    per_pixel = np.where(flag == 2, 9, 12) * (np.asarray(flag) != 0)
    return HEADER_BYTES + npix * per_pixel


@dataclass
class Prediction:
    """Record sizes predicted from the table's ``bbox`` column, and what checks them.

    A header at a predicted offset is accepted when its flag is the expected one and
    its bbox equals the table's, byte for byte, on a row whose table bbox is ``exact``
    (extents >= 0 and a pixel count that fits in the column): its pixel count, hence
    the record size, is then the predicted one.
    """

    npix: np.ndarray  # int64, clipped to the column size
    bbox: np.ndarray  # (n, 6) little-endian int32
    bbox_bytes: np.ndarray  # the same rows as S24 items
    exact: np.ndarray  # bool


_EXTENT_CAP = 1 << 21


def predict(bbox: np.ndarray, limit: int) -> Prediction:
    """:class:`Prediction` from a table ``bbox`` column, for a column of ``limit`` bytes.

    Extents are clipped to [0, 2**21] so that the int64 product cannot overflow.
    """
    table = np.ascontiguousarray(bbox, dtype="<i4")
    ext = [np.subtract(table[:, 2 * i + 1], table[:, 2 * i], dtype=np.int64) for i in range(3)]
    smallest = np.minimum(np.minimum(ext[0], ext[1]), ext[2])
    largest = np.maximum(np.maximum(ext[0], ext[1]), ext[2])
    exact = (smallest >= 0) & (largest <= _EXTENT_CAP)
    for e in ext:
        np.clip(e, 0, _EXTENT_CAP, out=e)
    n = ext[0] * ext[1]
    n *= ext[2]
    exact &= n <= limit
    np.minimum(n, limit + 1, out=n)
    return Prediction(n, table, table.view("S24").reshape(-1), exact)


def _items(buf: np.ndarray, dtype: str, offset: int = 0) -> np.ndarray:
    """Every byte position of ``buf`` (from ``offset``) seen as the start of a ``dtype``."""
    dt = np.dtype(dtype)
    n = len(buf) - offset - dt.itemsize + 1
    return np.ndarray((max(n, 0),), dt, buffer=buf, offset=offset, strides=(1,))


class _Fail:
    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name

    def __call__(self, problem: str) -> ReflectionFileError:
        return ReflectionFileError(self.path, f"column '{self.name}': {problem}")


def _header_arrays(
    h: np.ndarray, row0: int, limit: int, fail: _Fail
) -> tuple[np.ndarray, np.ndarray]:
    """Validate gathered headers; return (flag, npix) with npix 0 where unallocated."""
    flag = h["flag"]
    bad = flag > 2
    if bad.any():
        i = int(np.argmax(bad))
        raise fail(f"row {row0 + i}: invalid shoebox flag {int(flag[i])}")
    bbox = h["bbox"]
    ext = bbox[:, 1::2].astype(np.int64) - bbox[:, 0::2]
    neg = (ext < 0).any(axis=1)
    if neg.any():
        i = int(np.argmax(neg))
        raise fail(f"row {row0 + i}: invalid bounding box {bbox[i].tolist()}")
    alloc = flag != 0
    size_f = ext[:, 0].astype(np.float64) * ext[:, 1] * ext[:, 2]
    huge = alloc & (size_f * 9 > limit)
    if huge.any():
        i = int(np.argmax(huge))
        raise fail(
            f"truncated file (row {row0 + i} needs {int(size_f[i] * 9)} bytes, column has {limit})"
        )
    npix = np.where(alloc, ext[:, 0] * ext[:, 1] * ext[:, 2], 0)
    return flag, npix


class _ScanState:
    def __init__(self, first_flag: int) -> None:
        self.f_pred = first_flag
        self.window = 4096
        self.misses = 0
        self.seq_left = 0


def _gather(buf: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Headers at ``starts`` (each 29 bytes inside ``buf``) as a structured array."""
    return _items(buf, f"S{HEADER_BYTES}")[starts].view(HEADER_DTYPE)


def _seq_record(buf: np.ndarray, local: int, row: int, limit: int, fail: _Fail) -> tuple:
    """Decode one header with ``struct``: (panel, bbox, flag, npix, record bytes)."""
    panel, x0, x1, y0, y1, z0, z1, flag = _HEADER.unpack_from(buf, local)
    if flag > 2:
        raise fail(f"row {row}: invalid shoebox flag {flag}")
    nx, ny, nz = x1 - x0, y1 - y0, z1 - z0
    if nx < 0 or ny < 0 or nz < 0:
        raise fail(f"row {row}: invalid bounding box {[x0, x1, y0, y1, z0, z1]}")
    npix = nx * ny * nz if flag else 0
    rec = HEADER_BYTES + npix * (12 if flag == 1 else 9)
    if rec > limit:
        raise fail(f"truncated file (row {row} needs {rec} bytes, column has {limit})")
    return panel, (x0, x1, y0, y1, z0, z1), flag, npix, rec


def _flush(seq: list[tuple], parts: list) -> None:
    """Move sequentially decoded rows into ``parts`` as arrays."""
    if not seq:
        return
    starts = np.array([r[0] for r in seq], dtype=np.int64)
    panel = np.array([r[1] for r in seq], dtype=np.uint32)
    bbox = np.array([r[2] for r in seq], dtype=np.int32).reshape(-1, 6)
    flag = np.array([r[3] for r in seq], dtype=np.uint8)
    npix = np.array([r[4] for r in seq], dtype=np.int64)
    parts.append((starts, panel, bbox, flag, npix))
    seq.clear()


def _parse_window(
    buf: np.ndarray,
    row: int,
    nrows: int,
    pred: Prediction | None,
    st: _ScanState,
    limit: int,
    fail: _Fail,
) -> tuple[RowBlock, int]:
    """Parse the complete records at the start of ``buf``; return block and bytes used."""
    size = len(buf)
    row0, local = row, 0
    parts: list[tuple[np.ndarray, ...]] = []
    seq: list[tuple] = []
    while row < nrows:
        if pred is not None and st.seq_left == 0:
            k = min(st.window, nrows - row)
            pn = pred.npix[row : row + k]
            sz = record_size(pn, st.f_pred)
            ends = local + np.cumsum(sz)
            fit = int(np.searchsorted(ends, size, side="right"))
            if fit:
                s = ends[:fit] - sz[:fit]
                flag = buf[s + (HEADER_BYTES - 1)]
                ok = (flag == st.f_pred) & pred.exact[row : row + fit]
                ok &= _items(buf, "S24", 4)[s] == pred.bbox_bytes[row : row + fit]
                good = fit if ok.all() else int(np.argmin(ok))
                if good:
                    # Accepted rows are valid: flag in {0, 1, 2}, the table's bbox
                    # (extents >= 0), and the predicted (= actual) sizes fit the window.
                    _flush(seq, parts)
                    npix = pn[:good] if st.f_pred else np.zeros(good, np.int64)
                    panel = _items(buf, "<u4")[s[:good]]
                    parts.append((s[:good], panel, pred.bbox[row : row + good], flag[:good], npix))
                    local = int(ends[good - 1])
                    row += good
                if good == fit:
                    if fit < k:
                        # The window is full; size the next prediction to what fits.
                        st.window = max(1024, 2 * (row - row0))
                        break
                    st.window = min(st.window * 4, 1 << 20)
                    st.misses = 0
                    continue
                st.window = 16
                st.misses += good == 0
                if st.misses > 8:
                    st.seq_left, st.misses = 1024, 0
        # One record from its own header (mismatch, no prediction, or sequential mode).
        if row >= nrows or local + HEADER_BYTES > size:
            break
        one = _seq_record(buf, local, row, limit, fail)
        if local + one[-1] > size:
            break
        seq.append((local,) + one[:-1])
        local += one[-1]
        row += 1
        st.f_pred = one[2]
        st.seq_left = max(0, st.seq_left - 1)
        if len(seq) >= 4096 or st.seq_left == 0:
            _flush(seq, parts)
    _flush(seq, parts)
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return (
            RowBlock(
                row0,
                empty,
                empty.astype(np.uint32),
                np.zeros((0, 6), np.int32),
                empty.astype(np.uint8),
                empty,
            ),
            0,
        )
    if len(parts) == 1:
        starts, panel, bbox, flag, npix = parts[0]
    else:
        starts, panel, bbox, flag, npix = (np.concatenate([p[i] for p in parts]) for i in range(5))
    block = RowBlock(row0=row0, start=starts, panel=panel, bbox=bbox, flag=flag, npix=npix)
    return block, local


def _pread_into(fd: int, buf: np.ndarray, offset: int) -> None:
    """Fill ``buf`` from ``fd`` at ``offset`` (releases the GIL while copying)."""
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise EOFError(f"file ended {len(view) - done} bytes early")
        done += got


class _Done:
    """A finished 'future' for the synchronous path."""

    def __init__(self, fn, *args) -> None:
        self._value = fn(*args)

    def result(self):
        return self._value


def _submit(pool: ThreadPoolExecutor | None, fn, *args):
    return _Done(fn, *args) if pool is None else pool.submit(fn, *args)


class ShoeboxScan:
    """Iterate over a ``Shoebox<>`` column window by window.

    Windows are read with ``preadv`` into two reusable buffers; the next window is read
    by a helper thread while the caller works on the current one. The caller may
    overwrite a window's bytes (it is not used again).
    """

    def __init__(
        self,
        path: str,
        fileno: int,
        span: ColumnSpan,
        nrows: int,
        bbox: np.ndarray | None = None,
        chunk_bytes: int = 4 << 20,
    ) -> None:
        self.path, self.span, self.nrows = path, span, nrows
        self.fail = _Fail(path, span.name)
        self.chunk = max(int(chunk_bytes), 1 << 12)
        if span.nbytes < HEADER_BYTES * nrows:
            raise self.fail(
                f"truncated file (needs at least {HEADER_BYTES * nrows} bytes "
                f"for {nrows} rows, has {span.nbytes})"
            )
        # Predicted pixel counts: computed in windows(), while the first window is read.
        self.bbox = bbox if bbox is not None and len(bbox) == nrows else None
        self.pred: Prediction | None = None
        self.fileno = fileno
        self.mm: mmap.mmap | None = None

    def _read(self, pos: int, length: int, buf: np.ndarray | None = None) -> np.ndarray:
        """Bytes ``[pos, pos + length)`` of the column: a read-only view of the memory
        map, or read into ``buf`` (or a new array) when the file cannot be mapped."""
        start = self.span.offset + pos
        if self.mm is not None:
            if start + length > len(self.mm):
                raise self.fail("truncated file (the file shrank while being read)")
            if _POPULATE and length >= 1 << 20:
                try:  # map the window's pages in one call instead of one fault each
                    lo = start - start % mmap.PAGESIZE
                    self.mm.madvise(_POPULATE, lo, start + length - lo)
                except OSError:
                    pass
            return np.frombuffer(self.mm, np.uint8, length, start)
        buf = np.empty(length, np.uint8) if buf is None else buf[:length]
        try:
            _pread_into(self.fileno, buf, start)
        except (OSError, EOFError) as exc:
            raise self.fail(f"read error ({exc})") from None
        return buf

    def _release(self, start: int, stop: int) -> None:
        """Drop the mapped pages of ``[start, stop)`` (column offsets) from our RSS."""
        if self.mm is None:
            return
        page = mmap.PAGESIZE
        lo = self.span.offset + start
        lo -= lo % page
        hi = self.span.offset + stop
        hi -= hi % page
        if hi > lo:
            self.mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def windows(self) -> Iterator[tuple[np.ndarray, RowBlock]]:
        """Yield ``(window bytes, headers of the rows complete in it)``."""
        total, nrows = self.span.nbytes, self.nrows
        if nrows == 0:
            if total:
                raise self.fail(f"{total} bytes of shoebox data for 0 rows")
            return
        size = min(self.chunk, total)
        self.mm = None
        if USE_MMAP:  # page-cache pages mapped, not copied; released window by window
            try:
                self.mm = mmap.mmap(self.fileno, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                self.mm = None
        if self.mm is not None:
            bufs = [np.empty(size, np.uint8)] * 2  # only their lengths are used
        else:
            bufs = [np.empty(size, np.uint8), np.empty(size, np.uint8)]
        state = _ScanState(-1)
        # A helper thread reads window i+1 while this thread parses window i and the
        # caller processes it; worth it only for large windows (hand-offs cost ~0.1 ms).
        pool = ThreadPoolExecutor(max_workers=1) if THREAD_MIN_WINDOW <= size < total else None
        plan: np.ndarray | None = None
        try:
            pos, row, cur = 0, 0, 0
            pending = _submit(pool, self._read_window, bufs[0], 0, 0)
            ahead = (0, 0)
            if self.bbox is not None:
                self.pred = predict(self.bbox, total)
            while row < nrows:
                try:
                    buf = pending.result()
                except ReflectionFileError:
                    if ahead == (pos, row):
                        raise
                if ahead != (pos, row):  # the read-ahead guessed wrong: read here
                    buf = self._read_window(bufs[cur], pos, row)
                if state.f_pred < 0:
                    state.f_pred = int(buf[HEADER_BYTES - 1]) % 3
                    plan = self._plan(state.f_pred)
                block, used = _parse_window(buf, row, nrows, self.pred, state, total, self.fail)
                if not len(block):
                    buf, block, used = self._big_record(buf, pos, row, state)
                nxt, row_next = pos + used, row + len(block)
                if row_next < nrows:
                    ahead = (nxt, row_next)
                    if pool is not None:
                        # Guess where the next window starts from the predicted record
                        # sizes, so that it is read while this one is being parsed.
                        ahead = self._guess_next(plan, pos, row, len(buf), nxt, row_next)
                    pending = _submit(pool, self._read_window, bufs[1 - cur], *ahead)
                yield buf, block
                del buf
                self._release(pos, nxt)
                pos, row, cur = nxt, row_next, 1 - cur
            if pos != total:
                raise self.fail(f"{total - pos} unexpected bytes after the last shoebox")
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            if self.mm is not None:
                try:
                    self.mm.close()
                except BufferError:  # a caller still holds a view: the GC closes it
                    pass
                self.mm = None

    def _plan(self, first_flag: int) -> np.ndarray | None:
        """Predicted column offset of every row's record (``nrows + 1`` values)."""
        if self.pred is None:
            return None
        plan = np.zeros(self.nrows + 1, np.int64)
        np.cumsum(record_size(self.pred.npix, first_flag), out=plan[1:])
        return plan

    def _guess_next(
        self, plan: np.ndarray | None, pos: int, row: int, length: int, nxt: int, row_next: int
    ) -> tuple[int, int]:
        """``(offset, row)`` of the window after ``[pos, pos + length)``, as predicted.

        The answer is known once the window is parsed (``nxt``, ``row_next``); the guess
        lets the next read start before that. The caller checks it and rereads on a miss.
        """
        if plan is None:
            return nxt, row_next
        r = int(np.searchsorted(plan, plan[row] + length, side="right")) - 1
        if r <= row or r >= self.nrows:
            return nxt, row_next
        return pos + int(plan[r] - plan[row]), r

    def _read_window(self, buf: np.ndarray, pos: int, row: int) -> np.ndarray:
        """The window of column bytes starting at ``pos`` (at most ``len(buf)``)."""
        left = self.span.nbytes - pos
        if left < HEADER_BYTES:
            raise self.fail(f"truncated file (shoebox data ends at row {row} of {self.nrows})")
        return self._read(pos, min(len(buf), left), buf)

    def _big_record(
        self, buf: np.ndarray, pos: int, row: int, state: _ScanState
    ) -> tuple[np.ndarray, RowBlock, int]:
        """A record that does not fit in a window: read it alone."""
        left = self.span.nbytes - pos
        if len(buf) < HEADER_BYTES:
            raise self.fail(f"truncated file (row {row} header needs 29 bytes)")
        h = _gather(buf, np.zeros(1, dtype=np.int64))
        flag, npix = _header_arrays(h, row, self.span.nbytes, self.fail)
        rec = int(record_size(npix, flag)[0])
        if rec > left:
            raise self.fail(f"truncated file (row {row} needs {rec} bytes, {left} left)")
        big = self._read(pos, rec)
        block, used = _parse_window(big, row, row + 1, None, state, self.span.nbytes, self.fail)
        return big, block, used


# --- many small columns at once -------------------------------------------------------


def joined_mask_counts(
    payloads: list[bytes], bbox: np.ndarray | None, nrows: list[int], code: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per row of several ``Shoebox<>`` columns (of small files) in one scan: pixels whose
    mask has all bits of ``code``, and whether pixels are allocated.

    Records never span columns, so the joined payloads are one valid record chain; the
    tables' joined ``bbox`` columns (``None``: unknown) predict it. ``None`` when any
    column's records do not end exactly at its end (a damaged file): the caller then
    reads the files one by one, which names the problem.
    """
    total_rows = sum(nrows)
    lengths = np.fromiter((len(p) for p in payloads), np.int64, len(payloads))
    length = int(lengths.sum())
    if total_rows == 0 or length < HEADER_BYTES * total_rows:
        return None
    padding = bytes((-length) % 8 + 8)
    buf = np.frombuffer(bytearray().join([*payloads, padding]), np.uint8)
    if bbox is None:
        bbox = np.zeros((total_rows, 6), "<i4")
    row_start = np.zeros(len(nrows) + 1, np.int64)
    np.cumsum(nrows, out=row_start[1:])
    state = _ScanState(int(buf[HEADER_BYTES - 1]) % 3)
    fail = _Fail("", "shoebox")
    try:
        block, used = _parse_window(
            buf[: length + 8], 0, total_rows, predict(bbox, length), state, length, fail
        )
    except ReflectionFileError:
        return None
    byte_start = np.zeros(len(nrows), np.int64)
    np.cumsum(lengths[:-1], out=byte_start[1:])
    has_rows = np.asarray(nrows) > 0
    if (
        used != length
        or len(block) != total_rows
        or not np.array_equal(block.start[row_start[:-1][has_rows]], byte_start[has_rows])
        or (lengths[~has_rows] != 0).any()
    ):
        return None
    counts = block_mask_counts(buf, block, code, True, Scratch())
    return counts, block.npix > 0
