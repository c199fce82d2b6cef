"""Histograms and summary statistics of a 1-D sample.

:func:`histogram` bins exactly as ``scitbx.array_family.flex.histogram`` does (the seed
scripts use it), but also says how many values fell below and above the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: ``flex.histogram``'s default: values within this fraction of a slot width outside
#: ``[data_min, data_max]`` still count, in the first or last slot.
RELATIVE_TOLERANCE = 1.0e-4

PERCENTILES = (5, 25, 50, 75, 95)

#: At most this many slots are drawn in the log's text histogram.
MAX_ASCII_SLOTS = 200


#: Largest histogram bound: edges, widths and centres (sums of two edges) stay finite.
MAX_EDGE = 1e300


@dataclass(frozen=True)
class Binning:
    """Histogram range and slot count; ``None`` bounds mean "from the data"."""

    data_min: float | None = 0.0
    data_max: float | None = 1000.0
    n_slots: int = 100

    def __post_init__(self) -> None:
        if self.n_slots < 1:
            raise ValueError(f"n_slots must be at least 1 (got {self.n_slots})")
        for name in ("data_min", "data_max"):
            value = getattr(self, name)
            if value is not None and not abs(value) <= MAX_EDGE:
                raise ValueError(f"{name} must be a number from {-MAX_EDGE:g} to {MAX_EDGE:g}")
        if (
            self.data_min is not None
            and self.data_max is not None
            and not self.data_max > self.data_min
        ):
            raise ValueError(
                f"data_max ({self.data_max:g}) must be greater than data_min ({self.data_min:g})"
            )

    def resolve(self, values: np.ndarray) -> tuple[float, float]:
        """Concrete ``(data_min, data_max)`` for ``values``."""
        finite = values[np.isfinite(values)]
        low = self.data_min
        high = self.data_max
        if low is None:
            low = float(finite.min()) if finite.size else 0.0
        if high is None:
            high = float(finite.max()) if finite.size else low + 1.0
        if not high > low:
            high = low + 1.0
        return float(low), float(high)


@dataclass(frozen=True)
class Histogram:
    """Counts in ``n_slots`` equal slots between ``edges[0]`` and ``edges[-1]``."""

    edges: np.ndarray
    counts: np.ndarray
    below_range: int
    above_range: int
    not_finite: int = 0

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    @property
    def slot_width(self) -> float:
        return float(self.edges[1] - self.edges[0])

    def as_dict(self) -> dict:
        return {
            "data_min": float(self.edges[0]),
            "data_max": float(self.edges[-1]),
            "n_slots": int(self.counts.size),
            "slot_width": self.slot_width,
            "edges": self.edges,
            "centres": self.centres,
            "counts": self.counts,
            "n_in_range": int(self.counts.sum()),
            "below_range": self.below_range,
            "above_range": self.above_range,
            "not_finite": self.not_finite,
        }


def histogram(values: np.ndarray, binning: Binning, weights: np.ndarray | None = None) -> Histogram:
    """Bin ``values`` like ``flex.histogram(values, data_min, data_max, n_slots)``.

    A value is in range when ``data_min - tol <= v <= data_max + tol`` with
    ``tol = slot_width * 1e-4``; its slot is ``int((v - data_min) / slot_width)`` for
    ``v - data_min >= slot_width``, else 0, capped at the last slot. ``weights``
    (integer counts) bins each value that many times (value counts in, same histogram).
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones(values.shape, dtype=np.int64) if weights is None else np.asarray(weights)
    low, high = binning.resolve(values)
    n_slots = binning.n_slots
    width = (high - low) / n_slots
    tolerance = width * RELATIVE_TOLERANCE
    finite = np.isfinite(values)
    below = finite & (values < low - tolerance)
    above = finite & (values > high + tolerance)
    kept = finite & ~below & ~above
    inside = values[kept]
    offset = inside - low
    slots = np.zeros(inside.shape, dtype=np.int64)
    beyond_first = (offset != 0) & (offset >= width)
    slots[beyond_first] = (offset[beyond_first] / width).astype(np.int64)
    np.minimum(slots, n_slots - 1, out=slots)
    counts = np.bincount(slots, weights=weights[kept], minlength=n_slots)
    counts = np.rint(counts).astype(np.int64)
    edges = low + width * np.arange(n_slots + 1, dtype=np.float64)
    edges[-1] = high
    return Histogram(
        edges=edges,
        counts=counts,
        below_range=int(weights[below].sum()),
        above_range=int(weights[above].sum()),
        not_finite=int(weights[~finite].sum()),
    )


