"""dials.intensity_per_frame: how does intensity vary with image number?"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

import dials.util
import libtbx.phil
import numpy as np
from libtbx import Auto

from dials_refl_stats.analysis.intensity_frames import IMAGE_NUMBER as IMAGE_NUMBER_CODE
from dials_refl_stats.analysis.intensity_frames import (
    NUMBERING_NAMES,
    ChoiceFrames,
    IntensityColumns,
    IntensityFrames,
    IntensityFramesStatistic,
)
from dials_refl_stats.analysis.intensity_per_frame import FrameTable, IntensitySummary
from dials_refl_stats.analysis.sketches import EXACT_MEDIAN_VALUES
from dials_refl_stats.analysis.statistic import ID_BITS, split_group_key
from dials_refl_stats.compact import FRAME_FIELDS, SUMMARY_FIELDS, encode_runs
from dials_refl_stats.experiment_groups import ExperimentGroup
from dials_refl_stats.frames import (
    AXIS_LABELS,
    EXPERIMENT_INDEX,
    NUMBERING_RULES,
)
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.execute import SelectionPlan
from dials_refl_stats.pipeline.group_columns import value_columns
from dials_refl_stats.pipeline.phil import (
    INPUT_PHIL,
    make_flag_selection,
    output_phil,
    selection_phil,
)
from dials_refl_stats.pipeline.program import Program, Run, run_program
from dials_refl_stats.selection import FLAG_BITS, FlagSelection

PROGRAM = "intensity_per_frame"
logger = logging.getLogger(f"dials.{PROGRAM}")

help_message = """
Intensity against image number: for the chosen intensities (summation, profile
fitting or both) of the selected reflections, the count, mean, median, mean I/sigma
and number of intensities <= 0 per image (or per bin of images), per experiment.

By default each intensity uses the reflections where it was measured: flag
integrated_sum for intensity.choice=sum, integrated_prf for prf.
selection.flags=integrated (both bits set, as DIALS get_flags(flags.integrated))
reproduces the DIALS tutorial script exactly.

The frame is the z of xyzcal.px (predicted centroid, default) or of xyzobs.px.value.
With the experiments (.expt) the frames are image numbers from each experiment's
scan: image = floor(z) + 1 (image k covers z in [k-1, k)), also for scans starting
at image 0. Stills (no scan) give one frame per experiment. Without experiments the
frame is floor(z), and the output says so.

Writes intensity_per_frame.json (per-frame tables, selection counts, parameters;
raw points with output.points=True) and intensity_per_frame.png (log-intensity
scatter with the per-frame median, and mean I/sigma per frame).

Examples::

  dials.intensity_per_frame integrated.expt integrated.refl

  dials.intensity_per_frame integrated.expt integrated.refl intensity.choice=sum+prf

  dials.intensity_per_frame integrated.refl selection.flags=integrated

  dials.intensity_per_frame integrated.expt integrated.refl frame.source=xyzobs bin_width=5
"""

#: intensity.choice -> (value column, variance column, default selection flag, method).
INTENSITIES = {
    "sum": ("intensity.sum.value", "intensity.sum.variance", "integrated_sum", "summation"),
    "prf": ("intensity.prf.value", "intensity.prf.variance", "integrated_prf", "profile fitting"),
}

#: frame.source -> column whose z is the frame.
FRAME_COLUMNS = {"xyzcal": "xyzcal.px", "xyzobs": "xyzobs.px.value"}

phil_scope = libtbx.phil.parse(
    """
intensity
  .help = "Which intensities to show."
{
  choice = *sum prf
    .type = choice(multi=True)
    .help = "sum: summation integration (intensity.sum.value), as the DIALS tutorial;"
            "prf: profile fitting (intensity.prf.value); sum+prf: both, side by side."
}
frame
  .help = "How a reflection's frame (image) is found."
{
  source = *xyzcal xyzobs
    .type = choice
    .help = "z of xyzcal.px (predicted centroid, as the DIALS tutorial) or of"
            "xyzobs.px.value (observed centroid)."
  bin_width = 1
    .type = int(value_min=1)
    .help = "Frames per bin of the per-frame statistics. Bins start at the scan's"
            "first image."
}
"""
    + selection_phil("Auto")
    + INPUT_PHIL
    + output_phil(
        PROGRAM,
        extra="""
  points = False
    .type = bool
    .help = "Also write every selected reflection's frame, z, intensity and variance"
            "to the JSON file (large for big tables)."
