"""dials.intensity_per_frame's results: the run's series and per-intensity results
(:class:`Computed`), the JSON ``results`` block and the log report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dials_refl_stats.analysis.intensity_frames import IMAGE_NUMBER as IMAGE_NUMBER_CODE
from dials_refl_stats.analysis.intensity_frames import (
    NUMBERING_NAMES,
    ChoiceFrames,
    IntensityFrames,
)
from dials_refl_stats.analysis.intensity_per_frame import FrameTable, IntensitySummary
from dials_refl_stats.analysis.sketches import EXACT_MEDIAN_VALUES
from dials_refl_stats.analysis.statistic import ID_BITS, split_group_key, split_group_keys
from dials_refl_stats.compact import FRAME_FIELDS, SUMMARY_FIELDS, encode_runs
from dials_refl_stats.experiment_groups import ExperimentGroup
from dials_refl_stats.frames import EXPERIMENT_INDEX, NUMBERING_RULES, Z_FLOOR
from dials_refl_stats.pipeline.group_columns import value_columns
from dials_refl_stats.selection import FLAG_BITS

if TYPE_CHECKING:
    from dials_refl_stats.pipeline.program import Run

logger = logging.getLogger("dials.intensity_per_frame")

#: intensity.choice -> (value column, variance column, default selection flag, method).
INTENSITIES = {
    "sum": ("intensity.sum.value", "intensity.sum.variance", "integrated_sum", "summation"),
    "prf": ("intensity.prf.value", "intensity.prf.variance", "integrated_prf", "profile fitting"),
}


class SeriesTable:
    """The run's series (columns of :class:`IntensityFrames`) with their labels and
    experiments, made on demand (10^5 stills files: 10^5 series)."""

    def __init__(self, frames: IntensityFrames, run: Run):
        self.frames = frames
        self.n_files = len(run.files)
        self.infos = [f.info for f in run.files]
        self.numbering = [NUMBERING_NAMES[int(c)] for c in frames.numbering]
        bounds = np.searchsorted(frames.group_series, np.arange(frames.n_series + 1))
        self.group_bounds = bounds

    def __len__(self) -> int:
        return self.frames.n_series

    def groups(self, k: int) -> list[ExperimentGroup]:
        keys = self.frames.group_key[self.group_bounds[k] : self.group_bounds[k + 1]]
        groups = []
        for key in keys.tolist():
            file_index, table_id = split_group_key(key)
            identifier = self.infos[file_index].identifiers.get(table_id)
            groups.append(ExperimentGroup(file_index, table_id, identifier))
        return groups

    def label(self, k: int) -> str:
        if self.numbering[k] == EXPERIMENT_INDEX:
            file_index, _ = split_group_key(int(self.frames.series_key[k]))
            label = "stills"
        else:
            group = self.groups(k)[0]
            file_index, label = group.file_index, group.label(1)
        return f"file {file_index}: {label}" if self.n_files > 1 else label

    def image_range(self, k: int) -> tuple[int, int] | None:
        return self.frames.image_range(k)

    def describe(self, k: int) -> dict:
        image_range = self.image_range(k)
        return {
            "label": self.label(k),
            "numbering": self.numbering[k],
            "experiments": [g.describe(self.n_files) for g in self.groups(k)],
            "image_range": list(image_range) if image_range else None,
        }

    def has_unassigned(self) -> bool:
        return bool(((self.frames.group_key & ((1 << ID_BITS) - 1)) == 0).any())


def series_summary(choice: ChoiceFrames, k: int) -> IntensitySummary:
    """Series ``k``'s summary (``None`` statistics when it has no rows)."""
    s = choice.summary
    n, n_sigma = int(s["n"][k]), int(s["n_with_sigma"][k])
    if n == 0:
        return IntensitySummary(n=0, n_non_positive=0, n_with_sigma=0)
    return IntensitySummary(
        n=n,
        n_non_positive=int(s["n_non_positive"][k]),
        n_with_sigma=n_sigma,
        mean=float(s["mean"][k]),
        median=float(s["median"][k]),
        mean_i_over_sigma=float(s["mean_i_over_sigma"][k]) if n_sigma else None,
        frame_min=int(s["frame_min"][k]),
        frame_max=int(s["frame_max"][k]),
    )


def series_table(choice: ChoiceFrames, bounds: np.ndarray, k: int, bin_width: int) -> FrameTable:
    """Series ``k``'s per-frame table (views of the run's bins)."""
    rows = slice(int(bounds[k]), int(bounds[k + 1]))
    b = choice.bins
    return FrameTable(bin_width, *(b[name][rows] for name in FRAME_FIELDS))  # its order


@dataclass
class IntensityResult:
    """One intensity choice over the run."""

    choice: str
    frames: ChoiceFrames
    bounds: np.ndarray  # bins of series k: bounds[k]:bounds[k + 1]

    @property
    def overall(self) -> IntensitySummary:
        return self.frames.overall


