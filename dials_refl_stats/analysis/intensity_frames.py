"""Intensity per frame as a mergeable statistic: each task finishes its own series.

A series (an experiment's scan, a file's stills, rows without an experiment) never spans
files, and a task reads whole files, so :meth:`IntensityFramesStatistic.complete` turns a
task's selected rows into their series' exact per-frame tables and summaries (the same
arithmetic as :func:`~dials_refl_stats.analysis.intensity_per_frame.per_frame_table`,
for every series at once). What a task returns does not grow with its rows, except:

* the overall median of each intensity: exact while the run has at most
  :data:`~.sketches.EXACT_MEDIAN_VALUES` selected intensities, else from a log-bucket
  sketch (within 1%; recorded in the JSON), a :class:`~.sketches.MedianState`;
* the points for the plot: the :data:`~.sketches.PLOT_SAMPLE` rows with the smallest
  hash of (file, row) (all of them when there are fewer), a :class:`~.sketches.Sample`;
* every selected row, only when asked for (``output.points``).

Merging only joins finished series, so any split of the input gives identical results.
Pure numpy; no DIALS.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dials_refl_stats.analysis.grouping import stable_order
from dials_refl_stats.analysis.intensity_per_frame import (
    IntensitySummary,
    bin_medians,
    image_numbers,
    plot_positions,
    z_floor_frames,
)
from dials_refl_stats.analysis.rows import flag_bit_counts
from dials_refl_stats.analysis.sketches import MedianState, Sample, sample_cutoff, sketched
from dials_refl_stats.analysis.statistic import (
    ID_BITS,
    Chunk,
    FileInfo,
    Statistic,
    experiments_of_keys,
    split_group_key,
)
from dials_refl_stats.reflections import ReflectionLoadError
from dials_refl_stats.selection import FlagSelection

ID_MASK = (1 << ID_BITS) - 1

#: Numbering codes of a series (see :mod:`dials_refl_stats.frames`).
IMAGE_NUMBER, EXPERIMENT_INDEX, Z_FLOOR = 0, 1, 2
NUMBERING_NAMES = ("image_number", "experiment_index", "z_floor")

#: Frames further than this from image 0 are not real images (corrupt centroids); the
#: per-frame tables are dense, so this also bounds their size.
MAX_FRAME = 10**6


class FrameError(ReflectionLoadError):
    """Selected rows without a usable frame (corrupt centroids, an id without an
    experiment); the run stops, with ``input.on_error=skip`` too."""

    skippable = False


@dataclass(frozen=True)
class IntensityColumns:
    """One intensity choice: its columns and the rows it uses."""

    name: str
    value: str
    variance: str
    selection: FlagSelection


@dataclass(frozen=True)
class Rows:
    """A chunk's selected rows, not yet on frame axes."""

    files: tuple[FileInfo, ...]
    key: np.ndarray  # run-wide (file, id) key
    order_key: np.ndarray  # run-wide (file, row) key (:meth:`Chunk.order_keys`)
    z: np.ndarray
    masks: np.ndarray  # (choices, rows): used by each intensity
    value: np.ndarray  # (choices, rows)
    variance: np.ndarray  # (choices, rows)


@dataclass(frozen=True)
class ChoiceParts:
    """One intensity's finished series: summaries (per series), bins, and the rest."""

    #: per series (``series_key``): n, n_non_positive, n_with_sigma, sum, sum_ios, median,
    #: frame_min, frame_max, n_outside
    summary: dict[str, np.ndarray]
    #: per frame bin: series_key, frame_first, count, n_with_sigma, n_non_positive, sum,
    #: sum_ios, median
    bins: dict[str, np.ndarray]
    file_index: np.ndarray  # files with selected rows ...
    file_selected: np.ndarray  # ... and how many
    median: MedianState
    sample: Sample
    points: dict[str, np.ndarray] | None