""",
    ),
    process_includes=True,
)

SELECTION_AUTO_HELP = (
    "Auto (the default): per intensity, the reflections where it was measured "
    "(integrated_sum for sum, integrated_prf for prf)"
)


def intensity_selections(scope, choices) -> tuple[bool, dict[str, FlagSelection]]:
    """(per-intensity default?, flag selection for each intensity choice)."""
    flags = scope.flags
    automatic = flags is Auto or (
        isinstance(flags, (list, tuple)) and [f.lower() for f in flags] == ["auto"]
    )
    if automatic:
        return True, {c: FlagSelection(names=(INTENSITIES[c][2],), rule="all") for c in choices}
    selection = make_flag_selection(SimpleNamespace(flags=flags, rule=scope.rule))
    return False, {c: selection for c in choices}


def union_description(automatic: bool, selections: dict[str, FlagSelection]) -> dict:
    """The envelope's top-level selection: the rows used for any intensity."""
    if not automatic:
        return next(iter(selections.values())).describe()
    names = tuple(s.names[0] for s in selections.values())
    union = FlagSelection(names=names, rule="any" if len(names) > 1 else "all")
    return union.describe()


def require_intensity_columns(opened, choices, frame_source: str) -> None:
    """``Sorry`` naming the file, the missing column and the DIALS step providing it."""
    columns = opened.columns
    path = opened.info.path
    for name in ("flags", "id"):
        if name not in columns:
            raise Sorry(f"{path}: no '{name}' column (not a DIALS reflection table?)")
    frame_column = FRAME_COLUMNS[frame_source]
    if frame_column not in columns:
        if frame_source == "xyzcal":
            raise Sorry(
                f"{path}: no '{frame_column}' column for frame.source=xyzcal "
                "(predicted centroids are written by dials.index/dials.integrate; "
                "use integrated.refl, or frame.source=xyzobs)"
            )
        raise Sorry(
            f"{path}: no '{frame_column}' column for frame.source=xyzobs "
            "(observed centroids are written by dials.find_spots and dials.integrate)"
        )
    for choice in choices:
        value, variance, _, method = INTENSITIES[choice]
        for column in (value, variance):
            if column not in columns:
                other = [
                    c
                    for c in INTENSITIES
                    if c != choice and all(k in columns for k in INTENSITIES[c][:2])
                ]
                hint = f"; this table has intensity.choice={other[0]}" if other else ""
                raise Sorry(
                    f"{path}: no '{column}' column for intensity.choice={choice} "
                    f"({method} intensities are written by dials.integrate{hint})"
                )


INTEGRATION_BITS = FLAG_BITS["integrated_sum"] | FLAG_BITS["integrated_prf"]


class NeverIntegratedFallback(SelectionPlan):
    """The shared fallback rule, for tables that were never integrated: only a file in
    which no row has integrated_sum or integrated_prf falls back (to 'strong'), so that
    e.g. intensity.choice=prf on summation-only stills still selects nothing."""

    def for_file(self, flags: np.ndarray):
        if flags.size and (flags & INTEGRATION_BITS).any():
            return self.requested, None
        return super().for_file(flags)


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


