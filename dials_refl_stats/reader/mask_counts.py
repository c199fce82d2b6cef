"""Shoebox mask pixels counted per record in a window of ``Shoebox<>`` records, and the
records' ragged byte ranges gathered, with reusable scratch buffers.

Masks are counted without a Python loop per row: the window is and-ed with the mask
code once and each mask's words summed by one ``add.reduceat`` (int32 masks, file
version 1: byte lanes of 64-bit words; uint8 masks, version 2: whole words); see
:func:`block_mask_counts` (DIALS's ``count_mask_values``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .shoebox import RowBlock

#: Zeroed bytes after a window's end in the scratch buffers (word-wise reads run past).
_PAD = 64


class Scratch:
    """Reusable scratch buffers (faulted in once, not per window)."""

    def __init__(self) -> None:
        self.tmp = np.zeros(0, np.uint8)
        self.hit = np.zeros(0, np.bool_)

    def ensure_hit(self, n: int) -> None:
        if len(self.hit) < n + _PAD:
            self.hit = np.zeros(n + _PAD, np.bool_)

    def ensure(self, n: int) -> None:
        need = n + _PAD
        if len(self.tmp) < need:
            self.tmp = np.zeros(need, np.uint8)
            self.hit = np.zeros(need, np.bool_)


def _range_sums(words: np.ndarray, j0: np.ndarray, j1: np.ndarray) -> np.ndarray:
    """Sums (wrapping) of ``words[j0:j1]``, for ranges in order (each non-empty one
    ends at or before the next one starts: masks in record order, or the adjacent
    pieces of one), by one ``add.reduceat`` over their bounds: a read-only pass that
    leaves the words as they are (an in-place prefix sum took as long on stills' short
    masks, ~0.7 ms per 4 MB, but needed the words' first range to start past word 0)."""
    sums = np.zeros(len(j0), dtype=words.dtype)
    nonempty = j0 < j1
    if not nonempty.any():
        return sums
    bounds = np.empty(2 * int(nonempty.sum()), dtype=np.int64)
    bounds[0::2], bounds[1::2] = j0[nonempty], j1[nonempty]
    if bounds[-1] == len(words):  # the last range runs to the end (no other can)
        bounds = bounds[:-1]
    sums[nonempty] = np.add.reduceat(words, bounds)[0::2]
    return sums


def _lane_pair(d: np.ndarray, lane: np.ndarray) -> np.ndarray:
    """Byte lanes ``lane`` and ``lane + 4`` of each word of ``d``, added (int64)."""
    shift = (lane << 3).astype(np.uint64)
    low = np.right_shift(d, shift) & np.uint64(0xFF)
    high = np.right_shift(d, shift + np.uint64(32)) & np.uint64(0xFF)
    return (low + high).astype(np.int64)


def _pieces(j0: np.ndarray, j1: np.ndarray, cap: int):
    """Cut word ranges longer than ``cap`` into pieces: (row of piece, p0, p1, firsts)."""
    pieces = np.maximum((j1 - j0 + cap - 1) // cap, 1)
    row = np.repeat(np.arange(len(j0)), pieces)
    first = np.cumsum(pieces) - pieces
    p0 = j0[row] + cap * (np.arange(len(row)) - first[row])
    return row, p0, np.minimum(p0 + cap, j1[row]), first


def _counts_stride4(
    flat: np.ndarray, length: int, s: np.ndarray, n: np.ndarray, unit: int = 1
) -> np.ndarray:
    """Hits (bytes 0 or ``unit``) at ``s + 4t``, t < n, per row.

    Words ``[s // 8, (e + 4) // 8)`` (e = s + 4n) are summed over byte lanes ``s % 4``
    and ``s % 4 + 4`` (64-bit words summed per range); the at most two extra
    positions this includes (``s - 4`` and ``e``) are subtracted. A lane holds 255
    without carrying, so ranges over ``255 // unit`` words are cut into pieces.
    Needs ``n >= 1``, ``s >= 29`` and ``e < length`` (a v1 record: mask, then background).
    """
    cap = 255 // unit
    e = s + 4 * n
    ja = s >> 3
    jb = (e + 4) >> 3
    extra = flat[s - 4] * ((s >> 2) & 1) + flat[e] * ((e >> 2) & 1)
    words = flat[: 8 * ((length + 7) // 8)].view(np.uint64)
    r = s & 3
    out = _lane_pair(_range_sums(words, ja, jb), r)
    long = np.flatnonzero((jb - ja) > cap)
    if len(long):
        row, p0, p1, first = _pieces(ja[long], jb[long], cap)
        per = _lane_pair(_range_sums(words, p0, p1), r[long][row])
        out[long] = np.add.reduceat(per, first)
    out -= extra
    return out // unit if unit != 1 else out


def _counts_contiguous(
    flat: np.ndarray, length: int, s: np.ndarray, n: np.ndarray, unit: int = 1
) -> np.ndarray:
    """Hits (bytes 0 or ``unit``) in ``[s, s + n)`` per row."""
    e = s + n
    j0 = (s + 7) >> 3
    j1 = np.maximum(e >> 3, j0)
    out = np.zeros(len(s), dtype=np.int64)
    head_end = np.minimum(8 * j0, e)
    tail = 8 * j1
    for t in range(8):  # partial words at both ends, byte by byte
        pos = s + t
        out += np.where(pos < head_end, flat[np.minimum(pos, len(flat) - 1)], 0)
        pos = tail + t
        out += np.where(pos < e, flat[np.minimum(pos, len(flat) - 1)], 0)
    words = flat[: 8 * ((length + 7) // 8)].view(np.uint64)
    row, p0, p1, first = _pieces(j0, j1, 255 // unit)
    per = _range_sums(words, p0, p1).view(np.uint8).reshape(-1, 8).sum(axis=1, dtype=np.int64)
    out += np.add.reduceat(per, first)
    return out // unit if unit != 1 else out


def segment_counts(
    hit: np.ndarray, length: int, s: np.ndarray, n: np.ndarray, w: int, unit: int = 1
) -> np.ndarray:
    """Count the ``unit`` bytes of ``hit`` (others 0) at ``s + w*t`` (t < n) per row.

    ``hit`` must be zero from ``length`` up to the next multiple of 8 and readable
    there. ``s >= 29`` (every mask follows a record header).
    """
    if not len(s):
        return np.zeros(0, dtype=np.int64)
    flat = hit.view(np.uint8)
    if w == 4:
        return _counts_stride4(flat, length, s, n, unit)
    return _counts_contiguous(flat, length, s, n, unit)


def block_mask_counts(
    buf: np.ndarray, block: RowBlock, code: int, all_bits: bool, work: Scratch
) -> np.ndarray:
    """Per-row number of mask pixels matching ``code`` (DIALS ``count_mask_values``).

    ``buf`` (the window) may be overwritten if it is writeable.
    """
    out = np.zeros(len(block), dtype=np.int64)
    alloc = block.npix > 0
    if code == 0:
        if all_bits:
            out[alloc] = block.npix[alloc]
        return out
    length = len(buf)
    ms = block.mask_start
    flags = block.flag[alloc]
    kind = int(flags[0]) if len(flags) and flags.min() == flags.max() else 0
    c8 = code & 0xFF
    if (
        kind
        and length % 8 == 0
        and 0 < c8 <= 16
        and c8 & (c8 - 1) == 0
        and (kind == 2 or c8 == code)
    ):
        # One bit, one record kind: count the and-ed window in place, in units of c8
        # (64-bit words summed per mask: one pass to and, one to read).
        if all_bits and code & ~0xFF:
            return out  # only reachable for uint8 masks: never matches
        every = len(flags) == len(out)
        rows = slice(None) if every else np.flatnonzero(alloc)
        if buf.flags.writeable and length % 8 == 0:
            target = buf
        else:  # a read-only (memory-mapped) window: and-ed into the scratch buffer
            work.ensure_hit(length)
            target = work.hit.view(np.uint8)
            target[length : length + 8] = 0
        np.bitwise_and(buf, np.uint8(c8), out=target[:length])
        w = 4 if kind == 1 else 1
        out[rows] = segment_counts(target, length, ms[rows], block.npix[rows], w, c8)
        return out
    for flag in (1, 2):
        rows = np.flatnonzero(alloc & (block.flag == flag))
        if not len(rows):
            continue
        w = 4 if flag == 1 else 1
        if flag == 2 or 0 <= code <= 0xFF:
            c8 = code & 0xFF
            if (all_bits and code & ~0xFF) or c8 == 0:
                continue  # a uint8 mask can never match
            work.ensure(length)
            hit = work.hit
            src = work.tmp[:length]
            np.bitwise_and(buf, np.uint8(c8), out=src)
            if c8 & (c8 - 1) == 0:  # one bit: shift it down to 0/1
                np.right_shift(src, np.uint8(c8.bit_length() - 1), out=hit.view(np.uint8)[:length])
            elif all_bits:
                np.equal(src, np.uint8(c8), out=hit[:length])
            else:
                np.not_equal(src, 0, out=hit[:length])
            hit[length:] = False
            out[rows] = segment_counts(hit, length, ms[rows], block.npix[rows], w)
        else:  # int32 masks, a code beyond the low byte: one int32 view per phase
            work.ensure(length)
            for r in range(4):
                sub = rows[ms[rows] % 4 == r]
                if not len(sub):
                    continue
                m = (length - r) // 4
                vals = buf[r : r + 4 * m].view("<i4")
                tmpi = work.tmp[: 4 * m].view(np.int32)
                np.bitwise_and(vals, np.int32(code), out=tmpi)
                hit = work.hit
                if all_bits:
                    np.equal(tmpi, np.int32(code), out=hit[:m])
                else:
                    np.not_equal(tmpi, 0, out=hit[:m])
                hit[m:] = False
                # in word units the mask is contiguous; its start is >= 29 // 4 = 7
                out[sub] = _counts_contiguous(
                    hit.view(np.uint8), m, (ms[sub] - r) // 4, block.npix[sub]
                )
    return out


def gather_segments(
    buf: np.ndarray, starts: np.ndarray, nbytes: np.ndarray, work: Scratch
) -> np.ndarray:
    """Concatenate the byte ranges ``[starts, starts+nbytes)`` of ``buf`` (in order)."""
    keep = nbytes > 0
    starts, nbytes = starts[keep], nbytes[keep]
    if not len(starts):
        return np.zeros(0, np.uint8)
    length = len(buf)
    work.ensure(length + 1)
    marks = work.tmp[: length + 1].view(np.int8)
    marks[:] = 0
    marks[starts] = 1
    marks[starts + nbytes] -= 1
    np.cumsum(marks, dtype=np.int8, out=marks)
    return buf[marks[:length].view(np.bool_)]