@dataclass(frozen=True)
class Finished:
    """Finished series of some files (keyed by series key: file << ID_BITS | id + 1 of
    their first experiment group)."""

    series: dict[str, np.ndarray]  # key, numbering, image_first, image_last
    groups: dict[str, np.ndarray]  # series_key, key (file, id)
    choices: tuple[ChoiceParts, ...]


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``total / count``; NaN where ``count`` is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _joined(first: Finished | None, second: Finished | None) -> Finished | None:
    if first is None or second is None:
        return first or second

    def cat(a: dict | None, b: dict | None) -> dict | None:
        if a is None or b is None:
            return a or b
        return {k: np.concatenate([a[k], b[k]]) for k in a}

    choices = tuple(
        ChoiceParts(
            summary=cat(a.summary, b.summary),
            bins=cat(a.bins, b.bins),
            file_index=np.concatenate([a.file_index, b.file_index]),
            file_selected=np.concatenate([a.file_selected, b.file_selected]),
            median=a.median + b.median,
            sample=a.sample + b.sample,
            points=cat(a.points, b.points),
        )
        for a, b in zip(first.choices, second.choices)
    )
    return Finished(cat(first.series, second.series), cat(first.groups, second.groups), choices)


@dataclass(frozen=True)
class IntensityPartial:
    """Chunks' selected rows until their task completes them, then finished series;
    and how many rows (selected or not) carry each flag bit, for the empty-selection
    hint."""

    rows: tuple[Rows, ...] = ()
    finished: Finished | None = None
    flag_counts: np.ndarray = field(default_factory=lambda: np.zeros(32, dtype=np.int64))

    def __add__(self, other: "IntensityPartial") -> "IntensityPartial":
        return IntensityPartial(
            self.rows + other.rows,
            _joined(self.finished, other.finished),
            self.flag_counts + other.flag_counts,
        )


@dataclass(frozen=True)
class ChoiceFrames:
    """One intensity over the run: per-series summaries and per-frame bins (columns)."""

    #: per series: n, n_non_positive, n_with_sigma, mean, median, mean_i_over_sigma,
    #: frame_min, frame_max, n_outside
    summary: dict[str, np.ndarray]
    bins: dict[str, np.ndarray]  # series (index), frame_first, frame_last, count, ...
    overall: IntensitySummary
    median_exact: bool
    file_index: np.ndarray
    file_selected: np.ndarray
    sample_series: np.ndarray
    sample_x: np.ndarray
    sample_intensity: np.ndarray
    sample_complete: bool
    points: dict[str, np.ndarray] | None

    def bin_bounds(self, n_series: int) -> np.ndarray:
        """Bins of series ``k``: ``bounds[k]:bounds[k + 1]``."""
        return np.searchsorted(self.bins["series"], np.arange(n_series + 1))


@dataclass(frozen=True)
class IntensityFrames:
    """The run's series (sorted by file, then first experiment id) and each intensity."""

    bin_width: int
    series_key: np.ndarray
    numbering: np.ndarray  # codes: IMAGE_NUMBER, EXPERIMENT_INDEX, Z_FLOOR
    image_first: np.ndarray  # -1 with image_last -2: no scan
    image_last: np.ndarray
    group_series: np.ndarray  # experiment groups (file, id), sorted, and their series
    group_key: np.ndarray
    choices: tuple[ChoiceFrames, ...]
    flag_counts: np.ndarray

    @property
    def n_series(self) -> int:
        return int(self.series_key.size)

    def image_range(self, k: int) -> tuple[int, int] | None:
        if self.numbering[k] != IMAGE_NUMBER:
            return None
        return int(self.image_first[k]), int(self.image_last[k])


