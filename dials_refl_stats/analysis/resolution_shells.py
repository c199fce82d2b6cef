"""Reflections counted in resolution shells equal in ``1/d^2``, exactly and fast.

Pure numpy, no I/O. The definition (:func:`_shell_counts_by_rows`): ``1/d^2`` of every
row, its shell by ``searchsorted`` on the edges. On 10^7 rows (the selected rows of 10^5
stills, counted by the driver after the run) the counts come instead from a table
indexed by the bits of d, built with the definition itself: the same counts, ~5x faster
(see the comment above :func:`_inv_d2_of_bits` for why they are the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class ResolutionShells:
    """Counts of all and of strong reflections in shells equal in ``1/d^2``.

    ``inv_d2_edges`` is ``None`` when no row has a usable d (then every count is 0).
    """

    n_shells: int
    inv_d2_edges: np.ndarray | None
    n_all: np.ndarray
    n_strong: np.ndarray
    n_without_d: int
    n_outside: int
    n_strong_outside: int

    @property
    def d_edges(self) -> np.ndarray | None:
        if self.inv_d2_edges is None:
            return None
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(self.inv_d2_edges)

    @property
    def strong_fraction(self) -> list[float | None]:
        return [float(s) / float(a) if a else None for s, a in zip(self.n_strong, self.n_all)]

    def as_dict(self) -> dict:
        d_edges = self.d_edges
        return {
            "n_shells": self.n_shells,
            "binning": "equal in 1/d^2",
            "inv_d2_edges": self.inv_d2_edges,
            "d_edges": d_edges,
            "d_max": None if d_edges is None else d_edges[0],
            "d_min": None if d_edges is None else d_edges[-1],
            "n_all": self.n_all,
            "n_strong": self.n_strong,
            "strong_fraction": self.strong_fraction,
            "n_without_d": self.n_without_d,
            "n_outside": self.n_outside,
            "n_strong_outside": self.n_strong_outside,
        }


def resolution_shells(
    d: np.ndarray,
    strong: np.ndarray,
    n_shells: int = 10,
    d_min: float | None = None,
    d_max: float | None = None,
) -> ResolutionShells:
    """Count all and strong rows per shell equal in ``1/d^2``.

    The range is ``[1/d_max^2, 1/d_min^2]``; a missing bound comes from the rows with a
    positive ``d`` whose ``1/d^2`` is finite. Rows without one are counted in
    ``n_without_d``. The counts are those of :func:`_resolution_shells_by_rows` (the
    definition), found without ``1/d^2`` per row.
    """
    if n_shells < 1:
        raise ValueError(f"n_shells must be at least 1 (got {n_shells})")
    for name, value in (("d_min", d_min), ("d_max", d_max)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number of Angstrom (got {value})")
    if d_min is not None and d_max is not None and not d_max > d_min:
        raise ValueError(f"d_max ({d_max:g}) must be greater than d_min ({d_min:g})")
    d = np.asarray(d, dtype=np.float64)
    strong = np.asarray(strong, dtype=bool)
    low = 1.0 / d_max**2 if d_max is not None else None
    high = 1.0 / d_min**2 if d_min is not None else None
    if d.size < SHELL_TABLE_MIN_ROWS or d.ndim != 1 or strong.shape != d.shape:
        return _resolution_shells_by_rows(d, strong, n_shells, low, high)  # errors too
    data_range = None
    if low is None or high is None:
        data_range = _usable_inv_d2_range(d)
        if data_range is not None:
            low = data_range[0] if low is None else low
            high = data_range[1] if high is None else high
    if low is None or high is None:  # not one usable d
        return _no_shells(n_shells, d.size)
    edges = _edges(low, high, n_shells)
    # every usable 1/d^2 lies in the data's range: when the edges span it, none is outside
    all_inside = data_range is not None and edges[0] <= data_range[0] <= data_range[1] <= edges[-1]
    counts = _shell_counts(d, strong, edges, all_inside)
    if counts is None:  # edges the table does not handle
        counts = _shell_counts_by_rows(d, strong, edges)
    return ResolutionShells(n_shells, edges, *counts)


def _resolution_shells_by_rows(
    d: np.ndarray,
    strong: np.ndarray,
    n_shells: int,
    low: float | None,
    high: float | None,
) -> ResolutionShells:
    """:func:`resolution_shells` with ``1/d^2`` of every row, twice (the definition)."""
    if low is None or high is None:  # the data's range: a first pass, block by block
        data_low, data_high = math.inf, -math.inf
        for rows in _blocks(d.size):
            inv_d2, _usable = _usable_inv_d2(d[rows])
            if inv_d2.size:
                data_low = min(data_low, float(inv_d2.min()))
                data_high = max(data_high, float(inv_d2.max()))
        if data_low <= data_high:
            low = data_low if low is None else low
            high = data_high if high is None else high
    if low is None or high is None:
        return _no_shells(n_shells, d.size)
    edges = _edges(low, high, n_shells)
    return ResolutionShells(n_shells, edges, *_shell_counts_by_rows(d, strong, edges))


def _edges(low: float, high: float, n_shells: int) -> np.ndarray:
    """The shells' ``1/d^2`` edges (an empty range widened a little)."""
    if not high > low:
        high = low + max(abs(low) * 1e-6, 1e-12)
    return np.linspace(low, high, n_shells + 1)


