"""Per-image statistics: counts by flag, intensity, I/sigma and spot size on every image.

An image is a (file, experiment id, frame) triple, frame = floor(z) of the observed
centroid (``xyzobs.px.value``; the predicted ``xyzcal.px`` for rows never observed). The
pipeline turns frames into image numbers with the experiments' scans; stills have one
image per experiment.

Every part of the partial is a sparse value count keyed by image, merged exactly by
addition, so that any split of the input gives identical results:

* counts of rows, strong, selected, indexed and integrated rows;
* total intensity in fixed point (``round(I * 256)`` summed as integers: exact, and the
  same whatever the order; the total is within n/512 counts of the float sum);
* the I/sigma histogram over fixed bins (:data:`ISIGMA_EDGES`);
* the median intensity from a log-bucket sketch (DDSketch-like, relative accuracy
  :data:`SKETCH_ALPHA`: the estimate of each order statistic is within 1% of it);
* spot sizes (signal pixels) as exact value counts, so the median size is exact;
* optionally DIALS's per-image analysis (ice rings, spots to 4 Å, d_min estimates): the
  partial keeps each selected spot's d (from the experiments' geometry) and intensity,
  and :meth:`PerImageStatistic.complete` analyses a task's images, which are whole (an
  image's rows are in one file), through an injected :class:`SpotAnalysis` (this module
  imports no DIALS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from dials_refl_stats.analysis.grouping import group_middles, lexsort_unless_sorted
from dials_refl_stats.analysis.spot_size import (
    NO_PIXELS,
    NUM_PIXELS,
    SHOEBOX_ALLOCATED,
    SHOEBOX_COUNT,
)
from dials_refl_stats.analysis.statistic import (
    ID_BITS,
    Chunk,
    Statistic,
    experiments_of_keys,
    merge_count_tables,
    merge_counts,
)
from dials_refl_stats.selection import FLAG_BITS

#: I/sigma bin edges; one more bin counts rows without a positive variance.
ISIGMA_EDGES = np.array([-np.inf, 0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, np.inf])
NO_SIGMA_BIN = ISIGMA_EDGES.size - 1
ISIGMA_LABELS = [
    *(
        f"{lo:g} to {hi:g}"
        if np.isfinite(lo) and np.isfinite(hi)
        else (f"< {hi:g}" if not np.isfinite(lo) else f">= {lo:g}")
        for lo, hi in zip(ISIGMA_EDGES[:-1], ISIGMA_EDGES[1:])
    ),
    "no sigma",
]

#: Relative accuracy of the intensity sketch.
SKETCH_ALPHA = 0.01
SKETCH_GAMMA = (1 + SKETCH_ALPHA) / (1 - SKETCH_ALPHA)
SKETCH_OFFSET = 1 << 20
#: Fixed-point scale of intensity sums.
FIXED_POINT = 256

COUNT_FIELDS = (
    "n_rows",
    "n_strong",
    "n_selected",
    "n_indexed",
    "n_integrated_sum",
    "n_integrated_prf",
)
KEPT_COLUMNS = ("x", "y", "panel", "intensity", "variance")

INTENSITY = "intensity.sum.value"
VARIANCE = "intensity.sum.variance"
OBSERVED = "xyzobs.px.value"
PREDICTED = "xyzcal.px"


#: ``np.log(SKETCH_GAMMA)``, the divisor of every value's log.
LOG_GAMMA = np.log(SKETCH_GAMMA)


def sketch_buckets(values: np.ndarray) -> np.ndarray:
    """Monotone integer bucket of each finite value: ``sign(v) * (ceil(log|v| / log
    gamma) + SKETCH_OFFSET)``, 0 for 0 (sign-symmetric log buckets). Computed in place
    over all values (no masked copies)."""
    buckets, _special = log_buckets(np.asarray(values, dtype=np.float64))
    return buckets


def log_buckets(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`sketch_buckets` of the finite non-zero ``values``; 0 for the others, whose
    positions come back too (``None`` when every value is finite and non-zero)."""
    magnitude = np.abs(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.log(magnitude, out=magnitude)  # -inf for 0, inf for inf, nan for nan
    scaled /= LOG_GAMMA
    np.ceil(scaled, out=scaled)
    special = ~np.isfinite(scaled)
    if not special.any():
        special = None
    else:
        scaled[special] = 0
    buckets = scaled.astype(np.int64)
    buckets += SKETCH_OFFSET
    np.negative(buckets, out=buckets, where=values < 0)
    if special is not None:
        buckets[special] = 0
    return buckets, special


def bucket_values(buckets: np.ndarray) -> np.ndarray:
    """The estimate of the values in each bucket (within :data:`SKETCH_ALPHA` of them)."""
    buckets = np.asarray(buckets, dtype=np.int64)
    k = np.abs(buckets) - SKETCH_OFFSET
    estimate = 2.0 * SKETCH_GAMMA ** k.astype(np.float64) / (SKETCH_GAMMA + 1.0)
    return np.where(buckets == 0, 0.0, np.sign(buckets) * estimate)


@dataclass(frozen=True)
class Sparse:
    """Integer counts keyed by tuples of integer arrays (unique, sorted)."""

    keys: tuple[np.ndarray, ...]
    counts: np.ndarray

    @classmethod
    def of(cls, keys: tuple[np.ndarray, ...], counts: np.ndarray) -> "Sparse":
        return cls(*merge_counts(keys, counts))

    def __add__(self, other: "Sparse") -> "Sparse":
        return Sparse(*merge_count_tables((self.keys, self.counts), (other.keys, other.counts)))


@dataclass(frozen=True)
class ImagePartial:
    """The partial of :class:`PerImageStatistic` (every part keyed by group, frame)."""

    counts: Sparse  # (group, frame, field)
    intensity: Sparse  # (group, frame) -> fixed-point sum
    isigma: Sparse  # (group, frame, bin)
    sketch: Sparse  # (group, frame, bucket)
    sizes: Sparse  # (group, frame, size)
    #: selected spots kept for the analysis until their images are complete: group,
    #: frame, experiment, d, intensity, variance
    spots: dict[str, np.ndarray] | None = None
    #: images whose files were all read (by :meth:`PerImageStatistic.complete`): their
    #: final values, ~200 bytes each, instead of their value counts and sketches
    finished: "ImageTable | None" = None
    #: file index -> path of the files with kept spots (to name one in an error)
    paths: dict[int, str] | None = None

    def __add__(self, other: "ImagePartial") -> "ImagePartial":
        spots = paths = None
        if self.spots is not None or other.spots is not None:
            parts = [p for p in (self.spots, other.spots) if p is not None]
            spots = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            paths = {**(self.paths or {}), **(other.paths or {})}
        return ImagePartial(
            self.counts + other.counts,
            self.intensity + other.intensity,
            self.isigma + other.isigma,
            self.sketch + other.sketch,
            self.sizes + other.sizes,
            spots,
            joined_tables(self.finished, other.finished),
            paths,
        )


class AnalysisFailure(Exception):
    """The analysis failed on image ``image`` (its index in the table analysed)."""

    def __init__(self, image: int, error: Exception | str):
        super().__init__(str(error))
        self.image, self.error = image, error


class SpotAnalysis(Protocol):
    """DIALS's per-image analysis, as the program gives it to the statistic (picklable)."""

    def spot_d(
        self, experiment: np.ndarray, panel: np.ndarray, xy: np.ndarray, path_of_row
    ) -> np.ndarray:
        """d of each spot (NaN without experiment); panels checked, naming the file."""

    def analyse(
        self,
        image_of_spot: np.ndarray,
        d: np.ndarray,
        intensity: np.ndarray,
        variance: np.ndarray,
        n_images: int,
    ) -> dict[str, np.ndarray]:
        """The per-image fields for spots grouped by image (0 .. n_images - 1)."""

    def failed(
        self, error: Exception | str, path: str, image_id: int, frame: int, experiment: int
    ) -> Exception:
        """The one-line error (to raise) for the analysis failing on one image."""


@dataclass
class ImageTable:
    """Per-image results, one entry per image with any row (sorted by group, frame)."""

    group: np.ndarray
    frame: np.ndarray
    counts: dict[str, np.ndarray]
    total_intensity: np.ndarray
    median_intensity: np.ndarray  # NaN where no selected spot
    isigma_histogram: np.ndarray  # (images, bins)
    median_spot_size: np.ndarray  # NaN where no size
    #: DIALS's per-image analysis fields (when analysed), one entry per image
    analysis: dict[str, np.ndarray] | None = None
    size_source: list[str] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return int(self.group.size)


#: Per-image arrays of :class:`ImageTable` (one entry per image, in this order).
IMAGE_ARRAYS = (
    "group",
    "frame",
    "total_intensity",
    "median_intensity",
    "isigma_histogram",
    "median_spot_size",
)


def joined_tables(first: ImageTable | None, second: ImageTable | None) -> ImageTable | None:
    """The images of both tables, ``first``'s first."""
    if first is None or second is None:
        return first if second is None else second
    joined = {n: np.concatenate([getattr(first, n), getattr(second, n)]) for n in IMAGE_ARRAYS}
    counts = {n: np.concatenate([first.counts[n], second.counts[n]]) for n in first.counts}
    analysis = None
    if (first.analysis is None) != (second.analysis is None):
        raise ValueError("joining an analysed table with one that is not")
    if first.analysis is not None:
        analysis = {n: np.concatenate([v, second.analysis[n]]) for n, v in first.analysis.items()}
    return ImageTable(counts=counts, analysis=analysis, **joined)


def sorted_table(table: ImageTable) -> ImageTable:
    """``table``'s images sorted by (group, frame)."""
    order = lexsort_unless_sorted(table.frame, table.group)
    if order is None:
        return table
    arrays = {n: getattr(table, n)[order] for n in IMAGE_ARRAYS}
    counts = {n: values[order] for n, values in table.counts.items()}
    analysis = None
    if table.analysis is not None:
        analysis = {n: values[order] for n, values in table.analysis.items()}
    return ImageTable(counts=counts, analysis=analysis, **arrays)


def _empty_sparse(n_keys: int) -> Sparse:
    nothing = np.zeros(0, dtype=np.int64)
    return Sparse(tuple(nothing for _ in range(n_keys)), nothing)


class PerImageStatistic(Statistic):
    """Counts, intensity, I/sigma and spot-size statistics per image."""

    name = "per_image"
    batchable = True

    def __init__(
        self, mask_code: int = 4, analysis: SpotAnalysis | None = None, sizes: bool = True
    ):
        self.shoebox_code = mask_code
        self.analysis = analysis
        self.sizes = sizes

    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        wanted = [OBSERVED]
        if PREDICTED in available:
            wanted.append(PREDICTED)
        for name in (INTENSITY, VARIANCE):
            # DIALS's analysis needs both: a file without them is a missing column
            if name in available or self.analysis is not None:
                wanted.append(name)
        if self.analysis is not None:
            wanted.append("panel")
        if self.sizes and "shoebox" in available:
            wanted.append("shoebox")
        elif self.sizes and NUM_PIXELS in available:
            wanted.append(NUM_PIXELS)
        return tuple(wanted)

    def can_read(self, available: frozenset[str]) -> bool:
        return OBSERVED in available

    def partial(self, chunk: Chunk) -> ImagePartial:
        columns = chunk.columns
        flags = np.asarray(columns["flags"], dtype=np.int64)
        group = chunk.group_keys(fold_unassigned=True)
        frame = image_frames(columns, flags)
        selected = chunk.selected
        n = flags.size

        def has(name: str) -> np.ndarray:
            return (flags & FLAG_BITS[name]) == FLAG_BITS[name]

        masks = {
            "n_rows": np.ones(n, dtype=bool),
            "n_strong": has("strong"),
            "n_selected": selected,
            "n_indexed": selected & has("indexed"),
            "n_integrated_sum": has("integrated_sum"),
            "n_integrated_prf": has("integrated_prf"),
        }
        fields = np.concatenate(
            [np.full(int(m.sum()), i, dtype=np.int64) for i, m in enumerate(masks.values())]
        )
        rows = np.concatenate([np.flatnonzero(m) for m in masks.values()])
        counts = Sparse.of((group[rows], frame[rows], fields), np.ones(rows.size))

        g, f = group[selected], frame[selected]
        intensity_part = _empty_sparse(2)
        isigma = sketch = _empty_sparse(3)
        if INTENSITY in columns:
            value = np.asarray(columns[INTENSITY], dtype=np.float64)[selected]
            finite = np.isfinite(value)
            fixed = np.rint(np.where(finite, value, 0.0) * FIXED_POINT).astype(np.int64)
            intensity_part = Sparse.of((g, f), fixed)
            sketch = Sparse.of(
                (g[finite], f[finite], sketch_buckets(value[finite])), finite[finite]
            )
            variance = (
                np.asarray(columns[VARIANCE], dtype=np.float64)[selected]
                if VARIANCE in columns
                else np.zeros(value.size)
            )
            isigma = Sparse.of((g, f, isigma_bins(value, variance)), np.ones(value.size))
        sizes = _empty_sparse(3)
        if SHOEBOX_COUNT in columns:
            size = np.where(columns[SHOEBOX_ALLOCATED], columns[SHOEBOX_COUNT], NO_PIXELS)[selected]
            sizes = Sparse.of((g, f, size), np.ones(size.size))
        elif NUM_PIXELS in columns:
            size = np.asarray(columns[NUM_PIXELS], dtype=np.int64)[selected]
            sizes = Sparse.of((g, f, size), np.ones(size.size))
        spots = paths = None
        if self.analysis is not None:
            files = chunk.files or (chunk.file,)
            paths = {file.index: file.path for file in files}
            experiment = experiments_of_keys(files, g)
            spots = {
                "group": g,
                "frame": f,
                "experiment": experiment,
                "d": self.analysis.spot_d(
                    experiment,
                    np.asarray(columns["panel"], dtype=np.int64)[selected],
                    np.asarray(columns[OBSERVED], dtype=np.float64)[selected][:, :2],
                    lambda row: paths[int(g[row]) >> ID_BITS],
                ),
                "intensity": np.asarray(columns.get(INTENSITY, np.zeros(n)), np.float64)[selected],
                "variance": np.asarray(columns.get(VARIANCE, np.zeros(n)), np.float64)[selected],
            }
        return ImagePartial(counts, intensity_part, isigma, sketch, sizes, spots, None, paths)

    def merge(self, first: ImagePartial, second: ImagePartial) -> ImagePartial:
        return first + second

    def complete(self, partial: ImagePartial | None) -> ImagePartial | None:
        """A task's partial, whose images are complete (an image belongs to one file's
        experiment, and a file to one task), as final per-image values: the same numbers
        :meth:`finalize` would give, without their value counts and sketches."""
        if partial is None:
            return None
        done = joined_tables(partial.finished, self._analysed(self._images(partial), partial))
        return ImagePartial(*(_empty_sparse(k) for k in (3, 2, 3, 3, 3)), finished=done)

    def finalize(self, partial: ImagePartial | None) -> ImageTable:
        if partial is None:
            partial = ImagePartial(*(_empty_sparse(k) for k in (3, 2, 3, 3, 3)))
        table = self._analysed(self._images(partial), partial)
        if partial.finished is not None:
            table = sorted_table(joined_tables(partial.finished, table))
            pairs = np.stack([table.group, table.frame])
            if table.n_images > 1 and not (np.diff(pairs, axis=1) != 0).any(axis=0).all():
                raise RuntimeError("an image was completed by two tasks")  # never: see complete
        return table

    def _analysed(self, table: ImageTable, partial: ImagePartial) -> ImageTable:
        """``table`` (the images of ``partial``'s value counts) with DIALS's per-image
        analysis of ``partial``'s kept spots, when the statistic runs it."""
        if self.analysis is None:
            return table
        spots = partial.spots or {
            "group": np.zeros(0, np.int64),
            "frame": np.zeros(0, np.int64),
            "experiment": np.zeros(0, np.int64),
            "d": np.zeros(0),
            "intensity": np.zeros(0),
            "variance": np.zeros(0),
        }
        # an image's spots are rows of one file, in their order there (as DIALS reads
        # them), whichever way the files were split
        image_of_spot = locate(table.group, table.frame, spots["group"], spots["frame"])
        try:
            table.analysis = self.analysis.analyse(
                image_of_spot, spots["d"], spots["intensity"], spots["variance"], table.n_images
            )
        except AnalysisFailure as failure:
            image = failure.image
            key = int(table.group[image])
            spot = int(np.flatnonzero(image_of_spot == image)[0])
            raise self.analysis.failed(
                failure.error,
                (partial.paths or {}).get(key >> ID_BITS, "?"),
                (key & ((1 << ID_BITS) - 1)) - 1,
                int(table.frame[image]),
                int(spots["experiment"][spot]),
            ) from None
        return table

    def _images(self, partial: ImagePartial) -> ImageTable:
        """The images of ``partial``'s value counts and sketches (not its finished ones)."""
        group, frame = image_keys(partial)
        n_images = group.size

        def index_of(keys: tuple[np.ndarray, ...]) -> np.ndarray:
            return locate(group, frame, keys[0], keys[1])

        counts = {name: np.zeros(n_images, dtype=np.int64) for name in COUNT_FIELDS}
        where = index_of(partial.counts.keys)
        for i, name in enumerate(COUNT_FIELDS):
            mine = partial.counts.keys[2] == i
            counts[name][where[mine]] = partial.counts.counts[mine]
        total = np.zeros(n_images)
        total[index_of(partial.intensity.keys)] = partial.intensity.counts / FIXED_POINT
        isigma = np.zeros((n_images, NO_SIGMA_BIN + 1), dtype=np.int64)
        isigma[index_of(partial.isigma.keys), partial.isigma.keys[2]] = partial.isigma.counts
        median_intensity = sketch_medians(
            index_of(partial.sketch.keys), partial.sketch.keys[2], partial.sketch.counts, n_images
        )
        sizes = partial.sizes
        measured = sizes.keys[2] != NO_PIXELS
        median_size = group_medians(
            index_of(tuple(k[measured] for k in sizes.keys)),
            sizes.keys[2][measured],
            sizes.counts[measured],
            n_images,
        )
        return ImageTable(
            group=group,
            frame=frame,
            counts=counts,
            total_intensity=total,
            median_intensity=np.where(counts["n_selected"] > 0, median_intensity, np.nan),
            isigma_histogram=isigma,
            median_spot_size=median_size,
        )


def image_frames(columns: dict[str, np.ndarray], flags: np.ndarray) -> np.ndarray:
    """floor(z): observed z for observed/strong rows, predicted z for the others."""
    z = np.asarray(columns[OBSERVED], dtype=np.float64)[:, 2]
    if PREDICTED in columns:
        observed = (flags & (FLAG_BITS["observed"] | FLAG_BITS["strong"])) != 0
        z = np.where(observed, z, np.asarray(columns[PREDICTED], dtype=np.float64)[:, 2])
    z = np.where(np.isfinite(z), z, 0.0)
    return np.floor(np.clip(z, -(2.0**40), 2.0**40)).astype(np.int64)


def isigma_bins(value: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Bin of I/sigma in :data:`ISIGMA_EDGES` (:data:`NO_SIGMA_BIN` without sigma)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = value / np.sqrt(variance)
    has_sigma = (variance > 0) & np.isfinite(ratio)
    bins = np.searchsorted(ISIGMA_EDGES, ratio, side="right") - 1
    return np.where(has_sigma, np.clip(bins, 0, NO_SIGMA_BIN - 1), NO_SIGMA_BIN)


def image_keys(partial: ImagePartial) -> tuple[np.ndarray, np.ndarray]:
    """Every (group, frame) with any row, sorted."""
    (group, frame), _ = merge_counts(
        partial.counts.keys[:2], np.zeros(partial.counts.counts.size, dtype=np.int64)
    )
    return group, frame


def locate(group: np.ndarray, frame: np.ndarray, g: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Index of each (g, f) pair in the sorted unique (group, frame) pairs (one sort)."""
    n_images = group.size
    is_query = np.concatenate([np.zeros(n_images, np.int8), np.ones(g.size, np.int8)])
    order = np.lexsort((is_query, np.concatenate([frame, f]), np.concatenate([group, g])))
    images_before = np.cumsum(is_query[order] == 0) - 1
    index = np.empty(g.size, dtype=np.int64)
    queries = is_query[order] == 1
    index[order[queries] - n_images] = images_before[queries]
    return index


def group_medians(
    group: np.ndarray, values: np.ndarray, counts: np.ndarray, n_groups: int
) -> np.ndarray:
    """Exact median of each group's value counts (NaN for none)."""
    low, high, has = group_middles(group, values, counts, n_groups)
    return np.where(has, 0.5 * (low.astype(np.float64) + high), np.nan)


def sketch_medians(
    group: np.ndarray, buckets: np.ndarray, counts: np.ndarray, n_groups: int
) -> np.ndarray:
    """Median of each group from its sketch buckets (NaN for none)."""
    low, high, has = group_middles(group, buckets, counts, n_groups)
    return np.where(has, 0.5 * (bucket_values(low) + bucket_values(high)), np.nan)
