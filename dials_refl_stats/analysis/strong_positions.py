"""Where are the strong reflections? Thresholds, resolution shells, detector histograms.

Pure numpy: arrays in, small frozen dataclasses out; no I/O and no DIALS. The program
``dials.strong_reflection_positions`` feeds it the flag-selected rows of its reflection
tables (and, with experiments, their d-spacings from ``dials_refl_stats.geometry``).

The rules, also written into every JSON output:

* a reflection is *strong* when it passes **every** criterion that is set:
  ``I >= intensity_min``; ``I/sigma >= i_over_sigma_min`` with ``sigma = sqrt(variance)``
  (rows whose variance is not positive and finite have no I/sigma and fail it); and,
  with ``top_fraction = f``, ``I >= I_k``, the ``k``-th largest intensity among the
  selected rows with finite intensity, ``k = ceil(f * n)`` (ties at ``I_k`` are kept, so
  slightly more than ``k`` rows can pass). Rows with a non-finite intensity are never
  strong but are still counted among all reflections.
* resolution shells are equal in ``1/d^2`` between the smallest and the largest
  ``1/d^2`` of the selected rows (or the ``d_max``/``d_min`` given); a shell holds
  ``edges[i] <= 1/d^2 < edges[i + 1]``, the last one also its upper edge (as
  ``numpy.histogram``).
* detector histograms bin pixel positions per panel over the panel's full pixel extent,
  ``n_bins`` equal bins along x (fast) and along y (slow); ``counts[iy][ix]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from dials_refl_stats.analysis.grouping import (
    group_by_value,
    order_by_group_then_value,
    stable_order,
)
from dials_refl_stats.analysis.median import median_or_none
from dials_refl_stats.analysis.resolution_shells import ResolutionShells, resolution_shells

#: How the pixel coordinates are oriented (DIALS image viewer convention).
PIXEL_ORIENTATION = (
    "panel pixel coordinates from xyzobs.px.value: x along the fast axis (columns), "
    "y along the slow axis (rows), origin at the top-left corner of the panel as the "
    "DIALS image viewer shows it (y increases downwards); pixel centres are at +0.5"
)


#: The rule of :func:`select_strong`, for the JSON record.
STRONG_RULE = (
    "strong = every criterion that is set passes: I >= intensity_min; "
    "I/sqrt(variance) >= i_over_sigma_min (rows without a positive variance fail); "
    "I >= the ceil(top_fraction * n)-th largest finite I of the n selected rows "
    "(ties kept). Non-finite I is never strong."
)


@dataclass(frozen=True)
class StrongCriteria:
    """What makes a reflection strong; ``None`` switches a criterion off."""

    intensity_min: float | None = 5000.0
    i_over_sigma_min: float | None = None
    top_fraction: float | None = None

    def __post_init__(self) -> None:
        for name in ("intensity_min", "i_over_sigma_min"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number (got {value})")
        if self.top_fraction is not None and not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(
                f"top_fraction must be in (0, 1], e.g. 0.05 for the brightest 5% "
                f"(got {self.top_fraction:g})"
            )

    @property
    def needs_variance(self) -> bool:
        return self.i_over_sigma_min is not None

    def label(self, intensity_name: str = "I") -> str:
        """Short text such as ``I>=5000 I/sigma>=3 top5%`` (``all`` when none is set)."""
        parts = []
        if self.intensity_min is not None:
            parts.append(f"{intensity_name}>={self.intensity_min:g}")
        if self.i_over_sigma_min is not None:
            parts.append(f"{intensity_name}/sigma>={self.i_over_sigma_min:g}")
        if self.top_fraction is not None:
            parts.append(f"top{100 * self.top_fraction:g}%")
        return " ".join(parts) or "all"


@dataclass(frozen=True)
class StrongSelection:
    """Which of the candidate rows are strong, and how the criteria were applied."""

    strong: np.ndarray
    n_candidates: int
    n_strong: int
    n_intensity_not_finite: int
    n_without_sigma: int | None
    top_fraction_k: int | None
    top_fraction_threshold: float | None

    @property
    def strong_fraction(self) -> float | None:
        return self.n_strong / self.n_candidates if self.n_candidates else None

    def as_dict(self) -> dict:
        return {
            "n_candidates": self.n_candidates,
            "n_strong": self.n_strong,
            "strong_fraction": self.strong_fraction,
            "n_intensity_not_finite": self.n_intensity_not_finite,
            "n_without_sigma": self.n_without_sigma,
            "top_fraction_k": self.top_fraction_k,
            "top_fraction_threshold": self.top_fraction_threshold,
        }


def select_strong(
    intensity: np.ndarray,
    criteria: StrongCriteria,
    variance: np.ndarray | None = None,
) -> StrongSelection:
    """Apply ``criteria`` to the (already flag-selected) rows' intensities."""
    intensity = np.asarray(intensity, dtype=np.float64)
    finite = np.isfinite(intensity)
    strong = finite.copy()
    if criteria.intensity_min is not None:
        strong &= intensity >= criteria.intensity_min
    n_without_sigma = None
    if criteria.i_over_sigma_min is not None:
        if variance is None:
            raise ValueError("i_over_sigma_min needs the intensity variances")
        variance = np.asarray(variance, dtype=np.float64)
        has_sigma = np.isfinite(variance) & (variance > 0)
        n_without_sigma = int((~has_sigma).sum())
        sigma = np.sqrt(np.where(has_sigma, variance, 1.0))
        strong &= has_sigma & (intensity / sigma >= criteria.i_over_sigma_min)
    k = threshold = None
    if criteria.top_fraction is not None:
        values = intensity[finite]
        if values.size:
            k = int(math.ceil(criteria.top_fraction * values.size - 1e-9))
            k = min(max(k, 1), values.size)
            threshold = float(np.partition(values, values.size - k)[values.size - k])
            strong &= intensity >= threshold
        else:
            k = 0
            strong &= False
    return StrongSelection(
        strong=strong,
        n_candidates=int(intensity.size),
        n_strong=int(strong.sum()),
        n_intensity_not_finite=int((~finite).sum()),
        n_without_sigma=n_without_sigma,
        top_fraction_k=k,
        top_fraction_threshold=threshold,
    )