class IntensityPerFrame(Program):
    name = PROGRAM
    light_experiments = True
    wants_experiments = True
    defers_headers = True
    usage = "dials.intensity_per_frame [options] [integrated.expt] integrated.refl"

    def validate(self, params) -> None:
        self.choices = list(params.intensity.choice or [])
        if not self.choices:
            raise Sorry("intensity.choice: choose sum, prf or both (sum+prf)")
        self.automatic, self.selections = intensity_selections(params.selection, self.choices)
        self.bin_width = int(params.frame.bin_width)
        if self.bin_width < 1:
            raise Sorry(f"frame.bin_width must be at least 1 (got {self.bin_width})")
        self.frame_column = FRAME_COLUMNS[params.frame.source]

    def selection_plan(self, params) -> SelectionPlan:
        if not self.automatic:
            return SelectionPlan(next(iter(self.selections.values())))
        names = tuple(s.names[0] for s in self.selections.values())
        union = FlagSelection(names=names, rule="any" if len(names) > 1 else "all")
        return NeverIntegratedFallback(union, fallback=bool(params.selection.fallback))

    def check_file(self, opened, params) -> None:
        require_intensity_columns(opened, self.choices, params.frame.source)

    def statistic(self, run: Run) -> IntensityFramesStatistic:
        with_experiments = bool(run.experiment_infos)
        return IntensityFramesStatistic(
            [IntensityColumns(c, *INTENSITIES[c][:2], self.selections[c]) for c in self.choices],
            self.frame_column,
            self.bin_width,
            scans={e.index: e.image_range for e in run.experiment_infos if e.image_range},
            with_experiments=with_experiments,
            points=bool(run.params.output.points),
        )

    def finalize(self, frames: IntensityFrames, run: Run) -> Computed:
        series = SeriesTable(frames, run)
        numberings = sorted(set(series.numbering))
        by_choice = [
            IntensityResult(c, f, f.bin_bounds(frames.n_series))
            for c, f in zip(self.choices, frames.choices)
        ]
        return Computed(frames, series, numberings, by_choice)

    def results(self, computed: Computed, run: Run) -> dict:
        series = computed.series
        return {
            "frame_source": self.frame_column,
            "frame_numbering": computed.numberings,
            "numbering_rules": {n: NUMBERING_RULES[n] for n in computed.numberings},
            "bin_width": self.bin_width,
            "statistics": (
                "per frame bin: count; mean and median intensity; mean I/sigma with "
                "sigma = sqrt(variance) over rows with variance > 0 (n_with_sigma); "
                "n_non_positive = intensities <= 0 (counted in every statistic, not shown "
                "on the log-scale plot)"
            ),
            "series": (
                compact_series(computed.frames)
                if run.compact
                else [series.describe(k) for k in range(len(series))]
            ),
            "intensities": [
                describe_result(r, series, computed.frames.bin_width, run.compact)
                for r in computed.by_choice
            ],
        }

    def selection_record(self, computed: Computed, run: Run, reduced) -> dict:
        from dials_refl_stats.pipeline.program import describe_selection

        first = next(iter(self.selections.values()))
        shared = describe_selection(run, reduced)
        per_intensity = []
        for r in computed.by_choice:
            files = computed.n_selected(r).tolist()
            entry = {
                "intensity": r.choice,
                **self.selections[r.choice].describe(),
                "n_selected": r.overall.n,
                "files": {"n_selected": files},
            }
            if run.compact and files == shared["files"]["n_selected"]:
                del entry["files"]  # the same column as selection.files
            per_intensity.append(entry)
        return {
            **shared,
            **union_description(self.automatic, self.selections),
            "flags_requested": ["Auto"] if self.automatic else list(first.names),
            "default_per_intensity": self.automatic,
            "rule_text": SELECTION_AUTO_HELP if self.automatic else None,
            "per_intensity": per_intensity,
        }

    def log_results(self, computed: Computed, run: Run) -> None:
        log_selection(computed, run, self.selections, self.automatic)
        log_numbering(computed, self.frame_column, bool(run.experiment_infos))
        for result in computed.by_choice:
            report(result, computed, self.frame_column, self.automatic)

    def summary_line(self, computed: Computed, run: Run) -> str:
        lines = []
        for r in computed.by_choice:
            s = r.overall
            n_frames = int((r.frames.bins["count"] > 0).sum())
            lines.append(
                f"Intensity per frame [{r.choice}]: n={s.n} frames={n_frames} "
                f"median_I={_fmt(s.median)} mean_I/sigma={_fmt(s.mean_i_over_sigma)} "
                f"non_positive={s.n_non_positive} frame_source={self.frame_column} "
                f"numbering={'+'.join(computed.numberings) or 'none'}"
            )
        return "\n".join(lines)

    def plot(self, computed: Computed, run: Run, path: str) -> None:
        xlabel = " / ".join(AXIS_LABELS[n] for n in computed.numberings) or "Frame"
        plot(path, computed, run, self.frame_column, xlabel)


