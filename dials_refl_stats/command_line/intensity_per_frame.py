"""dials.intensity_per_frame: how does intensity vary with image number?"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

import dials.util
import libtbx.phil
import numpy as np
from libtbx import Auto

from dials_refl_stats.analysis.intensity_per_frame import (
    SeriesIntensities,
    intensities_by_series,
)
from dials_refl_stats.analysis.rows import FileRows, SelectedRows
from dials_refl_stats.compact import FRAME_FIELDS, SUMMARY_FIELDS, encode_runs
from dials_refl_stats.frames import (
    AXIS_LABELS,
    EXPERIMENT_INDEX,
    NUMBERING_RULES,
    ExperimentMatchError,
    FileFrames,
    Series,
    SeriesCatalogue,
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


@dataclass
class PreparedFile:
    """One file's selected rows on their frame axes (before any statistics)."""

    path: str
    n_rows: int
    rows: FileRows
    masks: dict[str, np.ndarray]  # per intensity choice: selected rows
    numbered: FileFrames  # frame and series of every kept row
    z: np.ndarray


def prepare_file(
    file_index: int,
    run: Run,
    rows: FileRows,
    selections,
    frame_column: str,
    catalogue,
    experiments: list,
) -> PreparedFile:
    """Put one file's kept rows on their series' frame axes (``experiments``: the run's,
    as a list made once)."""
    info = run.files[file_index].info
    flags = rows.columns["flags"]
    masks = {c: s.apply(flags) for c, s in selections.items()}
    if run.records and run.records[file_index].fallback:  # kept rows: the fallback's
        masks = {c: np.ones(flags.size, dtype=bool) for c in selections}
    used = np.logical_or.reduce(list(masks.values()))
    z = np.asarray(rows.columns[frame_column])[:, 2].astype(np.float64)
    check_frames(z, info.path, frame_column)
    try:
        numbered = catalogue.add_file(
            file_index, experiments, info.identifiers, rows.columns["id"], z, used, info.path
        )
    except ExperimentMatchError as error:
        raise Sorry(str(error)) from None
    return PreparedFile(info.path, info.nrows, rows, masks, numbered, z)


#: Frames further than this from image 0 are not real images (corrupt centroids); the
#: per-frame tables are dense, so this also bounds their size.
MAX_FRAME = 10**6


def check_frames(z: np.ndarray, path: str, frame_column: str) -> None:
    """``Sorry`` for centroid z values that no scan has (NaN, infinite, absurd)."""
    bad = ~np.isfinite(z) | (np.abs(z) > MAX_FRAME)
    if bad.any():
        value = z[np.flatnonzero(bad)[0]]
        raise Sorry(
            f"{path}: {int(bad.sum())} selected rows have {frame_column} z = {value:g} "
            f"(beyond +-{MAX_FRAME} frames): corrupt centroids"
        )


@dataclass
class IntensityResult:
    """One intensity choice: its selected rows (``points``) and their statistics."""

    choice: str
    points: dict[str, np.ndarray]
    stats: SeriesIntensities


def compute(
    choice: str, prepared: list[PreparedFile], series_list: list[Series], bin_width: int
) -> IntensityResult:
    """Per-frame tables of one intensity, per series."""
    value_column, variance_column = INTENSITIES[choice][:2]
    parts = {k: [] for k in ("file_index", "row", "series", "frame", "z", "intensity", "variance")}
    for file_index, p in enumerate(prepared):
        mask = p.masks[choice]
        kept = None if mask.all() else np.flatnonzero(mask)  # None: every row, no copies
        n_kept = mask.size if kept is None else kept.size
        parts["file_index"].append(np.full(n_kept, file_index, dtype=np.int64))
        parts["row"].append(_take(p.rows.rows, kept))
        parts["series"].append(_take(p.numbered.series, kept))
        parts["frame"].append(_take(p.numbered.frames, kept))
        parts["z"].append(_take(p.z, kept))
        for key, column in (("intensity", value_column), ("variance", variance_column)):
            values = np.asarray(p.rows.columns[column], dtype=np.float64)
            parts[key].append(_take(values, kept))
    points = {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in parts.items()}
    stats = intensities_by_series(
        points["series"],
        points["frame"],
        points["z"],
        points["intensity"],
        points["variance"],
        frame_ranges=[s.image_range for s in series_list],
        continuous=[s.numbering != EXPERIMENT_INDEX for s in series_list],
        bin_width=bin_width,
    )
    return IntensityResult(choice, points, stats)


