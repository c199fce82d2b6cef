"""dials.intensity_per_frame: how does intensity vary with image number?"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import dials.util
import libtbx.phil
import numpy as np
from libtbx import Auto

from dials_refl_stats.analysis.intensity_frames import (
    IntensityColumns,
    IntensityFrames,
    IntensityFramesStatistic,
)
from dials_refl_stats.frames import AXIS_LABELS, NUMBERING_RULES
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.execute import SelectionPlan
from dials_refl_stats.pipeline.phil import (
    INPUT_PHIL,
    make_flag_selection,
    output_phil,
    selection_phil,
)
from dials_refl_stats.pipeline.program import Program, Run, run_program
from dials_refl_stats.results.intensity_per_frame import (
    INTENSITIES,
    Computed,
    IntensityResult,
    SeriesTable,
    compact_series,
    describe_result,
    format_value,
    log_numbering,
    log_selection,
    report,
)
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
    .type = int(value_min=1, value_max=1000000000)
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


class IntensityPerFrame(Program):
    name = PROGRAM
    rows_per_image = True
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
                f"median_I={format_value(s.median)} "
                f"mean_I/sigma={format_value(s.mean_i_over_sigma)} "
                f"non_positive={s.n_non_positive} frame_source={self.frame_column} "
                f"numbering={'+'.join(computed.numberings) or 'none'}"
            )
        return "\n".join(lines)

    def plot(self, computed: Computed, run: Run, path: str) -> None:
        xlabel = " / ".join(AXIS_LABELS[n] for n in computed.numberings) or "Frame"
        from dials_refl_stats.plotting.intensity_per_frame import plot

        plot(path, computed, run.title, self.frame_column, xlabel, run.params.output.plot)


#: The program, for dials.refl_stats (which runs every program's statistic in one pass).
PROGRAM_CLASS = IntensityPerFrame


@dials.util.show_mail_handle_errors()
def run(args=None, *, phil=phil_scope) -> None:
    run_program(IntensityPerFrame(), args, phil, help_message)


__all__ = ["run", "phil_scope", "help_message", "INTENSITIES", "FRAME_COLUMNS"]
