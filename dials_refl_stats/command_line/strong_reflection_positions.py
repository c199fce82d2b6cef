"""dials.strong_reflection_positions: where on the detector are the strong reflections?"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import dials.util
import libtbx.phil
import numpy as np

from dials_refl_stats import geometry
from dials_refl_stats.analysis.rows import FileRows, SelectedRows
from dials_refl_stats.analysis.statistic import Chunk, split_group_keys
from dials_refl_stats.analysis.strong_positions import (
    StrongCriteria,
    data_panel_extents,
    merge_extents,
)
from dials_refl_stats.analysis.strong_positions_merge import (
    MergedPositions,
    PanelExtentsStatistic,
    PlotGrid,
    StrongPositionsStatistic,
)
from dials_refl_stats.experiment_groups import ExperimentGroup
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.phil import INPUT_PHIL, output_phil, selection_phil
from dials_refl_stats.pipeline.program import Program, Run, describe_selection, run_program
from dials_refl_stats.plotting.style import DENSITY_THRESHOLD
from dials_refl_stats.results.strong_positions import (
    INTENSITY_COLUMNS,
    POSITION,
    Computed,
    FileSummaries,
    FileSummary,
    compute,
    describe_results,
    file_data,
    n_detectors,
    report,
    unassigned_rule,
)
from dials_refl_stats.selection import FLAG_BITS

PROGRAM = "strong_reflection_positions"
logger = logging.getLogger(f"dials.{PROGRAM}")

help_message = """
Where are the strong reflections? Selects reflections by flags (default: integrated,
i.e. both integrated_sum and integrated_prf, as DIALS get_flags(flags.integrated)),
calls those with intensity.sum.value >= 5000 strong (the DIALS tutorial's choice), and
reports their positions on the detector: a scatter plot in panel pixels (or, for a
multi-panel detector with experiments, in the lab frame with panel outlines), a 2D
histogram of positions per panel, and - with experiments or a 'd' column - the number
of all and of strong reflections per resolution shell (shells equal in 1/d^2).

Strong means: every criterion that is set passes (intensity.min, i_over_sigma.min,
top_fraction). top_fraction=0.05 keeps the brightest 5% of the selected reflections.

Tables that were never integrated (strong.refl, indexed.refl: no row has
integrated_sum or integrated_prf) fall back from the default selection to 'strong'
(or every row when none is flagged strong), and the spot finder's intensity.sum.value
is thresholded; the log and the JSON say so. Set selection.flags explicitly to
something else, or selection.fallback=False, to avoid the fallback.

Pixel positions follow the DIALS image viewer: origin at the top-left corner, y down.

Writes strong_reflection_positions.json and strong_reflection_positions.png.

Examples::

  dials.strong_reflection_positions integrated.expt integrated.refl

  dials.strong_reflection_positions integrated.expt integrated.refl intensity.min=None \\
      top_fraction=0.05 n_shells=20

  dials.strong_reflection_positions indexed.expt indexed.refl i_over_sigma.min=20

  dials.strong_reflection_positions integrated.refl selection.flags=integrated_sum \\
      output.positions=True
"""

INTENSITY_PROVIDERS = {
    "sum": "written by dials.find_spots and dials.integrate",
    "prf": "written by dials.integrate with profile fitting; not for stills or spot lists",
}
DEFAULT_FLAGS = ("integrated",)
INTEGRATION_BITS = FLAG_BITS["integrated_sum"] | FLAG_BITS["integrated_prf"]

phil_scope = libtbx.phil.parse(
    """
intensity
  .help = "The intensity that is thresholded."
{
  choice = *sum prf
    .type = choice
    .help = "sum: intensity.sum.value (spot finding or integration summation);"
            "prf: intensity.prf.value (profile fitting)."
  min = 5000
    .type = float
    .help = "Strong when I >= min (the DIALS tutorial's 5000). None: no threshold."
}
i_over_sigma
  .help = "Signal-to-noise threshold, sigma = sqrt(variance)."
{
  min = None
    .type = float
    .help = "Strong only when I/sigma >= min; rows without a positive variance fail."
}
top_fraction = None
  .type = float
  .help = "Strong only when among the brightest top_fraction of the selected reflections"
          "(0.05: the brightest 5%: I >= the ceil(0.05 n)-th largest I; ties kept)."
resolution
  .help = "Resolution shells for the strong fraction."
{
  d_source = *auto geometry column
    .type = choice
    .help = "geometry: d of each observed position from the experiments' beam and"
            "detector (d = 1/|s1 - s0|); column: the table's 'd' column (d of the"
            "Miller index, dials.integrate); auto: geometry with experiments, else"
            "the column when every file has one, else no resolution shells."
  n_shells = 10
    .type = int(value_min=1, value_max=1000)
    .help = "Number of shells, equal in 1/d^2."
  d_min = None
    .type = float
    .help = "High-resolution limit of the shells (Angstrom). None: from the data."
  d_max = None
    .type = float
    .help = "Low-resolution limit of the shells (Angstrom). None: from the data."
}
rows_on_driver = False
  .type = bool
  .expert_level = 2
  .help = "Join every selected row in the main process and compute there, even when"
          "the tasks can compute the results (simple panels, no top_fraction, no"
          "output.positions): the same results, with ~180 bytes per selected row in"
          "memory instead of ~9."
position_histogram
  .help = "2D histogram of strong-spot positions, one per panel."
{
  n_bins = 50
    .type = int(value_min=1, value_max=2000)
    .help = "Bins along x (fast) and along y (slow), over the panel's full size."
}
"""
    + selection_phil(",".join(DEFAULT_FLAGS))
    + INPUT_PHIL
    + output_phil(
        PROGRAM,
        extra="""
  positions = False
    .type = bool
    .help = "Also write every strong reflection's position (pixels, mm, lab, d) to"
            "the JSON file."
""",
    ),
    process_includes=True,
)


def make_criteria(params) -> StrongCriteria:
    try:
        return StrongCriteria(
            intensity_min=params.intensity.min,
            i_over_sigma_min=params.i_over_sigma.min,
            top_fraction=params.top_fraction,
        )
    except ValueError as error:
        raise Sorry(str(error)) from None


#: Resolution limits a user may give (Å): any diffraction's, with 1/d^2 well in range.
D_LIMITS = (1e-6, 1e6)


def validate_parameters(params) -> None:
    if params.resolution.n_shells is None or params.resolution.n_shells < 1:
        raise Sorry(f"n_shells must be at least 1 (got {params.resolution.n_shells})")
    if params.position_histogram.n_bins is None or params.position_histogram.n_bins < 1:
        raise Sorry(f"n_bins must be at least 1 (got {params.position_histogram.n_bins})")
    d_min, d_max = params.resolution.d_min, params.resolution.d_max
    for name, value in (("d_min", d_min), ("d_max", d_max)):
        # 1/d^2 (the shells' unit) must be a number: 1e-320 or 1e308 Å would overflow it
        if value is not None and not D_LIMITS[0] <= value <= D_LIMITS[1]:
            raise Sorry(
                f"{name} must be a resolution in Angstrom from {D_LIMITS[0]:g} to "
                f"{D_LIMITS[1]:g} (got {value:g})"
            )
    if d_min is not None and d_max is not None and not d_max > d_min:
        raise Sorry(f"d_max ({d_max:g}) must be greater than d_min ({d_min:g})")


def choose_d_source(requested: str, files, have_experiments: bool) -> str | None:
    if requested == "geometry":
        if not have_experiments:
            raise Sorry("resolution.d_source=geometry needs the experiments (.expt file)")
        return "geometry"
    if requested == "column":
        for f in files:
            require_columns(f, ["d"], "resolution.d_source=column; written by dials.integrate")
        return "column"
    if have_experiments:
        return "geometry"  # no header needed: the run may not have read them yet
    return "column" if all("d" in f.columns for f in files) else None


def require_columns(opened, columns, why: str) -> None:
    """``Sorry`` naming the file and the first missing column."""
    for column in columns:
        if column not in opened.columns:
            raise Sorry(f"{opened.info.path}: no '{column}' column ({why})")


class PositionRows(SelectedRows):
    """Selected rows, plus each panel's data extent over all rows of a file."""

    def extra(self, chunk: Chunk) -> dict[int, tuple[float, float]]:
        xyz = chunk.columns[POSITION]
        return data_panel_extents(chunk.columns["panel"].astype(np.int64), xyz[:, 0], xyz[:, 1])

    def merge_extra(self, first, second):
        return merge_extents([first, second])


@dataclass
class Final:
    """What the statistics of a run give, with the files behind them."""

    computed: "Computed"
    files: Sequence[FileSummary]
    result: dict
    lab_frame: bool
    n_selected: int  # the files' selected rows


class StrongReflectionPositions(Program):
    name = PROGRAM
    light_experiments = True
    wants_experiments = True
    usage = "dials.strong_reflection_positions [options] [integrated.expt] integrated.refl"
    default_flags = DEFAULT_FLAGS

    def validate(self, params) -> None:
        self.criteria = make_criteria(params)
        validate_parameters(params)

    def headers_with_rows(self, params, with_experiments: bool) -> bool:
        # with experiments, d and the panel sizes come from them: no header is needed
        # before the run (without, the d column and the data's panel extents are)
        return with_experiments and params.resolution.d_source != "column"

    def check_file(self, opened, params) -> None:
        value, variance = INTENSITY_COLUMNS[params.intensity.choice]
        require_columns(opened, [POSITION], "spot centroids, written by dials.find_spots")
        require_columns(opened, [value], INTENSITY_PROVIDERS[params.intensity.choice])
        if self.criteria.needs_variance:
            why = f"for i_over_sigma.min; {INTENSITY_PROVIDERS[params.intensity.choice]}"
            require_columns(opened, [variance], why)
        require_columns(opened, ["flags", "id", "panel"], "written by every DIALS step")

    def header_rows(self, params, with_experiments: bool) -> PanelExtentsStatistic | None:
        # without experiments the tasks need the panel sizes: found with the headers
        # (and the 'd' column read where there is one, as the run may read it); not for
        # d from a geometry there is none of (a Sorry once the headers are read)
        geometry_asked = params.resolution.d_source == "geometry"
        if with_experiments or geometry_asked or joined_reason(params, self.criteria):
            return None
        reads = self.reads(params, "column" if params.resolution.d_source == "column" else None)
        return PanelExtentsStatistic(reads, optional=("d",))

    def reads(self, params, d_source: str | None) -> tuple[str, ...]:
        """The columns the run reads."""
        value, variance = INTENSITY_COLUMNS[params.intensity.choice]
        wanted = [POSITION, "panel", value]
        if self.criteria.needs_variance:
            wanted.append(variance)
        if d_source == "column":
            wanted.append("d")
        return tuple(wanted)

    def statistic(self, run: Run) -> PositionRows:
        params = run.params
        experiments = run.experiments if run.experiment_infos else None
        self.d_source = choose_d_source(
            params.resolution.d_source, run.files, experiments is not None
        )
        wanted = self.reads(params, self.d_source)
        merged, self.rows_reason = merged_statistic(run, self.criteria, self.d_source, wanted)
        return merged if merged is not None else PositionRows(wanted)

    def finalize(self, final: dict[int, FileRows] | MergedPositions, run: Run) -> Final:
        params = run.params
        experiments = run.experiments if run.experiment_infos else None
        shared_index, self.shared_reason = unassigned_rule(experiments)
        if isinstance(final, MergedPositions):
            logger.info(
                "Computed in the tasks: this process keeps 9 bytes per selected row "
                "(d, strong) for the resolution shells and medians%s",
                "" if experiments is not None else NO_EXPERIMENTS[run.one_pass],
            )
            return self.finalize_merged(final, run)
        logger.info("Selected rows joined in this process (%s)", self.rows_reason)
        kept = final
        records = {r.index: r for r in run.records}
        files = [
            file_data(i, run, kept.get(i), records[i], shared_index, self.d_source)
            for i in range(len(run.files))
        ]
        computed = compute(files, params, self.criteria, experiments, self.d_source)
        lab_frame = experiments is not None and geometry.n_panels(experiments) > 1
        experiment_index = [
            run.files[g.file_index].info.experiment_of_id.get(g.id) for g in computed.groups
        ]
        result = describe_results(
            computed, files, params, self.criteria, lab_frame, experiment_index, run.compact
        )
        result["unassigned_rows"] = self.shared_reason
        summaries = [f.summary for f in files]
        n_selected = sum(f.n_selected for f in summaries)
        return Final(computed, summaries, result, lab_frame, n_selected)

    def finalize_merged(self, merged: MergedPositions, run: Run) -> Final:
        """:meth:`finalize` of the statistic the tasks computed (no rows here)."""
        params = run.params
        experiments = run.experiments if run.experiment_infos else None
        files = FileSummaries(run, run.records, merged.file_flag_counts)
        groups, experiment_index = merged_groups(merged.group_keys, run)
        lab_frame = experiments is not None and geometry.n_panels(experiments) > 1
        computed = Computed(
            stats=merged.stats,
            xyz=None,
            panel=None,
            experiment=None,
            positions=None,
            d=None,
            d_source=self.d_source,
            image_sizes=merged.image_sizes,
            n_detectors=n_detectors(experiments),
            groups=groups,
            beam_centres=geometry.beam_centres(experiments) if experiments is not None else [],
            n_without_geometry=merged.n_without_geometry if experiments is not None else None,
            merged=merged,
        )
        result = describe_results(
            computed, files, params, self.criteria, lab_frame, experiment_index, run.compact
        )
        result["unassigned_rows"] = self.shared_reason
        return Final(computed, files, result, lab_frame, files.n_selected())

    def selection_record(self, final: Final, run: Run, reduced) -> dict:
        return {
            **describe_selection(run, reduced),
            "n_strong": final.result["n_strong"],
            "per_file": [f.record() for f in final.files] if len(final.files) <= 100 else None,
        }

    def results(self, final: Final, run: Run) -> dict:
        return final.result

    def log_results(self, final: Final, run: Run) -> None:
        report(final.result, final.files, self.criteria, run.params)
        if final.computed.n_detectors > 1:
            logger.warning("Position histograms: %s", final.computed.extent_source)

    def summary_line(self, final: Final, run: Run) -> str:
        result = final.result
        n_selected = final.n_selected
        median_d = result["median_d_strong"]
        fraction = "nan%" if not n_selected else f"{100.0 * result['n_strong'] / n_selected:.1f}%"
        return (
            f"Strong reflections: n={result['n_strong']} of {n_selected} ({fraction}) "
            f"{self.criteria.label()} median_d={'nan' if median_d is None else f'{median_d:.2f}'} "
            f"intensity={run.params.intensity.choice}"
        )

    def plot(self, final: Final, run: Run, path: str) -> None:
        from dials_refl_stats.plotting.strong_positions import plot

        plot(
            path,
            final.computed,
            run.experiments if final.lab_frame else None,
            run.title,
            self.criteria,
            run.params,
        )


def merged_groups(keys: np.ndarray, run: Run) -> tuple[list[ExperimentGroup], list[int | None]]:
    """The :class:`ExperimentGroup` of each group key of the tasks' results and its
    experiment's index in the run's experiment list (``None``: none), in one pass."""
    groups, experiment_index = [], []
    files = run.files
    for f, i in zip(*(column.tolist() for column in split_group_keys(keys))):
        info = files[f].info
        groups.append(ExperimentGroup(f, i, info.identifiers.get(i)))
        experiment_index.append(info.experiment_of_id.get(i))
    return groups, experiment_index


#: The program, for dials.refl_stats (which runs every program's statistic in one pass).
PROGRAM_CLASS = StrongReflectionPositions


@dials.util.show_mail_handle_errors()
def run(args=None, *, phil=phil_scope) -> None:
    run_program(StrongReflectionPositions(), args, phil, help_message)


#: How panel sizes are found without experiments (a first pass, or in one pass).
NO_EXPERIMENTS = {
    False: "; no experiments: a first pass over the files found each panel's size (its "
    "largest x and y)",
    True: "; no experiments: each panel's size is its largest x and y, so the strong rows' "
    "panel and position are kept here (24 bytes each) to bin them",
}


def joined_reason(params, criteria: StrongCriteria, binned_here: bool = False) -> str:
    """Why only the rows joined in this process give the results ("": they need not);
    ``binned_here``: a run reading each file once, without experiments, with a plot."""
    reasons = (
        (params.rows_on_driver, "rows_on_driver=True"),
        (binned_here, "no experiments: panel sizes come from the data, and each file is read once"),
        (criteria.top_fraction is not None, "top_fraction compares all selected rows"),
        (params.output.positions, "output.positions lists the rows"),
    )
    return next((why for applies, why in reasons if applies), "")


def merged_statistic(
    run: Run, criteria: StrongCriteria, d_source: str | None, reads: tuple[str, ...]
) -> tuple[StrongPositionsStatistic | None, str]:
    """The statistic computed in the tasks (:mod:`.strong_positions_merge`), or ``None``
    and why only the rows joined here can give the results: an experiment without
    detector or beam, ``top_fraction`` (compares all rows), ``output.positions`` (lists
    them), or ``rows_on_driver=True``. Without experiments the panel sizes come from the
    data: the headers' pass found them (``Run.first_pass``), or a pass of their own,
    reading the columns of ``reads`` as the statistic will (:class:`PanelExtentsStatistic`)."""
    params = run.params
    binned_here = not run.experiment_infos and run.one_pass
    reason = joined_reason(
        params, criteria, binned_here and bool(getattr(params.output, "plot", None))
    )
    if reason:
        return None, reason
    if run.experiment_infos:
        experiments = run.experiments
        frames = geometry.panel_frames(experiments)
        if frames is None:
            return None, "an experiment has no detector or beam"
        lab_frame = geometry.n_panels(experiments) > 1
        image_sizes = geometry.panel_image_sizes(experiments)
    elif run.one_pass:  # no plot: strong rows on panels of unknown size are kept
        experiments = frames = None
        lab_frame = False
        image_sizes = {}
    else:
        experiments = frames = None
        lab_frame = False
        extents = PanelExtentsStatistic(reads)
        first = run.first_pass  # found with the headers, when every file read plainly
        partial = first.partial if first is not None and first.complete else None
        if partial is None:
            partial = run.reduce(extents).partial
        image_sizes = extents.finalize(partial)
        if len(image_sizes) > 1 and getattr(params.output, "plot", None):
            return None, "no experiments and several panels: the plot draws each panel's rows"
    grid = None
    if getattr(params.output, "plot", None):  # dials.refl_stats draws no plot of its own
        from dials_refl_stats.plotting.detector import density_grid, positions_view

        view = positions_view(
            np.zeros((0, 2)),
            np.zeros(0, dtype=bool),
            image_sizes,
            [],
            lab=np.zeros((0, 3)) if lab_frame else None,
            lab_outlines=geometry.lab_outlines(experiments) if lab_frame else None,
        )
        bounds, bins = density_grid(view)
        grid = PlotGrid("lab" if lab_frame else "pixel", bounds, bins)
    value, variance = INTENSITY_COLUMNS[params.intensity.choice]
    statistic = StrongPositionsStatistic(
        intensity=value,
        variance=variance if criteria.needs_variance else None,
        criteria=criteria,
        d_source=d_source,
        frames=frames,
        shared_index=unassigned_rule(experiments)[0] if experiments is not None else None,
        image_sizes=image_sizes,
        n_bins=params.position_histogram.n_bins,
        n_shells=params.resolution.n_shells,
        d_min=params.resolution.d_min,
        d_max=params.resolution.d_max,
        plot_grid=grid,
        point_cap=DENSITY_THRESHOLD,
    )
    return statistic, ""


__all__ = ["run", "phil_scope", "help_message"]