def _no_shells(n_shells: int, n_rows: int) -> ResolutionShells:
    """No row has a usable d: no edges, every count 0."""
    zeros = np.zeros(n_shells, dtype=np.int64)
    return ResolutionShells(n_shells, None, zeros, zeros.copy(), int(n_rows), 0, 0)


#: Rows per block of :func:`resolution_shells` (a block's temporaries stay in the CPU
#: cache).
SHELL_BLOCK = 1 << 16

#: At most ``2**SHELL_TABLE_BITS`` cells in the table of :func:`_shell_table`.
SHELL_TABLE_BITS = 14

#: Fewer rows are binned row by row (the table costs about 0.5 ms to build).
SHELL_TABLE_MIN_ROWS = 1 << 14

_INF_BITS = int(np.array(np.inf).view(np.int64))
_LARGEST = float(np.finfo(np.float64).max)

#: ``n_all, n_strong, n_without_d, n_outside, n_strong_outside``
ShellCounts = tuple[np.ndarray, np.ndarray, int, int, int]


def _blocks(n: int) -> list[slice]:
    return [slice(start, start + SHELL_BLOCK) for start in range(0, n, SHELL_BLOCK)]


def _inv_d2(d: np.ndarray) -> np.ndarray:
    """``1/d^2`` exactly as every row gets it (``square``, then a rounded division)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return 1.0 / d**2


def _usable_inv_d2(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``1/d^2`` of the rows with a positive ``d`` whose ``1/d^2`` is finite (1e-200 A:
    no shell), and which rows those are."""
    all_inv_d2 = _inv_d2(d)
    usable = np.isfinite(d) & (d > 0) & np.isfinite(all_inv_d2)
    return all_inv_d2[usable], usable


def _shell_counts_by_rows(d: np.ndarray, strong: np.ndarray, edges: np.ndarray) -> ShellCounts:
    """Per-shell counts with ``1/d^2`` of every row and ``searchsorted`` (the definition)."""
    n_shells = edges.size - 1
    n_all = np.zeros(n_shells, dtype=np.int64)
    n_strong = np.zeros(n_shells, dtype=np.int64)
    n_without_d = n_outside = n_strong_outside = 0
    for rows in _blocks(d.size):  # bounded temporaries: 10^7 rows cost no extra GB
        inv_d2, usable = _usable_inv_d2(d[rows])
        strong_usable = strong[rows][usable]
        inside = (inv_d2 >= edges[0]) & (inv_d2 <= edges[-1])
        shell = np.clip(np.searchsorted(edges, inv_d2[inside], side="right") - 1, 0, n_shells - 1)
        n_all += np.bincount(shell, minlength=n_shells)
        n_strong += np.bincount(shell[strong_usable[inside]], minlength=n_shells)
        n_without_d += int(usable.size - inv_d2.size)
        n_outside += int((~inside).sum())
        n_strong_outside += int((strong_usable & ~inside).sum())
    return n_all, n_strong, n_without_d, n_outside, n_strong_outside


# Why the fast paths are exact. For d >= 0 the rounded ``square`` and the rounded ``1/x``
# are both monotone, so ``f(d) = 1/d**2`` (numpy float64, as every row gets it) is
# non-increasing in d, from f(0) = inf to f(inf) = 0; and the doubles >= 0 are ordered as
# their bit patterns. So:
# * a condition ``f(d) >= e`` (``f(d) > e``, ``f(d) == inf``) holds exactly for the d up
#   to some double, which a bisection over the bit patterns finds with f itself;
# * "usable" (finite d > 0, finite f(d)) is ``t <= d <= largest double`` (t about
#   7.5e-155), and "usable and edges[0] <= f(d) <= edges[-1]" is ``low_d <= d <= high_d``;
# * the smallest and largest usable f(d) are f of the largest and smallest usable d;
# * in ``[low_d, high_d]`` a row's shell (searchsorted on sorted edges) is a monotone
#   function of d: the same for every d between two d that have the same shell.


