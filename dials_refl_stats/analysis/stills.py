"""Series over many images: sliding rates, binning of long series, unit-cell histograms."""

from __future__ import annotations

import numpy as np

from dials_refl_stats.analysis.per_image import COUNT_FIELDS, group_medians
from dials_refl_stats.analysis.statistic import join_group_keys
from dials_refl_stats.image_numbering import STILL

#: Columns summed when images are binned; the others are medians of the images' values.
SUMMED = (
    *COUNT_FIELDS,
    "n_spots_no_ice",
    "n_spots_4A",
    "total_intensity",
    "total_intensity_no_ice",
    "isigma_histogram",
)
#: Columns that keep the first image's value in a bin.
FIRST = ("experiment", "file_index", "id", "image", "numbering")
CELL_PARAMETERS = ("a", "b", "c", "alpha", "beta", "gamma")


def sliding_rate(flags: np.ndarray, window: int) -> np.ndarray:
    """Fraction of ``flags`` set over the last ``window`` images (fewer at the start)."""
    flags = np.asarray(flags, dtype=np.int64)
    cumulative = np.concatenate([[0], np.cumsum(flags)])
    end = np.arange(1, flags.size + 1)
    start = np.maximum(0, end - window)
    return (cumulative[end] - cumulative[start]) / (end - start)


def thin_images(
    columns: dict[str, np.ndarray], isigma: np.ndarray | None, max_images: int
) -> tuple[dict[str, np.ndarray], dict | None]:
    """The columns as they are, or binned into at most ``max_images`` bins of
    consecutive images (sums for counts, medians of the images' values otherwise)."""
    shown = dict(columns)
    if isigma is not None:
        shown["isigma_histogram"] = isigma
    n = next(iter(shown.values())).shape[0] if shown else 0
    if n <= max_images:
        return shown, None
    series = series_of(shown)
    size, starts = bin_starts(np.zeros(n, np.int64) if series is None else series, max_images)
    bin_of = np.repeat(np.arange(starts.size), np.diff(np.append(starts, n)))
    binned = {}
    for name, values in shown.items():
        values = np.asarray(values)
        if name in SUMMED:
            binned[name] = np.add.reduceat(values, starts, axis=0)
        elif name in FIRST:
            binned[name] = values[starts]
        elif values.dtype.kind in "fiu":
            finite = np.isfinite(values) & (values > -1)
            binned[name] = group_medians(
                bin_of[finite], values[finite], np.ones(int(finite.sum()), np.int64), starts.size
            )
    if "n_indexed" in binned:
        with np.errstate(invalid="ignore", divide="ignore"):
            binned["fraction_indexed"] = binned["n_indexed"] / binned["n_selected"]
    binned["image_last"] = (
        np.asarray(shown["image"])[np.append(starts[1:], n) - 1] if "image" in shown else None
    )
    return binned, {
        "images_per_bin": size,
        "n_bins": int(starts.size),
        "rule": "consecutive images of one experiment (stills: of the run; no experiment: "
        "of one file and id; with more of those than bins: of the run) binned: counts "
        "and totals summed, fraction_indexed from those sums, other values are the median "
        "of the images' values (ignoring -1 and NaN); image is the first image of the bin, "
        "image_last the last",
    }


#: Values within this fraction of their magnitude are one value (float noise, and below
#: the 6 significant digits of the JSON): one bin holds them all.
EQUAL_RELATIVE = 1e-6
#: Narrowest bin, relative to the values' magnitude, so that edges print distinctly.
MIN_BIN_RELATIVE = 1e-5


def histogram_of(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of ``values``: one bin ``[v - 0.5, v + 0.5]`` holding every
    value when they are equal within :data:`EQUAL_RELATIVE`, else at most ``n_bins``
    bins no narrower than :data:`MIN_BIN_RELATIVE`."""
    low, high = float(values.min()), float(values.max())
    scale = max(abs(low), abs(high), 1.0)
    if high - low <= EQUAL_RELATIVE * scale:
        centre = float(np.median(values))
        return np.array([values.size]), np.array([centre - 0.5, centre + 0.5])
    n_bins = int(min(n_bins, max(1, np.ceil((high - low) / (MIN_BIN_RELATIVE * scale)))))
    return np.histogram(values, bins=n_bins, range=(low, high))


def series_of(columns: dict) -> np.ndarray | None:
    """Per row, the series a bin stays within: its experiment (without one: its file and
    ``id``), or one series for every still (consecutive stills are binned together);
    ``None`` when not known."""
    if "experiment" not in columns:
        return None
    series = np.asarray(columns["experiment"], dtype=np.int64)
    if "file_index" in columns and "id" in columns and (series < 0).any():
        group = join_group_keys(columns["file_index"], columns["id"])
        series = np.where(series < 0, -3 - group, series)
    if "numbering" not in columns:
        return series
    return np.where(np.asarray(columns["numbering"]) == STILL, -2, series)


def bin_starts(series: np.ndarray, max_images: int) -> tuple[int, np.ndarray]:
    """(images per bin, first row of each bin): bins of consecutive rows that never span
    two series, at most ``max_images`` of them (the smallest bin size that allows it);
    with more series than that, bins of consecutive rows whatever their series."""
    if not series.size:
        return 1, np.zeros(0, np.int64)
    first = np.flatnonzero(np.append(True, series[1:] != series[:-1]))
    if first.size > max_images:
        first = np.zeros(1, np.int64)
    lengths = np.diff(np.append(first, series.size))

    def n_bins(size: int) -> int:
        return int((-(-lengths // size)).sum())

    # the smallest size giving at most max_images bins: the count falls as the size
    # grows, and the longest series in one bin gives one bin per series
    low, high = max(1, -(-series.size // max_images)), max(1, int(lengths.max()))
    while low < high:
        middle = (low + high) // 2
        if n_bins(middle) <= max_images:
            high = middle
        else:
            low = middle + 1
    size = low
    position = np.arange(series.size) - np.repeat(first, lengths)
    return size, np.flatnonzero(position % size == 0)


def cell_histograms(cells: np.ndarray, n_bins: int = 30) -> dict:
    """Histograms of unit-cell parameters, ``cells`` of shape ``(n, 6)``."""
    cells = np.asarray(cells, dtype=np.float64).reshape(-1, 6)
    result = {"n_crystals": int(cells.shape[0])}
    for i, name in enumerate(CELL_PARAMETERS):
        values = cells[:, i]
        if not values.size:
            result[name] = None
            continue
        counts, edges = histogram_of(values, n_bins)
        result[name] = {
            "edges": edges,
            "counts": counts,
            "mean": float(values.mean()),
            "std": float(values.std()),
        }
    return result