def empty_selection_hint(flag_counts: np.ndarray, choice: str, automatic: bool) -> str:
    """What else would select something, for the empty-selection warning."""
    hints = []
    for other in ("integrated_sum", "integrated_prf"):
        n = int(flag_counts[int(FLAG_BITS[other]).bit_length() - 1])
        if n == 0:
            continue
        other_choice = "sum" if other == "integrated_sum" else "prf"
        if automatic and other_choice == choice:
            continue
        if automatic:
            suggestion = f"intensity.choice={other_choice}"
        else:
            suggestion = f"selection.flags={other}"
        hints.append(f"{n} reflections have {other} (try {suggestion})")
    return "; ".join(hints) if hints else "no reflection has integrated_sum or integrated_prf"


@dataclass
class Computed:
    """The per-frame results of a run."""

    frames: IntensityFrames
    series: SeriesTable
    numberings: list[str]
    by_choice: list[IntensityResult]

    def n_selected(self, result: IntensityResult) -> np.ndarray:
        """Rows ``result``'s intensity uses in each file."""
        per_file = np.zeros(self.series.n_files, dtype=np.int64)
        per_file[result.frames.file_index] = result.frames.file_selected
        return per_file


def format_value(value) -> str:
    """A statistic in the log (``nan`` when missing or not finite)."""
    return "nan" if value is None or not np.isfinite(value) else f"{value:.4g}"


def describe_result(
    result: IntensityResult, series: SeriesTable, bin_width: int, compact: bool = False
) -> dict:
    value_column, variance_column = INTENSITIES[result.choice][:2]
    frames = result.frames
    n_outside = frames.summary["n_outside"]
    described = {
        "intensity": result.choice,
        "value_column": value_column,
        "variance_column": variance_column,
        "overall": frames.overall,
        "overall_median": "exact" if frames.median_exact else "sketch",
        "n_outside_scan": int(n_outside.sum()),
    }
    if compact:
        described.update(compact_intensity_series(result, bin_width))
    else:
        described["series"] = [
            {
                "label": series.label(k),
                "n_outside_scan": int(n_outside[k]),
                "summary": series_summary(frames, k),
                "per_frame": series_table(frames, result.bounds, k, bin_width).as_dict(),
            }
            for k in range(len(series))
        ]
    if frames.points is not None:
        described["points"] = frames.points
    return described


def compact_series(frames: IntensityFrames) -> dict:
    """``results.series`` in the compact form: columns, and the series' experiments as
    one table (``series``, ``file_index``, ``id``; runs when regular)."""
    scan = frames.numbering == IMAGE_NUMBER_CODE
    file_index, table_id = split_group_keys(frames.group_key)
    return {
        "numbering": encode_runs([NUMBERING_NAMES[int(c)] for c in frames.numbering]),
        "image_first": encode_runs(
            [int(f) if s else None for f, s in zip(frames.image_first, scan)]
        ),
        "image_last": encode_runs([int(f) if s else None for f, s in zip(frames.image_last, scan)]),
        "experiments": {
            "series": encode_runs(frames.group_series.astype(np.int64)),
            "file_index": encode_runs(file_index.astype(np.int64)),
            "id": encode_runs(table_id.astype(np.int64)),
        },
    }


def its_summaries(result: IntensityResult) -> np.ndarray:
    """Per series: whether its per-frame table is one bin holding all of its rows, with
    frames ``frame_min..frame_max``: that bin is the summary."""
    summary, bins, bounds = result.frames.summary, result.frames.bins, result.bounds
    one_bin = np.diff(bounds) == 1
    first_bin = np.minimum(bounds[:-1], max(0, bins["count"].size - 1))
    if not bins["count"].size:
        return np.zeros(one_bin.size, dtype=bool)
    return (
        one_bin
        & (summary["n"] > 0)
        & (bins["count"][first_bin] == summary["n"])
        & (bins["frame_first"][first_bin] == summary["frame_min"])
        & (bins["frame_last"][first_bin] == summary["frame_max"])
    )


def compact_intensity_series(result: IntensityResult, bin_width: int) -> dict:
    """One intensity's series in the compact form: the summaries as columns
    (``series``), and the per-frame bins concatenated (``per_frame``, with a ``series``
    column) except for series whose one bin is their summary (:func:`its_summaries`)."""
    summary = result.frames.summary
    filled = summary["n"] > 0
    with_sigma = summary["n_with_sigma"] > 0
    columns: dict = {"n_outside_scan": summary["n_outside"].astype(np.int64)}
    for name in SUMMARY_FIELDS:
        values = summary[name]
        known = with_sigma if name == "mean_i_over_sigma" else filled
        if name in ("n", "n_non_positive", "n_with_sigma"):
            columns[name] = values.astype(np.int64).tolist()
        else:
            cast = int if name.startswith("frame_") else float
            plain = list(map(cast, np.where(known, values, 0).tolist()))  # NaN: no int
            for i in np.flatnonzero(~known).tolist():
                plain[i] = None
            columns[name] = plain
    bins = result.frames.bins
    kept = ~its_summaries(result)[bins["series"]]
    per_frame = {"series": bins["series"][kept].astype(np.int64)}
    for name in FRAME_FIELDS:
        per_frame[name] = np.asarray(bins[name])[kept]
    return {
        "series": value_columns(columns, compact=True),
        "per_frame": value_columns(per_frame, compact=True),
    }