def _inv_d2_of_bits(bits: int) -> np.ndarray:
    return _inv_d2(np.array([bits], dtype=np.int64).view(np.float64))


def _float_of_bits(bits: int) -> float:
    return float(np.array([bits], dtype=np.int64).view(np.float64)[0])


def _bits_of_float(value: float) -> int:
    return int(np.array([value], dtype=np.float64).view(np.int64)[0])


def _last_d_bits(condition: Callable[[np.ndarray], np.ndarray], guess: float = 1.0) -> int:
    """Bit pattern of the largest d in ``[0, inf]`` with ``condition(1/d**2)``, for a
    condition true at d = 0 and (f being monotone) for every d up to the largest: steps
    growing from ``guess`` to a bracket, then bisection."""

    def holds(bits: int) -> bool:
        return bool(condition(_inv_d2_of_bits(bits))[0])

    if holds(_INF_BITS):
        return _INF_BITS
    start = _bits_of_float(guess) if guess >= 0 else 0  # NaN: from 0
    start = min(max(start, 0), _INF_BITS)
    step = 1
    if holds(start):  # up until false (false at inf)
        low = start
        while True:
            high = min(low + step, _INF_BITS)
            if not holds(high):
                break
            low, step = high, 2 * step
    else:  # down until true (true at 0)
        high = start
        while True:
            low = max(high - step, 0)
            if holds(low):
                break
            if low == 0:
                raise AssertionError("the condition does not hold at d = 0")
            high, step = low, 2 * step
    while high - low > 1:  # condition true at low, false at high
        middle = (low + high) // 2
        if holds(middle):
            low = middle
        else:
            high = middle
    return low


@lru_cache(maxsize=None)
def _smallest_usable_d() -> float:
    """The smallest d whose ``1/d**2`` is finite: d is usable exactly when
    ``_smallest_usable_d() <= d <= largest double``."""
    return _float_of_bits(_last_d_bits(lambda v: ~np.isfinite(v)) + 1)


def _usable_inv_d2_range(d: np.ndarray) -> tuple[float, float] | None:
    """The smallest and the largest usable ``1/d^2`` (``None``: no usable d), as f of the
    largest and the smallest usable d: the floats a min/max over every row gives."""
    smallest_usable = _smallest_usable_d()
    smallest, largest = math.inf, -math.inf
    for rows in _blocks(d.size):
        block = d[rows]
        low, high = np.fmin.reduce(block), np.fmax.reduce(block)  # NaN ignored
        if not (low >= smallest_usable and high <= _LARGEST):  # some d are not usable
            block = block[(block >= smallest_usable) & (block <= _LARGEST)]
            if not block.size:
                continue
            low, high = block.min(), block.max()
        smallest, largest = min(smallest, float(low)), max(largest, float(high))
    if smallest > largest:
        return None
    return float(_inv_d2(np.array([largest]))[0]), float(_inv_d2(np.array([smallest]))[0])