@dataclass(frozen=True)
class PanelHistogram:
    """A 2D histogram of positions on one panel: ``counts[iy, ix]``."""

    panel: int
    image_size: tuple[int, int]
    x_edges: np.ndarray
    y_edges: np.ndarray
    counts: np.ndarray
    n_outside: int

    def as_dict(self) -> dict:
        return {
            "panel": self.panel,
            "image_size": list(self.image_size),
            "n_bins_x": int(self.x_edges.size - 1),
            "n_bins_y": int(self.y_edges.size - 1),
            "x_edges": self.x_edges,
            "y_edges": self.y_edges,
            "counts": self.counts,
            "n_in_range": int(self.counts.sum()),
            "n_outside": self.n_outside,
        }


def position_histograms(
    x: np.ndarray,
    y: np.ndarray,
    panel: np.ndarray,
    image_sizes: Mapping[int, tuple[float, float]],
    n_bins: int = 50,
) -> list[PanelHistogram]:
    """One 2D histogram per panel in ``image_sizes`` (sorted by panel number).

    Bins span ``[0, width] x [0, height]`` pixels; positions outside (and positions on
    panels not in ``image_sizes``) are not binned but counted in ``n_outside`` (the
    latter on no panel at all, so the caller should list every panel). Rows are grouped
    by panel with one sort (detectors can have hundreds of panels).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1 (got {n_bins})")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    present, grouping = group_by_value(np.asarray(panel, dtype=np.int64))
    group_of_panel = {int(number): g for g, number in enumerate(present)}
    result = []
    for number in sorted(image_sizes):
        width, height = image_sizes[number]
        x_edges = np.linspace(0.0, float(width), n_bins + 1)
        y_edges = np.linspace(0.0, float(height), n_bins + 1)
        g = group_of_panel.get(int(number))
        on_panel = grouping.rows(g) if g is not None else np.zeros(0, dtype=np.int64)
        px, py = x[on_panel], y[on_panel]
        counts, _, _ = np.histogram2d(py, px, bins=[y_edges, x_edges])
        counts = counts.astype(np.int64)
        result.append(
            PanelHistogram(
                panel=int(number),
                image_size=(int(round(width)), int(round(height))),
                x_edges=x_edges,
                y_edges=y_edges,
                counts=counts,
                n_outside=int(px.size - counts.sum()),
            )
        )
    return result


def counts_per_group(
    strong: np.ndarray, group_of_row: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and strong rows of each group ``0..n_groups-1``."""
    group_of_row = np.asarray(group_of_row, dtype=np.int64)
    n_all = np.bincount(group_of_row, minlength=n_groups).astype(np.int64)
    n_strong = np.bincount(group_of_row[np.asarray(strong, dtype=bool)], minlength=n_groups).astype(
        np.int64
    )
    return n_all, n_strong