class IntensityFramesStatistic(Statistic):
    """Per-frame intensity tables of every series, finished in the tasks."""

    name = "intensity_per_frame"
    batchable = True

    def __init__(
        self,
        choices: Sequence[IntensityColumns],
        frame_column: str,
        bin_width: int,
        *,
        scans: dict[int, tuple[int, int]] | None = None,
        with_experiments: bool = False,
        points: bool = False,
    ):
        self.choices = tuple(choices)
        self.frame_column = frame_column
        self.bin_width = int(bin_width)
        self.with_experiments = with_experiments
        scans = scans or {}
        self.scan_index = np.array(sorted(scans), dtype=np.int64)
        self.scan_first = np.array([scans[i][0] for i in sorted(scans)], dtype=np.int64)
        self.scan_last = np.array([scans[i][1] for i in sorted(scans)], dtype=np.int64)
        self.points = points

    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        wanted = [self.frame_column]
        for choice in self.choices:
            wanted += [choice.value, choice.variance]
        return tuple(dict.fromkeys(wanted))

    def empty(self) -> IntensityPartial:
        return IntensityPartial()

    def partial(self, chunk: Chunk) -> IntensityPartial:
        flags = chunk.columns["flags"]
        selected = chunk.selected
        rows = np.flatnonzero(selected)
        flags_kept = np.asarray(flags)[rows]
        wanted = np.array([c.selection.apply(flags_kept) for c in self.choices]).reshape(
            len(self.choices), rows.size
        )
        # a file that fell back (never integrated) uses its fallback rows for every choice
        masks = wanted | ~wanted.any(axis=0)
        block = Rows(
            files=tuple(chunk.files or (chunk.file,)),
            key=chunk.group_keys()[rows],
            order_key=chunk.order_keys(rows),
            z=np.asarray(chunk.columns[self.frame_column], dtype=np.float64)[rows, 2],
            masks=masks,
            value=np.array(
                [np.asarray(chunk.columns[c.value], dtype=np.float64)[rows] for c in self.choices]
            ).reshape(masks.shape),
            variance=np.array(
                [
                    np.asarray(chunk.columns[c.variance], dtype=np.float64)[rows]
                    for c in self.choices
                ]
            ).reshape(masks.shape),
        )
        return IntensityPartial((block,), None, flag_bit_counts(flags))

    def merge(self, first: IntensityPartial, second: IntensityPartial) -> IntensityPartial:
        return first + second

    def fold_hint(self, state: tuple | None, partial: IntensityPartial) -> tuple | None:
        """Per intensity: values merged so far, and the smallest plot-point hashes."""
        if partial.finished is None:
            return state
        state = state or tuple((0, None) for _ in self.choices)
        return tuple(
            (n + part.median.n, part.sample.smallest_hashes(hashes))
            for (n, hashes), part in zip(state, partial.finished.choices)
        )

    def prune_hint(self, state: tuple) -> tuple | None:
        """Per intensity: whether the run's median is a sketch already (more than
        :data:`~.sketches.EXACT_MEDIAN_VALUES` values merged: later tasks send theirs
        as sketches), and the cutoff of the plot points merged (later tasks send only
        points hashed below it); ``None`` when neither is known yet."""
        hints = tuple(
            (sketched(n), None if hashes is None else sample_cutoff(hashes)) for n, hashes in state
        )
        return hints if any(h != (False, None) for h in hints) else None

    def pruned(self, partial: IntensityPartial, hint: tuple) -> IntensityPartial:
        """Medians as sketches, samples below their cutoffs (:meth:`prune_hint`)."""
        if partial.finished is None:
            return partial
        choices = tuple(
            dataclasses.replace(
                part,
                median=part.median.forced() if sketch else part.median,
                sample=part.sample if cutoff is None else part.sample.pruned(cutoff),
            )
            for part, (sketch, cutoff) in zip(partial.finished.choices, hint)
        )
        finished = dataclasses.replace(partial.finished, choices=choices)
        return dataclasses.replace(partial, finished=finished)

    def complete(self, partial: IntensityPartial | None) -> IntensityPartial | None:
        """A task's rows as finished series (its files are whole)."""
        if partial is None or not partial.rows:
            return partial
        finished = self._finish(partial.rows)
        return IntensityPartial((), _joined(partial.finished, finished), partial.flag_counts)

    def finalize(self, partial: IntensityPartial | None) -> IntensityFrames:
        partial = self.complete(partial) or IntensityPartial()
        finished = partial.finished or self._finish(())
        order = np.argsort(finished.series["key"], kind="stable")
        series = {k: v[order] for k, v in finished.series.items()}
        group_order = np.argsort(finished.groups["key"], kind="stable")
        group_key = finished.groups["key"][group_order]
        group_series = np.searchsorted(series["key"], finished.groups["series_key"][group_order])
        choices = tuple(self._final_choice(c, series["key"]) for c in finished.choices)
        return IntensityFrames(
            bin_width=self.bin_width,
            series_key=series["key"],
            numbering=series["numbering"],
            image_first=series["image_first"],
            image_last=series["image_last"],
            group_series=group_series,
            group_key=group_key,
            choices=choices,
            flag_counts=partial.flag_counts,
        )

    def _final_choice(self, parts: ChoiceParts, series_key: np.ndarray) -> ChoiceFrames:
        index_of = np.searchsorted  # series keys are sorted and unique
        order = np.argsort(parts.summary["series_key"], kind="stable")
        s = {k: v[order] for k, v in parts.summary.items()}
        n = s["n"]
        summary = {
            "n": n,
            "n_non_positive": s["n_non_positive"],
            "n_with_sigma": s["n_with_sigma"],
            "mean": _mean(s["sum"], n),
            "median": s["median"],
            "mean_i_over_sigma": _mean(s["sum_ios"], s["n_with_sigma"]),
            "frame_min": s["frame_min"],
            "frame_max": s["frame_max"],
            "n_outside": s["n_outside"],
        }
        b = parts.bins
        bin_series = index_of(series_key, b["series_key"])
        order = np.lexsort((b["frame_first"], bin_series))
        b = {k: v[order] for k, v in b.items()}
        bins = {
            "series": bin_series[order],
            "frame_first": b["frame_first"],
            "frame_last": b["frame_first"] + self.bin_width - 1,
            "count": b["count"],
            "mean": _mean(b["sum"], b["count"]),
            "median": b["median"],
            "mean_i_over_sigma": _mean(b["sum_ios"], b["n_with_sigma"]),
            "n_with_sigma": b["n_with_sigma"],
            "n_non_positive": b["n_non_positive"],
        }
        total = int(n.sum())
        n_sigma = int(s["n_with_sigma"].sum())
        filled = n > 0
        overall = IntensitySummary(n=0, n_non_positive=0, n_with_sigma=0)
        if total:
            overall = IntensitySummary(
                n=total,
                n_non_positive=int(s["n_non_positive"].sum()),
                n_with_sigma=n_sigma,
                mean=float(np.sum(s["sum"]) / total),
                median=parts.median.median(),
                mean_i_over_sigma=float(np.sum(s["sum_ios"]) / n_sigma) if n_sigma else None,
                frame_min=int(s["frame_min"][filled].min()),
                frame_max=int(s["frame_max"][filled].max()),
            )
        sample = parts.sample
        order = np.argsort(sample.order_key, kind="stable")
        points = parts.points
        if points is not None:
            order_points = np.argsort(points["order_key"], kind="stable")
            points = {k: v[order_points] for k, v in points.items()}
            points = {
                "file_index": points["order_key"] >> ID_BITS,
                "row": points["order_key"] & ((1 << ID_BITS) - 1),
                "series": index_of(series_key, points["series_key"]),
                **{k: points[k] for k in ("frame", "z", "intensity", "variance")},
            }
        files = np.argsort(parts.file_index, kind="stable")
        return ChoiceFrames(
            summary=summary,
            bins=bins,
            overall=overall,
            median_exact=parts.median.exact,
            file_index=parts.file_index[files],
            file_selected=parts.file_selected[files],
            sample_series=index_of(series_key, sample.series_key[order]),
            sample_x=sample.x[order],
            sample_intensity=sample.intensity[order],
            sample_complete=sample.complete,
            points=points,
        )

    # -- a task's rows -> finished series -------------------------------------------

    def _finish(self, blocks: Sequence[Rows]) -> Finished:
        files = {f.index: f for b in blocks for f in b.files}
        n_choices = len(self.choices)

        def cat(name: str, shape=None) -> np.ndarray:
            parts = [getattr(b, name) for b in blocks]
            if not parts:
                return np.zeros(shape or 0)
            return np.concatenate(parts, axis=-1)

        key = cat("key").astype(np.int64)
        order_key = cat("order_key").astype(np.int64)
        z = cat("z")
        masks = cat("masks", (n_choices, 0)).astype(bool).reshape(n_choices, -1)
        value = cat("value", (n_choices, 0)).reshape(n_choices, -1)
        variance = cat("variance", (n_choices, 0)).reshape(n_choices, -1)
        if order_key.size > 1 and (np.diff(order_key) < 0).any():  # into file, row order
            order = np.argsort(order_key, kind="stable")
            key, z, order_key = key[order], z[order], order_key[order]
            masks, value, variance = masks[:, order], value[:, order], variance[:, order]
        self._check_frames(z, key, files)

        group_key, group_of_row = np.unique(key, return_inverse=True)
        group_of_row = group_of_row.ravel()
        numbering, experiment, first, last = self._axes(group_key, files)
        series_of_group_key = self._series_keys(group_key, numbering)
        series_key, series_of_group = np.unique(series_of_group_key, return_inverse=True)
        series_of_group = series_of_group.ravel()
        lead = np.unique(series_of_group, return_index=True)[1]  # the first group of each
        series = {
            "key": series_key,
            "numbering": numbering[lead],
            "image_first": first[lead],
            "image_last": last[lead],
        }
        g = group_of_row
        frames = np.where(
            numbering[g] == IMAGE_NUMBER,
            image_numbers(z, first[g]),
            np.where(numbering[g] == EXPERIMENT_INDEX, experiment[g], z_floor_frames(z)),
        )
        series_of_row = series_of_group[g]
        choices = tuple(
            self._choice(
                series,
                series_of_row[masks[c]],
                frames[masks[c]],
                z[masks[c]],
                value[c][masks[c]],
                variance[c][masks[c]],
                order_key[masks[c]],
            )
            for c in range(n_choices)
        )
        groups = {"series_key": series_key[series_of_group], "key": group_key}
        return Finished(series, groups, choices)

    def _check_frames(self, z: np.ndarray, key: np.ndarray, files: dict[int, FileInfo]) -> None:
        bad = ~np.isfinite(z) | (np.abs(z) > MAX_FRAME)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            path = files[int(key[first] >> ID_BITS)].path
            in_file = (key >> ID_BITS) == (key[first] >> ID_BITS)
            raise FrameError(
                f"{path}: {int((bad & in_file).sum())} selected rows have {self.frame_column} "
                f"z = {z[first]:g} (beyond +-{MAX_FRAME} frames): corrupt centroids"
            )

    def _axes(self, group_key: np.ndarray, files: dict[int, FileInfo]):
        """Numbering, experiment index and image range (-1, -2: none) of each group."""
        n = group_key.size
        experiment = np.full(n, -1, dtype=np.int64)
        if self.with_experiments:
            experiment = experiments_of_keys(list(files.values()), group_key)
            unknown = np.flatnonzero((experiment < 0) & ((group_key & ID_MASK) > 0))
            if unknown.size:
                file_index, table_id = split_group_key(group_key[unknown[0]])
                raise FrameError(
                    f"{files[file_index].path}: rows with id {table_id} match none of the "
                    "experiments given"
                )
        first = np.full(n, -1, dtype=np.int64)
        last = np.full(n, -2, dtype=np.int64)
        numbering = np.full(n, Z_FLOOR, dtype=np.int64)
        known = experiment >= 0
        numbering[known] = EXPERIMENT_INDEX
        if self.scan_index.size and known.any():
            where = np.minimum(
                np.searchsorted(self.scan_index, experiment), self.scan_index.size - 1
            )
            scan = known & (self.scan_index[where] == experiment)
            numbering[scan] = IMAGE_NUMBER
            first[scan], last[scan] = self.scan_first[where[scan]], self.scan_last[where[scan]]
        return numbering, experiment, first, last

    @staticmethod
    def _series_keys(group_key: np.ndarray, numbering: np.ndarray) -> np.ndarray:
        """Each group's series key: its own, or for stills its file's first stills group."""
        series_key = group_key.copy()
        still = np.flatnonzero(numbering == EXPERIMENT_INDEX)
        if still.size:
            still_files = group_key[still] >> ID_BITS
            _, first, inverse = np.unique(still_files, return_index=True, return_inverse=True)
            series_key[still] = group_key[still][first][inverse.ravel()]
        return series_key

    def _choice(self, series, s, frames, z, intensity, variance, order_key) -> ChoiceParts:
        n_series = series["key"].size
        has_sigma = variance > 0
        ios = np.zeros(intensity.size)
        ios[has_sigma] = intensity[has_sigma] / np.sqrt(variance[has_sigma])
        n = np.bincount(s, minlength=n_series).astype(np.int64)
        grouped = stable_order(s)
        starts = np.cumsum(n) - n
        filled = n > 0
        frame_min = np.zeros(n_series, dtype=np.int64)
        frame_max = np.zeros(n_series, dtype=np.int64)
        if filled.any():
            sorted_frames = frames[grouped]
            frame_min[filled] = np.minimum.reduceat(sorted_frames, starts[filled])
            frame_max[filled] = np.maximum.reduceat(sorted_frames, starts[filled])
        first, last = series["image_first"], series["image_last"]
        scan = series["numbering"] == IMAGE_NUMBER
        outside = scan[s] & ((frames < first[s]) | (frames > last[s]))
        summary = {
            "series_key": series["key"],
            "n": n,
            "n_non_positive": np.bincount(s[intensity <= 0], minlength=n_series),
            "n_with_sigma": np.bincount(s[has_sigma], minlength=n_series),
            "sum": np.bincount(s, weights=intensity, minlength=n_series),
            "sum_ios": np.bincount(s[has_sigma], weights=ios[has_sigma], minlength=n_series),
            "median": bin_medians(s, intensity, n),
            "frame_min": frame_min,
            "frame_max": frame_max,
            "n_outside": np.bincount(s[outside], minlength=n_series),
        }
        bins = self._bins(series, s, frames, intensity, has_sigma, ios, summary)

        rank = np.empty(s.size, dtype=np.int64)  # each row's index in its series
        rank[grouped] = np.arange(s.size) - np.repeat(starts, n)
        x = plot_positions(frames, z, series["numbering"][s] != EXPERIMENT_INDEX, rank)
        sample = Sample(order_key, series["key"][s], x, intensity, int(s.size)).bounded()
        files, file_counts = np.unique(order_key >> ID_BITS, return_counts=True)
        points = None
        if self.points:
            points = {
                "order_key": order_key,
                "series_key": series["key"][s],
                "frame": frames,
                "z": z,
                "intensity": intensity,
                "variance": variance,
            }
        return ChoiceParts(
            summary=summary,
            bins=bins,
            file_index=files.astype(np.int64),
            file_selected=file_counts.astype(np.int64),
            median=MedianState.of(intensity),
            sample=sample,
            points=points,
        )

    def _bins(self, series, s, frames, intensity, has_sigma, ios, summary) -> dict:
        """Per-frame bins of every series: ``per_frame_table``'s, for all at once."""
        width = self.bin_width
        n = summary["n"]
        scan = series["numbering"] == IMAGE_NUMBER
        first, last = series["image_first"], series["image_last"]
        data_min, data_max = summary["frame_min"], summary["frame_max"]
        filled = n > 0
        origin = np.where(scan, first, data_min)
        below = scan & filled & (data_min < first)  # extend downwards, keeping bins aligned
        origin = np.where(below, first + ((data_min - first) // width) * width, origin)
        span_last = np.where(scan, np.where(filled, np.maximum(last, data_max), last), data_max)
        n_bins = np.where(scan | filled, np.maximum(0, (span_last - origin) // width + 1), 0)
        offset = (np.cumsum(n_bins) - n_bins).astype(np.int64)
        total = int(n_bins.sum())
        b = offset[s] + (frames - origin[s]) // width
        count = np.bincount(b, minlength=total).astype(np.int64)
        owner = np.repeat(np.arange(n_bins.size), n_bins)
        return {
            "series_key": series["key"][owner],
            "frame_first": origin[owner] + width * (np.arange(total) - offset[owner]),
            "count": count,
            "n_with_sigma": np.bincount(b[has_sigma], minlength=total).astype(np.int64),
            "n_non_positive": np.bincount(b[intensity <= 0], minlength=total).astype(np.int64),
            "sum": np.bincount(b, weights=intensity, minlength=total),
            "sum_ios": np.bincount(b[has_sigma], weights=ios[has_sigma], minlength=total),
            "median": bin_medians(b, intensity, count),
        }