def log_selection(computed: Computed, run: Run, selections, automatic: bool) -> None:
    """Per-file, per-intensity selection lines (for at most 20 files; all with -vv)."""
    n_files = computed.series.n_files
    level = logging.INFO if n_files <= MAX_LOGGED_SERIES else logging.DEBUG
    if not logger.isEnabledFor(level):
        return
    selected = {r.choice: computed.n_selected(r) for r in computed.by_choice}
    fell_back = {r.index: r.selection for r in run.records if r.fallback}
    for index, file in enumerate(run.files):
        for choice, selection in selections.items():
            if index in fell_back:  # a table never integrated: the shared fallback's rows
                rows = f"{', '.join(fell_back[index]) or 'all'}: selection fallback"
            else:
                rows = (
                    f"{', '.join(selection.names) or 'all'}"
                    f"{' = default for this intensity' if automatic else ''}, "
                    f"rule {selection.rule}"
                )
            logger.log(
                level,
                "%s: %s: %d of %d reflections selected (%s)",
                file.info.path,
                choice,
                int(selected[choice][index]),
                file.info.nrows,
                rows,
            )


def log_numbering(computed: Computed, frame_column: str, have_experiments: bool) -> None:
    logger.info("Frames from the z of %s", frame_column)
    warn = not have_experiments and len(computed.series)
    for n in computed.numberings:
        if not (warn and n == Z_FLOOR):  # the warning below says it
            logger.info("Frame numbering %s: %s", n, NUMBERING_RULES[n])
    if warn:
        logger.warning(
            "No experiments given: frames are floor(z) (0-based), not image numbers;"
            " pass the .expt file to number frames by image"
        )
    if have_experiments and computed.series.has_unassigned():
        logger.warning("Reflections with id -1 (no experiment) are numbered by floor(z)")


#: Per-series tables in the log for at most this many series (all of them with -vv).
MAX_LOGGED_SERIES = 20


def report(result: IntensityResult, computed: Computed, frame_column, automatic) -> None:
    """Per-frame tables and warnings in the log."""
    choice = result.choice
    overall = result.overall
    series = computed.series
    if overall.n == 0:
        logger.warning(
            "%s: no reflections selected: the per-frame tables are empty (%s)",
            choice,
            empty_selection_hint(computed.frames.flag_counts, choice, automatic),
        )
        return
    if overall.n_non_positive:
        logger.warning(
            "%s: %d of %d intensities are <= 0: they are in every statistic but the "
            "log-scale plot cannot show them",
            choice,
            overall.n_non_positive,
            overall.n,
        )
    if not result.frames.median_exact:
        logger.info(
            "%s: overall median from a log-bucket sketch (within 1%%: more than %d "
            "intensities); per-series and per-frame medians are exact",
            choice,
            EXACT_MEDIAN_VALUES,
        )
    many = len(series) > MAX_LOGGED_SERIES and not logger.isEnabledFor(logging.DEBUG)
    if many:
        logger.info(
            "%s: %d series: per-frame tables and per-series warnings are logged with -vv "
            "(and are in the JSON)",
            choice,
            len(series),
        )
        return
    for k in range(len(series)):
        label = series.label(k)
        outside = int(result.frames.summary["n_outside"][k])
        if outside:
            first, last = series.image_range(k)
            logger.warning(
                "%s, %s: %d reflections have %s z outside the scan's images %d-%d"
                " (e.g. predicted centroids of partials at the scan ends); they are"
                " kept, in frames outside the scan",
                choice,
                label,
                outside,
                frame_column,
                first,
                last,
            )
        table = series_table(result.frames, result.bounds, k, computed.frames.bin_width)
        level = logging.INFO if table.n_bins <= 200 else logging.DEBUG
        if not logger.isEnabledFor(level):
            logger.info(
                "%s, %s: %d frame bins (the table is logged with -vv; or use frame.bin_width)",
                choice,
                label,
                table.n_bins,
            )
            continue
        lines = [
            f"{'frames':>13} {'count':>7} {'mean I':>11} {'median I':>11} "
            f"{'mean I/sig':>10} {'I<=0':>6}"
        ]
        for i in range(table.n_bins):
            frames = (
                f"{table.frame_first[i]}"
                if table.bin_width == 1
                else f"{table.frame_first[i]}-{table.frame_last[i]}"
            )
            lines.append(
                f"{frames:>13} {table.count[i]:7d} {format_value(table.mean[i]):>11} "
                f"{format_value(table.median[i]):>11} "
                f"{format_value(table.mean_i_over_sigma[i]):>10} "
                f"{table.n_non_positive[i]:6d}"
            )
        logger.log(
            level,
            "Intensity (%s) per frame, %s (%s):\n%s",
            choice,
            label,
            series.numbering[k],
            "\n".join(lines),
        )
