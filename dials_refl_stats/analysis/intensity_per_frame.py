"""Intensity per frame: per-image (or per bin of images) statistics of intensities.

Pure numpy: frame numbers, intensities and variances in, a :class:`FrameTable` out.
How z becomes a frame number (image number from a scan, or floor(z) without one) is
decided by the caller; :func:`image_numbers` and :func:`z_floor_frames` are the rules.
:mod:`dials_refl_stats.analysis.intensity_frames` computes the same tables for every
series of a task at once; these functions are the plain, one-series algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_refl_stats.analysis.grouping import (
    order_by_group_then_value,
    stable_order,
)


def image_numbers(z: np.ndarray, first_image: int) -> np.ndarray:
    """Image numbers of z in a scan's array coordinates.

    A scan with images ``first..last`` has array range ``(first - 1, last)`` and image
    ``k`` covers ``z`` in ``[k - 1, k)``; so the image number is
    ``first + floor(z - (first - 1))`` = ``floor(z) + 1`` for every scan, including scans
    whose images start at 0 (z from -1; dials/dials#1153).
    """
    array_start = first_image - 1
    return np.floor(np.asarray(z, dtype=np.float64) - array_start).astype(np.int64) + first_image


def z_floor_frames(z: np.ndarray) -> np.ndarray:
    """``floor(z)``: the frame numbering used when no scan is known."""
    return np.floor(np.asarray(z, dtype=np.float64)).astype(np.int64)


def plot_positions(
    frames: np.ndarray,
    z: np.ndarray,
    continuous: bool | np.ndarray = True,
    rank: np.ndarray | None = None,
) -> np.ndarray:
    """x positions for a scatter on an integer frame axis, frame ``f`` centred on ``f``.

    The fractional part of z places a point within its frame: ``f + frac(z) - 0.5``.
    ``continuous=False`` (stills, where z says nothing) spreads each frame's points
    evenly and deterministically over ``f - 0.3 .. f + 0.3`` so they stay visible, by
    ``rank``, each point's index in its series (default: its position). ``continuous``
    may be one value per point.
    """
    frames = np.asarray(frames, dtype=np.float64)
    rank = np.arange(frames.size) if rank is None else np.asarray(rank)
    spread = frames + 0.6 * (np.modf(rank * 0.6180339887498949)[0] - 0.5)
    if continuous is False:
        return spread
    z = np.asarray(z, dtype=np.float64)
    within = frames + (z - np.floor(z)) - 0.5
    return within if continuous is True else np.where(continuous, within, spread)


@dataclass(frozen=True)
class FrameTable:
    """Statistics per bin of ``bin_width`` consecutive frames.

    Bin ``i`` holds frames ``frame_first[i]..frame_last[i]`` (inclusive). Empty bins
    inside the span have ``count`` 0 and ``None``/NaN statistics. ``mean_i_over_sigma``
    averages I/sqrt(variance) over the ``n_with_sigma`` reflections with variance > 0.
    """

    bin_width: int
    frame_first: np.ndarray
    frame_last: np.ndarray
    count: np.ndarray
    mean: np.ndarray
    median: np.ndarray
    mean_i_over_sigma: np.ndarray
    n_with_sigma: np.ndarray
    n_non_positive: np.ndarray

    @property
    def n_bins(self) -> int:
        return int(self.count.size)

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.frame_first + self.frame_last)

    def as_dict(self) -> dict:
        return {
            "bin_width": self.bin_width,
            "n_bins": self.n_bins,
            "frame_first": self.frame_first,
            "frame_last": self.frame_last,
            "count": self.count,
            "mean": self.mean,
            "median": self.median,
            "mean_i_over_sigma": self.mean_i_over_sigma,
            "n_with_sigma": self.n_with_sigma,
            "n_non_positive": self.n_non_positive,
        }


@dataclass(frozen=True)
class IntensitySummary:
    """Summary over all rows of a series (``None`` statistics when empty)."""

    n: int
    n_non_positive: int
    n_with_sigma: int
    mean: float | None = None
    median: float | None = None
    mean_i_over_sigma: float | None = None
    frame_min: int | None = None
    frame_max: int | None = None


def summarise_intensities(
    frames: np.ndarray, intensity: np.ndarray, variance: np.ndarray
) -> IntensitySummary:
    """n, mean, median, mean I/sigma (variance > 0 only) and the frame span."""
    intensity = np.asarray(intensity, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    has_sigma = variance > 0
    n = int(intensity.size)
    if n == 0:
        return IntensitySummary(n=0, n_non_positive=0, n_with_sigma=0)
    return IntensitySummary(
        n=n,
        n_non_positive=int((intensity <= 0).sum()),
        n_with_sigma=int(has_sigma.sum()),
        mean=float(intensity.mean()),
        median=float(np.median(intensity)),
        mean_i_over_sigma=(
            float((intensity[has_sigma] / np.sqrt(variance[has_sigma])).mean())
            if has_sigma.any()
            else None
        ),
        frame_min=int(np.min(frames)),
        frame_max=int(np.max(frames)),
    )


def per_frame_table(
    frames: np.ndarray,
    intensity: np.ndarray,
    variance: np.ndarray,
    bin_width: int = 1,
    frame_range: tuple[int, int] | None = None,
) -> FrameTable:
    """Per-bin count, mean, median, mean I/sigma and number of intensities <= 0.

    Bins are ``bin_width`` frames wide and start at ``frame_range[0]`` (e.g. a scan's
    first image) or else at the smallest frame; the table spans ``frame_range`` and
    every frame present (frames outside ``frame_range`` extend it). Vectorised: bin
    numbers by integer division, sums by ``bincount``, medians from one sort by (bin,
    intensity).
    """
    if bin_width < 1:
        raise ValueError(f"bin_width must be at least 1 (got {bin_width})")
    frames = np.asarray(frames, dtype=np.int64)
    intensity = np.asarray(intensity, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    if not (frames.shape == intensity.shape == variance.shape):
        raise ValueError("frames, intensity and variance must have the same length")

    if frame_range is not None:
        origin, span_last = int(frame_range[0]), int(frame_range[1])
        if frames.size:
            origin_data = int(frames.min())
            if origin_data < origin:  # extend downwards, keeping bins aligned
                origin -= -((origin_data - origin) // bin_width) * bin_width
            span_last = max(span_last, int(frames.max()))
    elif frames.size:
        origin, span_last = int(frames.min()), int(frames.max())
    else:
        origin, span_last = 0, -1
    n_bins = max(0, (span_last - origin) // bin_width + 1)

    bins = (frames - origin) // bin_width
    count = np.bincount(bins, minlength=n_bins).astype(np.int64)
    total = np.bincount(bins, weights=intensity, minlength=n_bins)
    non_positive = np.bincount(bins[intensity <= 0], minlength=n_bins).astype(np.int64)
    has_sigma = variance > 0
    n_sigma = np.bincount(bins[has_sigma], minlength=n_bins).astype(np.int64)
    i_over_sigma = np.bincount(
        bins[has_sigma],
        weights=intensity[has_sigma] / np.sqrt(variance[has_sigma]),
        minlength=n_bins,
    )

    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        mean_ios = np.where(n_sigma > 0, i_over_sigma / np.maximum(n_sigma, 1), np.nan)

    median = bin_medians(bins, intensity, count)
    first = origin + bin_width * np.arange(n_bins, dtype=np.int64)
    return FrameTable(
        bin_width=int(bin_width),
        frame_first=first,
        frame_last=first + bin_width - 1,
        count=count,
        mean=mean,
        median=median,
        mean_i_over_sigma=mean_ios,
        n_with_sigma=n_sigma,
        n_non_positive=non_positive,
    )


#: At least this many rows per filled bin on average: medians by partitioning each
#: bin's values (linear) rather than sorting every value (n log n).
ROWS_PER_BIN_TO_PARTITION = 64


def bin_medians(bins: np.ndarray, values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The median of ``values`` in each bin ``0..count.size-1`` (NaN when empty):
    the mean of the lower and upper middle values of the bin's sorted values.

    Rows are grouped by bin with one radix sort; many rows per bin: each bin's two
    middle values by ``np.partition`` (they are the sorted array's, ties and NaN
    included), else one sort by (bin, value) for all bins at once.
    """
    n_bins = count.size
    median = np.full(n_bins, np.nan)
    filled = np.flatnonzero(count > 0)
    if not filled.size:
        return median
    starts = np.concatenate(([0], np.cumsum(count)[:-1]))
    low = starts[filled] + (count[filled] - 1) // 2
    high = starts[filled] + count[filled] // 2
    if values.size < ROWS_PER_BIN_TO_PARTITION * filled.size:
        ordered = values[order_by_group_then_value(bins, values)]
        median[filled] = 0.5 * (ordered[low] + ordered[high])
        return median
    grouped = values[stable_order(bins)]
    middle_low, middle_high = np.empty(filled.size), np.empty(filled.size)
    for k, (b, lo, hi) in enumerate(zip(filled.tolist(), low.tolist(), high.tolist())):
        start = int(starts[b])
        part = np.partition(grouped[start : start + int(count[b])], (lo - start, hi - start))
        middle_low[k], middle_high[k] = part[lo - start], part[hi - start]
    median[filled] = 0.5 * (middle_low + middle_high)
    return median


@dataclass(frozen=True)
class IntensitySeries:
    """One series (an experiment's scan, a file's stills, ...) for one intensity."""

    table: FrameTable
    summary: IntensitySummary

    def as_dict(self) -> dict:
        return {"summary": self.summary, "per_frame": self.table.as_dict()}


def intensity_series(
    frames: np.ndarray,
    intensity: np.ndarray,
    variance: np.ndarray,
    bin_width: int = 1,
    frame_range: tuple[int, int] | None = None,
) -> IntensitySeries:
    """:func:`per_frame_table` and :func:`summarise_intensities` together."""
    return IntensitySeries(
        table=per_frame_table(frames, intensity, variance, bin_width, frame_range),
        summary=summarise_intensities(frames, intensity, variance),
    )


def n_outside_range(frames: np.ndarray, frame_range: tuple[int, int] | None) -> int:
    """How many ``frames`` lie outside ``frame_range`` (inclusive; ``None``: none do)."""
    if frame_range is None:
        return 0
    frames = np.asarray(frames)
    first, last = frame_range
    return int(((frames < first) | (frames > last)).sum())