def medians_per_group(
    values: np.ndarray, group_of_row: np.ndarray, n_groups: int
) -> list[float | None]:
    """Median of the finite ``values`` of each group ``0..n_groups-1`` (``None``: none).

    One sort for all groups (no loop over rows or a mask per group).
    """
    values = np.asarray(values, dtype=np.float64)
    group_of_row = np.asarray(group_of_row, dtype=np.int64)
    finite = np.isfinite(values)
    values, group_of_row = values[finite], group_of_row[finite]
    order = order_by_group_then_value(group_of_row, values)
    values, group_of_row = values[order], group_of_row[order]
    starts = np.searchsorted(group_of_row, np.arange(n_groups), side="left")
    ends = np.searchsorted(group_of_row, np.arange(n_groups), side="right")
    counts = ends - starts
    if values.size == 0:
        return [None] * n_groups
    safe, last = np.maximum(counts, 1), values.size - 1
    low = values[np.minimum(starts + (safe - 1) // 2, last)]
    high = values[np.minimum(starts + safe // 2, last)]
    medians = 0.5 * (low + high)
    return [float(m) if c else None for m, c in zip(medians, counts)]


#: Keys spanning fewer values than this are handled one by one (no sort).
FEW_KEYS = 16


def max_per_key(keys: np.ndarray, values: np.ndarray) -> dict[int, float]:
    """The largest finite value for every distinct integer key (``-inf`` if none).

    Keys spanning a few values: one masked maximum per key; else one stable sort of the
    keys (a radix sort for panel numbers) and one ``maximum.reduceat``.
    """
    keys = np.asarray(keys, dtype=np.int64).ravel()
    values = np.asarray(values, dtype=np.float64).ravel()
    if not keys.size:
        return {}
    low, high = int(keys.min()), int(keys.max())
    if high - low < FEW_KEYS:  # a few panels: one pass over the rows per panel
        finite_values = np.where(np.isfinite(values), values, -np.inf)
        if low == high:
            return {low: float(finite_values.max())}
        present = np.flatnonzero(np.bincount(keys - low, minlength=high - low + 1)) + low
        return {int(k): float(finite_values[keys == k].max()) for k in present}
    order = stable_order(keys)
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    finite_values = np.where(np.isfinite(values), values, -np.inf)[order]
    largest = np.maximum.reduceat(finite_values, starts)
    return {int(k): float(v) for k, v in zip(sorted_keys[starts], largest)}


def data_panel_extents(
    panel: np.ndarray, x: np.ndarray, y: np.ndarray
) -> dict[int, tuple[float, float]]:
    """Panel -> ``(width, height)`` when no detector is known: the largest finite x and y
    of its rows, rounded up (``1.0`` where there is no positive finite value)."""
    x_max, y_max = max_per_key(panel, x), max_per_key(panel, y)
    return {
        number: tuple(
            float(np.ceil(v)) if np.isfinite(v) and v > 0 else 1.0
            for v in (x_max[number], y_max[number])
        )
        for number in x_max
    }


def merge_extents(
    extents: Iterable[Mapping[int, tuple[float, float]]],
) -> dict[int, tuple[float, float]]:
    """Panel -> the largest width and the largest height over ``extents`` (panels in order
    of first appearance)."""
    merged: dict[int, tuple[float, float]] = {}
    for extent in extents:
        for number, (w, h) in extent.items():
            old = merged.get(number, (0.0, 0.0))
            merged[number] = (max(old[0], w), max(old[1], h))
    return merged


@dataclass(frozen=True)
class StrongPositions:
    """Everything ``dials.strong_reflection_positions`` reports, for the selected rows."""

    selection: StrongSelection
    shells: ResolutionShells | None
    histograms: list[PanelHistogram]
    n_selected_per_group: np.ndarray
    n_strong_per_group: np.ndarray
    median_d_strong_per_group: list[float | None]
    median_d_all: float | None
    median_d_strong: float | None


def strong_positions(
    intensity: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    panel: np.ndarray,
    criteria: StrongCriteria,
    *,
    image_sizes: Mapping[int, tuple[float, float]],
    variance: np.ndarray | None = None,
    d: np.ndarray | None = None,
    group_of_row: np.ndarray | None = None,
    n_groups: int = 1,
    n_bins: int = 50,
    n_shells: int = 10,
    d_min: float | None = None,
    d_max: float | None = None,
) -> StrongPositions:
    """Which rows are strong, where they are, and how they spread over resolution.

    One row per (flag-selected) reflection in every array; ``d`` (Angstrom, optional)
    enables the resolution shells; ``group_of_row`` (default: one group) numbers each
    row's experiment ``0..n_groups-1``.
    """
    selection = select_strong(intensity, criteria, variance)
    strong = selection.strong
    x, y, panel = np.asarray(x), np.asarray(y), np.asarray(panel)
    if group_of_row is None:
        group_of_row = np.zeros(strong.size, dtype=np.int64)
    n_all, n_strong = counts_per_group(strong, group_of_row, n_groups)
    shells = medians = None
    if d is not None:
        d = np.asarray(d, dtype=np.float64)
        shells = resolution_shells(d, strong, n_shells, d_min=d_min, d_max=d_max)
        medians = medians_per_group(d[strong], np.asarray(group_of_row)[strong], n_groups)
    return StrongPositions(
        selection=selection,
        shells=shells,
        histograms=position_histograms(x[strong], y[strong], panel[strong], image_sizes, n_bins),
        n_selected_per_group=n_all,
        n_strong_per_group=n_strong,
        median_d_strong_per_group=medians or [None] * n_groups,
        median_d_all=None if d is None else median_or_none(d),
        median_d_strong=None if d is None else median_or_none(d[strong]),
    )
