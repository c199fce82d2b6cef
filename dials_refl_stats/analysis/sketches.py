"""Partials of bounded size for values that cross groups: exact while few, then not.

:class:`MedianState` holds every value up to :data:`EXACT_MEDIAN_VALUES`, then a
log-bucket sketch (within 1%, as ``per_image_statistics``' medians); :class:`Sample`
keeps the :data:`PLOT_SAMPLE` points with the smallest hash of a unique key. Both merge
so that the result depends only on what was merged, never on the split or the order:
the form a median state takes depends only on the total, and hashes of distinct keys
are distinct. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_refl_stats.analysis.per_image import bucket_values, log_buckets

#: Points kept for the plot (a deterministic uniform sample beyond this).
PLOT_SAMPLE = 100_000
#: A median is exact up to this many values.
EXACT_MEDIAN_VALUES = 1 << 22


def splitmix64(values: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix (SplitMix64's finaliser): a fixed pseudo-random order."""
    x = np.asarray(values).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sketched(n_values: int) -> bool:
    """Whether the median of a run of ``n_values`` values is a sketch."""
    return n_values > EXACT_MEDIAN_VALUES


@dataclass(frozen=True)
class MedianState:
    """Every value while there are few (exact median), else a log-bucket sketch."""

    values: np.ndarray | None
    buckets: np.ndarray | None = None  # sorted distinct buckets ...
    counts: np.ndarray | None = None  # ... and their counts
    n_nan: int = 0

    @classmethod
    def of(cls, values: np.ndarray) -> "MedianState":
        return cls(np.asarray(values, dtype=np.float64)).bounded()

    @property
    def n(self) -> int:
        if self.values is not None:
            return int(self.values.size)
        return int(self.counts.sum()) + self.n_nan

    def bounded(self) -> "MedianState":
        if self.values is None or not sketched(self.values.size):
            return self
        return self.forced()

    def __add__(self, other: "MedianState") -> "MedianState":
        if self.values is not None and other.values is not None:
            return MedianState(np.concatenate([self.values, other.values])).bounded()
        first, second = (s if s.values is None else s.forced() for s in (self, other))
        buckets, counts = _summed([first.buckets, second.buckets], [first.counts, second.counts])
        return MedianState(None, buckets, counts, first.n_nan + second.n_nan)

    def forced(self) -> "MedianState":
        """This state as a sketch, whatever its size (bucketed in blocks: few temporaries)."""
        if self.values is None:
            return self
        buckets, counts, n_nan = [], [], 0
        for start in range(0, self.values.size, SKETCH_BLOCK):
            block = self.values[start : start + SKETCH_BLOCK]
            nan = np.isnan(block)
            n_nan += int(nan.sum())
            distinct, count = distinct_counts(value_buckets(block[~nan]))
            buckets.append(distinct)
            counts.append(count)
        return MedianState(None, *_summed(buckets, counts), n_nan)

    @property
    def exact(self) -> bool:
        return self.values is not None

    def median(self) -> float | None:
        if self.n == 0:
            return None
        if self.values is not None:
            return float(np.median(self.values))
        if self.n_nan:
            return float("nan")
        total = int(self.counts.sum())
        cumulative = np.cumsum(self.counts)
        low = self.buckets[np.searchsorted(cumulative, (total - 1) // 2, side="right")]
        high = self.buckets[np.searchsorted(cumulative, total // 2, side="right")]
        return float(0.5 * (bucket_value(low) + bucket_value(high)))


#: Values bucketed at a time when a median state becomes a sketch (temporaries of
#: 512 kB: reused memory, where fresh pages of 1 M-value blocks cost more than the work).
SKETCH_BLOCK = 1 << 16


def _summed(buckets: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct buckets (sorted) and their summed counts, exactly."""
    distinct, inverse = np.unique(np.concatenate(buckets), return_inverse=True)
    summed = np.zeros(distinct.size, dtype=np.int64)
    np.add.at(summed, inverse.ravel(), np.concatenate(counts))
    return distinct, summed


#: Sketch buckets of infinite values (beyond every finite value's).
INFINITE_BUCKET = 1 << 40


def distinct_counts(buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(buckets, return_counts=True)`` (counts as int64), by one ``bincount``
    when the finite buckets span a range of the order of their number (no sort)."""
    infinite = np.abs(buckets) >= INFINITE_BUCKET
    finite = buckets[~infinite] if infinite.any() else buckets
    low, high = (int(finite.min()), int(finite.max())) if finite.size else (0, -1)
    if not finite.size or high - low > 4 * finite.size + (1 << 16):
        distinct, counts = np.unique(buckets, return_counts=True)
        return distinct, counts.astype(np.int64)
    binned = np.bincount(finite - low, minlength=high - low + 1)
    present = np.flatnonzero(binned)
    distinct, counts = present + low, binned[present].astype(np.int64)
    if infinite.any():  # -inf's bucket first, +inf's last
        ends = np.array([-INFINITE_BUCKET, INFINITE_BUCKET], dtype=np.int64)
        n = np.array([np.count_nonzero(buckets == e) for e in ends], dtype=np.int64)
        distinct = np.concatenate([ends[:1][n[:1] > 0], distinct, ends[1:][n[1:] > 0]])
        counts = np.concatenate([n[:1][n[:1] > 0], counts, n[1:][n[1:] > 0]])
    return distinct.astype(np.int64), counts


def value_buckets(values: np.ndarray) -> np.ndarray:
    """:func:`sketch_buckets`, with infinities in buckets of their own (no NaN)."""
    values = np.asarray(values, dtype=np.float64)
    buckets, special = log_buckets(values)
    if special is not None:
        infinite = special & np.isinf(values)
        buckets[infinite] = np.where(values[infinite] > 0, INFINITE_BUCKET, -INFINITE_BUCKET)
    return buckets


def sample_cutoff(smallest: np.ndarray) -> int | None:
    """The largest of the :data:`PLOT_SAMPLE` smallest hashes of the points of some
    samples (:meth:`Sample.smallest_hashes`), if there are that many: no point with a
    larger hash can be in a merge with those samples. ``None`` otherwise."""
    return int(smallest.max()) if smallest.size >= PLOT_SAMPLE else None


def bucket_value(bucket: int) -> float:
    if abs(int(bucket)) == INFINITE_BUCKET:
        return float(np.sign(bucket)) * np.inf
    return float(bucket_values(np.array([bucket]))[0])


@dataclass(frozen=True)
class Sample:
    """The plot's points: those with the :data:`PLOT_SAMPLE` smallest hashes."""

    order_key: np.ndarray  # a unique key of each point (file << 32 | row)
    series_key: np.ndarray
    x: np.ndarray
    intensity: np.ndarray
    n_seen: int

    def __add__(self, other: "Sample") -> "Sample":
        joined = [np.concatenate([a, b]) for a, b in zip(self.arrays(), other.arrays())]
        return Sample(*joined, n_seen=self.n_seen + other.n_seen).bounded()

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.order_key, self.series_key, self.x, self.intensity)

    def bounded(self) -> "Sample":
        if self.order_key.size <= PLOT_SAMPLE:
            return self
        # hashes of distinct keys are distinct: the kept set does not depend on the split
        keep = np.argpartition(splitmix64(self.order_key), PLOT_SAMPLE - 1)[:PLOT_SAMPLE]
        return Sample(*(a[keep] for a in self.arrays()), n_seen=self.n_seen)

    @property
    def complete(self) -> bool:
        return self.order_key.size == self.n_seen

    def smallest_hashes(self, kept: np.ndarray | None = None) -> np.ndarray:
        """The :data:`PLOT_SAMPLE` smallest of ``kept`` (hashes of points of other
        samples) and this sample's points' hashes."""
        hashes = splitmix64(self.order_key)
        if kept is not None:
            hashes = np.concatenate([kept, hashes])
        if hashes.size > PLOT_SAMPLE:
            hashes = np.partition(hashes, PLOT_SAMPLE - 1)[:PLOT_SAMPLE]
        return hashes

    def pruned(self, cutoff: int) -> "Sample":
        """Without the points whose hash is above ``cutoff`` (:func:`sample_cutoff`:
        merged with the samples it came from, they would be left out); ``n_seen`` kept."""
        keep = splitmix64(self.order_key) <= np.uint64(cutoff)
        if keep.all():
            return self
        return Sample(*(a[keep] for a in self.arrays()), n_seen=self.n_seen)