def _take(values: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    """``values[kept]``; ``values`` itself for ``None`` (every row)."""
    return values if kept is None else values[kept]


def empty_selection_hint(prepared: list[PreparedFile], choice: str, automatic: bool) -> str:
    """What else would select something, for the empty-selection warning."""
    hints = []
    for other in ("integrated_sum", "integrated_prf"):
        n = sum(p.rows.n_with(FLAG_BITS[other]) for p in prepared)
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

    prepared: list[PreparedFile]
    series_list: list[Series]
    numberings: list[str]
    by_choice: list[IntensityResult]


class IntensityPerFrame(Program):
    name = PROGRAM
    light_experiments = True
    wants_experiments = True
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

    def statistic(self, run: Run) -> SelectedRows:
        columns = [self.frame_column]
        for choice in self.choices:
            columns.extend(INTENSITIES[choice][:2])
        return SelectedRows(tuple(dict.fromkeys(columns)))

    def finalize(self, kept: dict[int, FileRows], run: Run) -> Computed:
        catalogue = SeriesCatalogue(len(run.files))
        experiments = list(run.experiments) if run.experiments else []  # once, not per file
        no_rows = empty_rows(self.statistic(run), run)
        prepared = [
            prepare_file(
                i,
                run,
                kept.get(i) or no_rows,
                self.selections,
                self.frame_column,
                catalogue,
                experiments,
            )
            for i in range(len(run.files))
        ]
        series_list = catalogue.series
        numberings = sorted({s.numbering for s in series_list})
        by_choice = [compute(c, prepared, series_list, self.bin_width) for c in self.choices]
        return Computed(prepared, series_list, numberings, by_choice)

    def results(self, computed: Computed, run: Run) -> dict:
        n_files = len(run.files)
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
                compact_series(computed.series_list)
                if run.compact
                else [s.describe(n_files) for s in computed.series_list]
            ),
            "intensities": [
                describe_result(r, computed.series_list, run.params.output.points, run.compact)
                for r in computed.by_choice
            ],
        }

    def selection_record(self, computed: Computed, run: Run, reduced) -> dict:
        from dials_refl_stats.pipeline.program import describe_selection

        first = next(iter(self.selections.values()))
        shared = describe_selection(run, reduced)
        per_intensity = []
        for r in computed.by_choice:
            files = [int(p.masks[r.choice].sum()) for p in computed.prepared]
            entry = {
                "intensity": r.choice,
                **self.selections[r.choice].describe(),
                "n_selected": int(r.points["intensity"].size),
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
        log_selection(computed.prepared, self.selections, self.automatic)
        log_numbering(
            computed.series_list, computed.numberings, self.frame_column, bool(run.experiment_infos)
        )
        for result in computed.by_choice:
            report(
                result, computed.series_list, self.frame_column, computed.prepared, self.automatic
            )

    def summary_line(self, computed: Computed, run: Run) -> str:
        lines = []
        for r in computed.by_choice:
            s = r.stats.overall
            n_frames = sum(int((t.table.count > 0).sum()) for t in r.stats.per_series)
            lines.append(
                f"Intensity per frame [{r.choice}]: n={s.n} frames={n_frames} "
                f"median_I={_fmt(s.median)} mean_I/sigma={_fmt(s.mean_i_over_sigma)} "
                f"non_positive={s.n_non_positive} frame_source={self.frame_column} "
                f"numbering={'+'.join(computed.numberings) or 'none'}"
            )
        return "\n".join(lines)

    def plot(self, computed: Computed, run: Run, path: str) -> None:
        xlabel = " / ".join(AXIS_LABELS[n] for n in computed.numberings) or "Frame"
        plot(
            path,
            computed.by_choice,
            computed.series_list,
            run,
            self.frame_column,
            xlabel,
            run.params,
        )


def empty_rows(statistic: SelectedRows, run: Run) -> FileRows:
    """The kept rows of a file with nothing selected."""
    return FileRows(
        rows=np.zeros(0, dtype=np.int64),
        columns={"flags": np.zeros(0, np.int32), "id": np.zeros(0, np.int32)}
        | {c: np.zeros((0, 3)) if c.startswith("xyz") else np.zeros(0) for c in statistic.wanted},
        bit_counts=np.zeros(32, dtype=np.int64),
    )


#: The program, for dials.refl_stats (which runs every program's statistic in one pass).
PROGRAM_CLASS = IntensityPerFrame


@dials.util.show_mail_handle_errors()
def run(args=None, *, phil=phil_scope) -> None:
    run_program(IntensityPerFrame(), args, phil, help_message)


def _fmt(value) -> str:
    return "nan" if value is None or not np.isfinite(value) else f"{value:.4g}"


def describe_result(
    result: IntensityResult, series_list, with_points: bool, compact: bool = False
) -> dict:
    value_column, variance_column = INTENSITIES[result.choice][:2]
    stats = result.stats
    described = {
        "intensity": result.choice,
        "value_column": value_column,
        "variance_column": variance_column,
        "overall": stats.overall,
        "n_outside_scan": int(sum(stats.n_outside_range)),
    }
    if compact:
        described.update(compact_intensity_series(stats.per_series, stats.n_outside_range))
    else:
        described["series"] = [
            {"label": s.label, "n_outside_scan": n, **r.as_dict()}
            for s, r, n in zip(series_list, stats.per_series, stats.n_outside_range)
        ]
    if with_points:
        described["points"] = result.points
    return described


def compact_series(series_list) -> dict:
    """``results.series`` in the compact form: columns, and the series' experiments as
    one table (``series``, ``file_index``, ``id``; runs when regular)."""
    members = [(k, g) for k, s in enumerate(series_list) for g in s.groups]
    ranges = [s.image_range for s in series_list]
    return {
        "numbering": encode_runs([s.numbering for s in series_list]),
        "image_first": encode_runs([r[0] if r else None for r in ranges]),
        "image_last": encode_runs([r[1] if r else None for r in ranges]),
        "experiments": {
            "series": encode_runs(np.array([k for k, _ in members], dtype=np.int64)),
            "file_index": encode_runs(np.array([g.file_index for _, g in members], np.int64)),
            "id": encode_runs(np.array([g.id for _, g in members], dtype=np.int64)),
        },
    }


def is_its_summary(series) -> bool:
    """Whether a series' per-frame table is one bin holding all of its rows, with frames
    ``frame_min..frame_max``: that bin is the summary."""
    table, summary = series.table, series.summary
    return (
        table.n_bins == 1
        and summary.n > 0
        and int(table.count[0]) == summary.n
        and int(table.frame_first[0]) == summary.frame_min
        and int(table.frame_last[0]) == summary.frame_max
    )


def compact_intensity_series(per_series, n_outside) -> dict:
    """One intensity's series in the compact form: the summaries as columns
    (``series``), and the per-frame bins concatenated (``per_frame``, with a ``series``
    column) except for series whose one bin is their summary (:func:`is_its_summary`)."""
    summaries = [r.summary for r in per_series]
    columns: dict = {"n_outside_scan": np.asarray(n_outside, dtype=np.int64)}
    for name in SUMMARY_FIELDS:
        columns[name] = [getattr(summary, name) for summary in summaries]
    several = [k for k, r in enumerate(per_series) if not is_its_summary(r)]
    tables = [per_series[k].table for k in several]
    per_frame = {
        "series": np.repeat(np.asarray(several, dtype=np.int64), [t.n_bins for t in tables])
    }
    for name in FRAME_FIELDS:
        parts = [np.asarray(getattr(t, name)) for t in tables]
        per_frame[name] = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return {
        "series": value_columns(columns, compact=True),
        "per_frame": value_columns(per_frame, compact=True),
    }


def log_selection(prepared, selections, automatic: bool) -> None:
    """Per-file, per-intensity selection lines (for at most 20 files; all with -vv)."""
    level = logging.INFO if len(prepared) <= MAX_LOGGED_SERIES else logging.DEBUG
    for p in prepared:
        for choice, selection in selections.items():
            logger.log(
                level,
                "%s: %s: %d of %d reflections selected (%s%s, rule %s)",
                p.path,
                choice,
                int(p.masks[choice].sum()),
                p.n_rows,
                ", ".join(selection.names) or "all",
                " = default for this intensity" if automatic else "",
                selection.rule,
            )


def log_numbering(series_list, numberings, frame_column: str, have_experiments: bool) -> None:
    logger.info("Frames from the z of %s", frame_column)
    for n in numberings:
        logger.info("Frame numbering %s: %s", n, NUMBERING_RULES[n])
    if not have_experiments and series_list:
        logger.warning(
            "No experiments given: frames are floor(z) (0-based), not image numbers;"
            " pass the .expt file to number frames by image"
        )
    if have_experiments and any(g.id < 0 for s in series_list for g in s.groups):
        logger.warning("Reflections with id -1 (no experiment) are numbered by floor(z)")


#: Per-series tables in the log for at most this many series (all of them with -vv).
MAX_LOGGED_SERIES = 20


def report(result: IntensityResult, series_list, frame_column, prepared, automatic) -> None:
    """Per-frame tables and warnings in the log."""
    choice = result.choice
    overall = result.stats.overall
    if overall.n == 0:
        logger.warning(
            "%s: no reflections selected: the per-frame tables are empty (%s)",
            choice,
            empty_selection_hint(prepared, choice, automatic),
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
    stats = result.stats
    many = len(series_list) > MAX_LOGGED_SERIES and not logger.isEnabledFor(logging.DEBUG)
    if many:
        logger.info(
            "%s: %d series: per-frame tables and per-series warnings are logged with -vv "
            "(and are in the JSON)",
            choice,
            len(series_list),
        )
        return
    for series, outcome, outside in zip(series_list, stats.per_series, stats.n_outside_range):
        if outside:
            first, last = series.image_range
            logger.warning(
                "%s, %s: %d reflections have %s z outside the scan's images %d-%d"
                " (e.g. predicted centroids of partials at the scan ends); they are"
                " kept, in frames outside the scan",
                choice,
                series.label,
                outside,
                frame_column,
                first,
                last,
            )
        table = outcome.table
        level = logging.INFO if table.n_bins <= 200 else logging.DEBUG
        if not logger.isEnabledFor(level):
            logger.info(
                "%s, %s: %d frame bins (the table is logged with -vv; or use frame.bin_width)",
                choice,
                series.label,
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
            series.label,
            series.numbering,
            "\n".join(lines),
        )


def plot(path, results_by_choice, series_list, run: Run, frame_column, xlabel, params) -> None:
    from dials_refl_stats.plotting.frames import (
        Panel,
        SeriesPoints,
        intensity_per_frame_figure,
    )

    panels = [
        Panel(
            title=f"{INTENSITIES[r.choice][0]} against {xlabel.lower()} (z of {frame_column})",
            series=[
                SeriesPoints(s.label, x, i, outcome.table, s.image_range)
                for s, x, i, outcome in zip(
                    series_list, r.stats.plot_x, r.stats.plot_intensity, r.stats.per_series
                )
            ],
        )
        for r in results_by_choice
    ]
    intensity_per_frame_figure(
        path,
        panels,
        title=f"Intensity per frame: {run.title}",
        xlabel=xlabel,
        format_from=params.output.plot,
    )


__all__ = ["run", "phil_scope", "help_message", "INTENSITIES", "FRAME_COLUMNS"]