@dataclass(frozen=True)
class Summary:
    """Summary statistics of a sample (all ``None`` for an empty sample)."""

    n: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    median: float | None = None
    std: float | None = None
    percentiles: dict[str, float] = field(default_factory=dict)


def summarise(values: np.ndarray) -> Summary:
    """n, min, max, mean, median, population std and percentiles of the finite values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Summary(n=0)
    points = np.percentile(values, PERCENTILES)
    return Summary(
        n=int(values.size),
        min=float(values.min()),
        max=float(values.max()),
        mean=float(values.mean()),
        median=float(np.median(values)),
        std=float(values.std()),
        percentiles={f"p{p}": float(v) for p, v in zip(PERCENTILES, points)},
    )


def summarise_counts(values: np.ndarray, counts: np.ndarray) -> Summary:
    """:func:`summarise` of the sample holding each of ``values`` ``counts`` times.

    Exact for integer values (spot sizes): the sums are integers, and percentiles use
    numpy's default linear interpolation between order statistics.
    """
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    keep = np.isfinite(values) & (counts > 0)
    values, counts = values[keep], counts[keep]
    if not values.size:
        return Summary(n=0)
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    n = int(counts.sum())
    cumulative = np.cumsum(counts)
    total = float(np.dot(values, counts))
    mean = total / n
    variance = float(np.dot(counts, (values - mean) ** 2)) / n

    def order_statistic(k: np.ndarray) -> np.ndarray:
        return values[np.searchsorted(cumulative, k, side="right")]

    def quantile(fraction: float) -> float:
        position = (n - 1) * fraction
        lower = int(np.floor(position))
        low_value, high_value = order_statistic(np.array([lower, min(lower + 1, n - 1)]))
        return float(low_value + (position - lower) * (high_value - low_value))

    return Summary(
        n=n,
        min=float(values[0]),
        max=float(values[-1]),
        mean=mean,
        median=quantile(0.5),
        std=float(np.sqrt(variance)),
        percentiles={f"p{p}": quantile(p / 100.0) for p in PERCENTILES},
    )


@dataclass(frozen=True)
class Distribution:
    """A sample's histogram and summary."""

    histogram: Histogram
    summary: Summary

    def as_dict(self) -> dict:
        return {"histogram": self.histogram.as_dict(), "summary": self.summary}


def distribution(values: np.ndarray, binning: Binning) -> Distribution:
    """Histogram and summary statistics of ``values``."""
    return Distribution(histogram(values, binning), summarise(values))


def ascii_histogram(hist: Histogram, width: int = 50) -> str:
    """A text rendering of the non-empty span of ``hist`` (for the log)."""
    counts = hist.counts
    nonzero = np.flatnonzero(counts)
    lines = [f"{'slot centre':>12} {'count':>8}"]
    if nonzero.size == 0:
        lines.append("(no values in range)")
    else:
        peak = counts.max()
        centres = hist.centres
        span = range(nonzero[0], nonzero[-1] + 1)
        if len(span) > MAX_ASCII_SLOTS:
            lines.append(
                f"({len(span)} slots: showing the non-empty ones, at most {MAX_ASCII_SLOTS})"
            )
            span = nonzero[:MAX_ASCII_SLOTS]
        for i in span:
            bar = "*" * int(round(width * counts[i] / peak))
            lines.append(f"{centres[i]:12.6g} {counts[i]:8d} {bar}")
    if hist.below_range or hist.above_range:
        lines.append(
            f"outside [{hist.edges[0]:g}, {hist.edges[-1]:g}]: "
            f"{hist.below_range} below, {hist.above_range} above"
        )
    return "\n".join(lines)