#: The program, for dials.refl_stats (which runs every program's statistic in one pass).
PROGRAM_CLASS = IntensityPerFrame


@dials.util.show_mail_handle_errors()
def run(args=None, *, phil=phil_scope) -> None:
    run_program(IntensityPerFrame(), args, phil, help_message)


def _fmt(value) -> str:
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
    file_index = frames.group_key >> ID_BITS
    table_id = (frames.group_key & ((1 << ID_BITS) - 1)) - 1
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
            columns[name] = [cast(v) if k else None for v, k in zip(values.tolist(), known)]
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
    for n in computed.numberings:
        logger.info("Frame numbering %s: %s", n, NUMBERING_RULES[n])
    if not have_experiments and len(computed.series):
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
                f"{frames:>13} {table.count[i]:7d} {_fmt(table.mean[i]):>11} "
                f"{_fmt(table.median[i]):>11} {_fmt(table.mean_i_over_sigma[i]):>10} "
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


def plot(path, computed: Computed, run: Run, frame_column, xlabel) -> None:
    from dials_refl_stats.plotting.frames import (
        MAX_COLOURED_SERIES,
        MAX_LINED_SERIES,
        Panel,
        SeriesPoints,
        intensity_per_frame_figure,
    )

    series = computed.series
    bin_width = computed.frames.bin_width
    n_series = len(series)
    # past a few series the plot draws lines for the first ones only: the others are
    # summarised (no object per series)
    shown = n_series if n_series <= MAX_COLOURED_SERIES else MAX_LINED_SERIES
    panels = []
    for r in computed.by_choice:
        f = r.frames
        points = np.searchsorted(f.sample_series, np.arange(n_series + 1))
        order = np.argsort(f.sample_series, kind="stable")
        x, intensity = f.sample_x[order], f.sample_intensity[order]
        panels.append(
            Panel(
                title=f"{INTENSITIES[r.choice][0]} against {xlabel.lower()} (z of {frame_column})",
                series=[
                    SeriesPoints(
                        series.label(k),
                        x[points[k] : points[k + 1]],
                        intensity[points[k] : points[k + 1]],
                        series_table(f, r.bounds, k, bin_width),
                        series.image_range(k),
                    )
                    for k in range(shown)
                ],
                crowd=crowd(r, computed.frames, shown, (x, intensity), int(points[shown])),
                n_points=r.overall.n,
                n_hidden=r.overall.n_non_positive,
                sampled=not f.sample_complete,
            )
        )
    intensity_per_frame_figure(
        path,
        panels,
        title=f"Intensity per frame: {run.title}",
        xlabel=xlabel,
        format_from=run.params.output.plot,
    )


def crowd(result: IntensityResult, frames: IntensityFrames, shown: int, points, first_point):
    """The series from ``shown`` on, summarised for the plot (``None``: there are none);
    ``points`` (x, intensity) in series order, theirs from ``first_point``."""
    from dials_refl_stats.plotting.frames import Crowd

    n_series = frames.n_series - shown
    if n_series <= 0:
        return None
    n_bins = np.diff(result.bounds)[shown:]
    bins = slice(int(result.bounds[shown]), None)
    first, last = result.frames.bins["frame_first"][bins], result.frames.bins["frame_last"][bins]
    counted = result.frames.summary["n"][shown:] > 0
    scan = frames.numbering[shown:] == IMAGE_NUMBER_CODE
    image_first, image_last = frames.image_first[shown:][scan], frames.image_last[shown:][scan]
    return Crowd(
        n_series=n_series,
        x=points[0][first_point:],
        intensity=points[1][first_point:],
        frame_first=int(first.min()) if first.size else None,
        frame_last=int(last.max()) if last.size else None,
        image_ranges=frozenset(zip(image_first.tolist(), image_last.tolist())),
        max_n_bins=int(n_bins.max()),
        max_frames=int(n_bins.max()) * frames.bin_width,
        count_total=int(result.frames.summary["n"][shown:].sum()),
        bins_counted=int(n_bins[counted].sum()),
    )


__all__ = ["run", "phil_scope", "help_message", "INTENSITIES", "FRAME_COLUMNS"]