def _shell_counts(
    d: np.ndarray, strong: np.ndarray, edges: np.ndarray, all_inside: bool
) -> ShellCounts | None:
    """:func:`_shell_counts_by_rows` from a table indexed by the bits of d (no ``1/d^2``
    per row); ``None`` for edges it does not handle (not finite, negative or not sorted).
    ``all_inside``: the caller knows that no usable row is outside the edges."""
    if not (np.isfinite(edges).all() and edges[0] >= 0 and (edges[1:] >= edges[:-1]).all()):
        return None
    n = edges.size - 1
    smallest_usable = _smallest_usable_d()
    with np.errstate(divide="ignore"):  # where 1/d^2 is about an edge: to start from
        guesses = 1.0 / np.sqrt(edges[[0, -1]])
    above = _last_d_bits(lambda v: v > edges[-1], guesses[1]) + 1
    low_d = max(smallest_usable, _float_of_bits(above))
    high_d = min(_float_of_bits(_last_d_bits(lambda v: v >= edges[0], guesses[0])), _LARGEST)
    base, shift, limit, table = _shell_table(edges, low_d, high_d)
    offsets = np.empty(min(SHELL_BLOCK, d.size), dtype=np.uint64)
    cells = np.empty_like(offsets)  # shifted into another array: numpy is slow in place
    # codes: 2 * shell + strong; 2 * n (+ 1): no shell; 2 * n + 2 (+ 1): look at the row
    counts = np.zeros(2 * (n + 2), dtype=np.int64)
    unsure_d: list[np.ndarray] = []
    unsure_strong: list[np.ndarray] = []
    n_unsure = n_usable = n_strong_usable = 0
    for rows in _blocks(d.size):
        block, strong_block = d[rows], strong[rows]
        # the cell of d: its bits minus those of low_d, shifted; d below low_d (negative
        # ones included) wrap round to huge offsets and NaN have huge bits, so they land
        # past the last cell as the d above high_d do
        offset = np.subtract(block.view(np.uint64), base, out=offsets[: block.size])
        np.minimum(offset, limit, out=offset)
        cell = np.right_shift(offset, shift, out=cells[: block.size])
        code = table[cell.view(np.int64)]
        np.add(code, strong_block, out=code)
        counts += np.bincount(code, minlength=counts.size)
        unsure = np.flatnonzero(code > 2 * n + 1)  # in the few cells with an edge
        if unsure.size:
            unsure_d.append(block[unsure])
            unsure_strong.append(strong_block[unsure])
            n_unsure += unsure.size
        if unsure_d and (n_unsure >= SHELL_BLOCK or rows.stop >= d.size):
            code = 2 * _exact_shells(np.concatenate(unsure_d), edges)
            code += np.concatenate(unsure_strong)
            counts += np.bincount(code, minlength=counts.size)
            unsure_d, unsure_strong, n_unsure = [], [], 0
        if all_inside:
            continue
        if smallest_usable <= block.min() and block.max() <= _LARGEST:  # False with NaN
            n_usable += block.size
            n_strong_usable += int(np.count_nonzero(strong_block))
        else:
            usable = block >= smallest_usable
            usable &= block <= _LARGEST
            n_usable += int(np.count_nonzero(usable))
            usable &= strong_block
            n_strong_usable += int(np.count_nonzero(usable))
    n_strong = counts[1 : 2 * n : 2]
    n_all = counts[0 : 2 * n : 2] + n_strong
    n_inside, n_strong_inside = int(n_all.sum()), int(n_strong.sum())
    if all_inside:
        n_usable, n_strong_usable = n_inside, n_strong_inside
    return (
        n_all,
        n_strong.copy(),
        int(d.size) - n_usable,
        n_usable - n_inside,
        n_strong_usable - n_strong_inside,
    )


def _shell_table(
    edges: np.ndarray, low_d: float, high_d: float
) -> tuple[np.uint64, np.uint64, np.uint64, np.ndarray]:
    """``(base, shift, limit, table)``: twice the shell of the row with d is
    ``table[min(bits(d) - base, limit) >> shift]`` (shell ``n``: none, ``n + 1``: look
    at the row's d).

    Cells are equal ranges of bits from ``low_d`` up to past ``high_d``. A cell has the
    shell of its first and its last d when they agree (monotone, see above; ``n`` above
    ``high_d``), else ``n + 1``; the one past the last cell has ``n``.
    """
    n = edges.size - 1
    if not low_d <= high_d:  # no d is inside: every row to the one cell of shell n
        return np.uint64(0), np.uint64(0), np.uint64(0), np.array([2 * n], dtype=np.intp)
    base = _bits_of_float(low_d)
    span = _bits_of_float(high_d) - base
    shift = max(span.bit_length() - SHELL_TABLE_BITS, 0)
    n_cells = (span >> shift) + 1
    first = (np.arange(n_cells, dtype=np.uint64) << np.uint64(shift)) + np.uint64(base)
    last = first + np.uint64((1 << shift) - 1)
    first_shell = _exact_shells(first.view(np.float64), edges)
    last_shell = _exact_shells(last.view(np.float64), edges)
    table = np.where(first_shell == last_shell, first_shell, n + 1)
    table = 2 * np.append(table, n).astype(np.intp)
    return np.uint64(base), np.uint64(shift), np.uint64(n_cells << shift), table


def _exact_shells(d: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The shell of each d as :func:`_shell_counts_by_rows` finds it (``n``: none)."""
    n = edges.size - 1
    inv_d2 = _inv_d2(d)
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(d) & (d > 0) & np.isfinite(inv_d2)
        inside &= (inv_d2 >= edges[0]) & (inv_d2 <= edges[-1])
    shell = np.clip(np.searchsorted(edges, inv_d2, side="right") - 1, 0, n - 1)
    return np.where(inside, shell, n)
