"""Rows grouped by an integer key with one stable sort (no mask per group).

A loop ``for k in keys: rows = key == k`` costs O(rows x groups); stills data can hold
thousands of experiments. :class:`Grouping` sorts once and hands out each group's rows
as a slice, in their original order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class Grouping:
    """Rows of each group ``0..n_groups-1``; group ``g`` is ``order[bounds[g]:bounds[g + 1]]``.

    ``inverse[row]`` is the row's group (``-1``: in none, and then in no slice).
    """

    inverse: np.ndarray
    order: np.ndarray
    bounds: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.bounds.size - 1)

    def rows(self, group: int) -> np.ndarray:
        """Row indices of ``group``, ascending."""
        return self.order[self.bounds[group] : self.bounds[group + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.rows(g) for g in range(self.n_groups))


def stable_order(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of integer ``keys``: a radix sort when they fit in 16 bits (frame
    bins, panels, experiments usually do), several times faster than a merge sort."""
    keys = np.asarray(keys)
    if keys.size and keys.min() >= 0 and keys.max() < 1 << 16:
        keys = keys.astype(np.uint16)
    return np.argsort(keys, kind="stable")


def order_by_group_then_value(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row order sorting by ``groups``, then by ``values`` within a group (NaN last).

    Orders the same values as ``np.lexsort((values, groups))`` (only rows with equal
    values may swap), with one value sort and one radix sort instead of a two-key sort.
    """
    by_value = np.argsort(values)
    return by_value[stable_order(np.asarray(groups)[by_value])]


def group_by_index(index: np.ndarray, n_groups: int) -> Grouping:
    """Group rows by ``index`` in ``0..n_groups-1`` (other values belong to no group)."""
    index = np.asarray(index, dtype=np.int64).ravel()
    inside = (index >= 0) & (index < n_groups)
    inverse = np.where(inside, index, -1)
    order = np.flatnonzero(inside)
    order = order[stable_order(index[order])]
    bounds = np.searchsorted(index[order], np.arange(n_groups + 1), side="left")
    return Grouping(inverse=inverse, order=order, bounds=bounds)


def group_by_value(keys: np.ndarray) -> tuple[np.ndarray, Grouping]:
    """The distinct ``keys`` (sorted) and the rows of each."""
    values, inverse = np.unique(np.asarray(keys).ravel(), return_inverse=True)
    return values, group_by_index(inverse.ravel(), int(values.size))


def group_by_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, Grouping]:
    """The distinct ``(first, second)`` pairs (rows of a ``(k, 2)`` array, sorted by
    ``first`` then ``second``) and the rows of each."""
    pairs = np.stack([np.asarray(first).ravel(), np.asarray(second).ravel()], axis=1)
    values, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return values, group_by_index(inverse.ravel(), int(values.shape[0]))


def lexsort_unless_sorted(values: np.ndarray, groups: np.ndarray) -> np.ndarray | None:
    """``np.lexsort((values, groups))``, or ``None`` when the rows are already in that
    order (value counts merged by ``merge_counts`` are: one check instead of a sort)."""
    if groups.size < 2:
        return None
    later, earlier = groups[1:], groups[:-1]
    in_order = (later > earlier) | ((later == earlier) & (values[1:] >= values[:-1]))
    return None if in_order.all() else np.lexsort((values, groups))


def unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)``, without a sort for sorted ``keys``."""
    keys = np.asarray(keys).ravel()
    if keys.size < 2 or not (keys[1:] >= keys[:-1]).all():
        values, inverse = np.unique(keys, return_inverse=True)
        return values, inverse.ravel()
    first = np.ones(keys.size, dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first], np.cumsum(first) - 1


def group_middles(
    group: np.ndarray, values: np.ndarray, counts: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: the lower and upper middle values of its value counts, and whether it
    has any (numpy's median is their mean)."""
    low = np.zeros(n_groups, dtype=values.dtype)
    high = np.zeros(n_groups, dtype=values.dtype)
    if not group.size:
        return low, high, np.zeros(n_groups, dtype=bool)
    order = lexsort_unless_sorted(values, group)
    if order is not None:
        group, values, counts = group[order], values[order], counts[order]
    totals = np.rint(np.bincount(group, weights=counts, minlength=n_groups)).astype(np.int64)
    cumulative = np.cumsum(counts)
    starts = np.concatenate([[0], np.cumsum(totals)[:-1]])
    has = totals > 0
    low[has] = values[np.searchsorted(cumulative, starts[has] + (totals[has] - 1) // 2, "right")]
    high[has] = values[np.searchsorted(cumulative, starts[has] + totals[has] // 2, "right")]
    return low, high, has


def density_counts(
    x: np.ndarray,
    y: np.ndarray,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    bins: tuple[int, int],
) -> np.ndarray:
    """Counts of ``(x, y)`` in ``bins`` equal cells over the ranges, shape ``(ny, nx)``
    (image rows = y), like ``np.histogram2d(...).T`` but one ``bincount`` (faster);
    points outside the ranges or not finite are left out."""
    nx, ny = int(bins[0]), int(bins[1])
    cell = density_cells(x, y, (*x_range, *y_range), bins)
    return np.bincount(cell, minlength=nx * ny).reshape(ny, nx)


def density_cells(
    x: np.ndarray, y: np.ndarray, bounds: tuple[float, float, float, float], bins: tuple[int, int]
) -> np.ndarray:
    """The cell (``iy * nx + ix``) of each point of :func:`density_counts` inside
    ``bounds`` ``(x0, x1, y0, y1)`` (the others left out)."""
    nx, ny = int(bins[0]), int(bins[1])
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x0, x1, y0, y1 = bounds
    sx = nx / (x1 - x0) if x1 > x0 else 0.0
    sy = ny / (y1 - y0) if y1 > y0 else 0.0
    ix = np.floor((x - x0) * sx)
    iy = np.floor((y - y0) * sy)
    # the upper edge belongs to the last cell, as in np.histogram2d
    ix[x == x1] = nx - 1
    iy[y == y1] = ny - 1
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    return iy[keep].astype(np.int64) * nx + ix[keep].astype(np.int64)
