"""Spot size: how many shoebox pixels carry given mask bits, and its distribution."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dials_refl_stats.analysis.distribution import (
    Binning,
    Distribution,
    histogram,
    summarise_counts,
)
from dials_refl_stats.analysis.grouping import (
    group_by_index,
    group_middles,
    lexsort_unless_sorted,
    unique_inverse,
)
from dials_refl_stats.analysis.statistic import (
    Chunk,
    Statistic,
    merge_count_tables,
    merge_counts,
)

#: ``dials.algorithms.shoebox.MaskCode`` bits.
MASK_CODES: dict[str, int] = {
    "Valid": 1,
    "Background": 2,
    "Foreground": 4,
    "Strong": 8,
    "BackgroundUsed": 16,
    "Overlapped": 32,
}


#: Lower-case spellings (as phil choices) of the ``MaskCode`` names.
MASK_NAMES: dict[str, str] = {
    "valid": "Valid",
    "background": "Background",
    "foreground": "Foreground",
    "strong": "Strong",
    "background_used": "BackgroundUsed",
    "overlapped": "Overlapped",
}


def mask_code(names: Sequence[str]) -> int:
    """Bitwise OR of ``MaskCode`` names, e.g. ``["Valid", "Foreground"]`` -> 5.

    Lower-case spellings (``valid``, ``background_used``) are accepted too.
    """
    code = 0
    for name in names:
        code |= MASK_CODES[MASK_NAMES.get(name, name)]
    return code


def count_mask_pixels(mask_values: np.ndarray, offsets: np.ndarray, code: int) -> np.ndarray:
    """Per shoebox, pixels whose mask has every bit of ``code``.

    ``mask_values`` holds all shoeboxes' masks back to back; shoebox ``i`` is
    ``mask_values[offsets[i]:offsets[i + 1]]``. Same rule as DIALS's
    ``flex.shoebox.count_mask_values(code)``.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    hits = (np.asarray(mask_values) & code) == code
    cumulative = np.concatenate(([0], np.cumsum(hits, dtype=np.int64)))
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def split_by_group(values: np.ndarray, group_of_row: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """``values`` split by group number ``0..n_groups-1`` (rows keep their order)."""
    return [values[rows] for rows in group_by_index(group_of_row, n_groups)]


def distribution_from_counts(
    values: np.ndarray, counts: np.ndarray, binning: Binning
) -> Distribution:
    """:func:`distribution` of ``values`` each repeated ``counts`` times (value counts
    of many groups pooled first: 10^6 stills hold ~1.5 M of them, of ~100 sizes)."""
    values, counts = pooled_counts(values, counts)
    return Distribution(histogram(values, binning, counts), summarise_counts(values, counts))


def pooled_counts(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``values`` (sorted) and their summed integer ``counts``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return values, np.asarray(counts, dtype=np.int64)
    low, high = values.min(), values.max()
    whole = np.isfinite(low) and np.isfinite(high) and high - low <= 4 * values.size + (1 << 16)
    if whole and np.array_equal(values, np.floor(values)):  # pixel counts: no sort
        summed = np.bincount((values - low).astype(np.int64), weights=counts)
        present = np.flatnonzero(summed)
        distinct, summed = present + low, summed[present]
    else:
        distinct, inverse = np.unique(values, return_inverse=True)
        summed = np.bincount(inverse.ravel(), weights=counts, minlength=distinct.size)
    return distinct, np.rint(summed).astype(np.int64)  # exact: integers below 2^53


@dataclass(frozen=True)
class SpotSizeResult:
    """Spot-size distribution over all selected spots and per group (experiment)."""

    overall: Distribution
    groups: tuple[Distribution, ...]


#: Pseudo size recording a selected row without allocated shoebox pixels.
NO_PIXELS = -1

SHOEBOX_COUNT = "shoebox.count"
SHOEBOX_ALLOCATED = "shoebox.allocated"
NUM_PIXELS = "num_pixels.foreground"


@dataclass(frozen=True)
class SizeCounts:
    """Partial: how many selected spots of each group have each size (exact, compact)."""

    group: np.ndarray  # run-wide group key (file, id)
    size: np.ndarray  # pixels; NO_PIXELS for rows without allocated shoebox pixels
    count: np.ndarray
    sources: frozenset[str]  # size columns used: shoebox / num_pixels.foreground


class GroupedSizes:
    """Final spot sizes: distinct group keys, value counts per group, the distribution
    of all of them, and per-group summaries as columns (vectorised over 10^4 groups).

    Full per-group distributions (histogram and percentiles) are made on demand
    (:attr:`result`), since they cost ~0.2 ms per group.
    """

    def __init__(self, groups, group_of_value, values, weights, binning, overall, missing, sources):
        self.groups = groups  # sorted group keys
        self.n_without_pixels = missing  # per group
        self.sources = sources
        self.binning = binning  # the shared, resolved binning
        self.overall = overall
        self._group_of_value, self._values, self._weights = group_of_value, values, weights

    @functools.cached_property
    def result(self) -> SpotSizeResult:
        """Overall and per-group :class:`Distribution` (computed on first use)."""
        grouping = group_by_index(self._group_of_value, self.groups.size)
        per_group = tuple(
            distribution_from_counts(self._values[rows], self._weights[rows], self.binning)
            for rows in grouping
        )
        return SpotSizeResult(overall=self.overall, groups=per_group)

    def summary_columns(self) -> dict[str, np.ndarray]:
        """Per group: n, mean, median, min, max, std (NaN where a group has no size);
        computed once (the log and the JSON both use them; 10^5 groups: ~0.1 s)."""
        return dict(self._summary_columns)

    @functools.cached_property
    def _summary_columns(self) -> dict[str, np.ndarray]:
        n_groups = self.groups.size
        group, values, weights = self._group_of_value, self._values, self._weights
        order = lexsort_unless_sorted(values, group)
        if order is not None:
            group, values, weights = group[order], values[order], weights[order]
        n = np.rint(np.bincount(group, weights=weights, minlength=n_groups)).astype(np.int64)
        has = n > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(group, weights=values * weights, minlength=n_groups) / n
            spread = weights * (values - mean[group]) ** 2
            std = np.sqrt(np.bincount(group, weights=spread, minlength=n_groups) / n)
        low, high, _ = group_middles(group, values, weights, n_groups)
        smallest, largest = np.full(n_groups, np.nan), np.full(n_groups, np.nan)
        bounds = np.searchsorted(group, np.arange(n_groups + 1))
        smallest[has] = values[bounds[:-1][has]]
        largest[has] = values[bounds[1:][has] - 1]
        return {
            "n": n,
            "mean": np.where(has, mean, np.nan),
            "median": np.where(has, 0.5 * (low + high), np.nan),
            "min": smallest,
            "max": largest,
            "std": np.where(has, std, np.nan),
        }

    def as_dict(self) -> dict:
        return {
            "groups": self.groups,
            "overall": self.overall.as_dict(),
            "per_group": [d.as_dict() for d in self.result.groups],
            "summary_columns": self.summary_columns(),
            "n_without_pixels": self.n_without_pixels,
            "sources": sorted(self.sources),
        }


class SpotSizeStatistic(Statistic):
    """Spot size in signal pixels: shoebox mask counts, else ``num_pixels.foreground``."""

    name = "spot_size_histogram"
    batchable = True

    def __init__(self, code: int = 4, source: str = "auto", binning: Binning = Binning()) -> None:
        self.shoebox_code = code
        self.source = source  # auto, shoebox or num_pixels
        self.binning = binning

    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        return ("shoebox",) if self.size_source(available) == "shoebox" else (NUM_PIXELS,)

    def describe(self, final: "GroupedSizes") -> dict:
        return final.as_dict()

    def size_source(self, available: frozenset[str]) -> str:
        """``shoebox`` or ``num_pixels.foreground`` for a file with ``available`` columns."""
        if self.source == "shoebox" or (self.source == "auto" and "shoebox" in available):
            return "shoebox"
        return NUM_PIXELS

    def partial(self, chunk: Chunk) -> SizeCounts:
        selected = chunk.selected
        if SHOEBOX_COUNT in chunk.columns:
            sizes = np.asarray(chunk.columns[SHOEBOX_COUNT], dtype=np.int64)
            sizes = np.where(chunk.columns[SHOEBOX_ALLOCATED], sizes, NO_PIXELS)
            source = "shoebox"
        else:
            sizes = np.asarray(chunk.columns[NUM_PIXELS], dtype=np.int64)
            source = NUM_PIXELS
        keys = chunk.group_keys()[selected]
        (group, size), count = merge_counts((keys, sizes[selected]), np.ones(keys.size))
        return SizeCounts(group, size, count, frozenset([source]))

    def merge(self, first: SizeCounts, second: SizeCounts) -> SizeCounts:
        return self.merge_many([first, second])

    def merge_many(self, parts: list[SizeCounts]) -> SizeCounts:
        """The count tables joined in one step (see :func:`merge_count_tables`)."""
        (group, size), count = merge_count_tables(*(((p.group, p.size), p.count) for p in parts))
        return SizeCounts(group, size, count, frozenset().union(*(p.sources for p in parts)))

    def empty(self) -> SizeCounts:
        nothing = np.zeros(0, dtype=np.int64)
        return SizeCounts(nothing, nothing, nothing, frozenset())

    def finalize(self, partial: SizeCounts | None) -> GroupedSizes:
        partial = partial if partial is not None else self.empty()
        counted = partial.size != NO_PIXELS
        groups, group_of_entry = unique_inverse(partial.group)
        values = partial.size[counted].astype(np.float64)
        weights = partial.count[counted]
        low, high = self.binning.resolve(values)
        shared = Binning(data_min=low, data_max=high, n_slots=self.binning.n_slots)
        overall = distribution_from_counts(values, weights, shared)
        missing = np.bincount(
            group_of_entry[~counted], weights=partial.count[~counted], minlength=groups.size
        )
        return GroupedSizes(
            groups=groups,
            group_of_value=group_of_entry[counted],
            values=values,
            weights=weights,
            binning=shared,
            overall=overall,
            missing=np.rint(missing).astype(np.int64),
            sources=partial.sources,
        )
