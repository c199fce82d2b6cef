"""dials.strong_reflection_positions: where on the detector are the strong reflections?"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from dataclasses import dataclass

import dials.util
import libtbx.phil
import numpy as np

from dials_refl_stats import geometry
from dials_refl_stats.analysis.rows import FileRows, SelectedRows
from dials_refl_stats.analysis.statistic import ID_BITS, Chunk
from dials_refl_stats.analysis.strong_positions import (
    PIXEL_ORIENTATION,
    STRONG_RULE,
    StrongCriteria,
    StrongPositions,
    data_panel_extents,
    merge_extents,
    strong_positions,
)
from dials_refl_stats.analysis.strong_positions_merge import (
    MergedPositions,
    PanelExtentsStatistic,
    PlotGrid,
    StrongPositionsStatistic,
)
from dials_refl_stats.compact import encode_runs
from dials_refl_stats.experiment_groups import ExperimentGroup, group_rows_by_experiment
from dials_refl_stats.output import to_plain
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.group_columns import experiment_columns, value_columns
from dials_refl_stats.pipeline.phil import INPUT_PHIL, output_phil, selection_phil
from dials_refl_stats.pipeline.program import Program, Run, describe_selection, run_program
from dials_refl_stats.plotting.style import DENSITY_THRESHOLD
from dials_refl_stats.selection import FLAG_BITS, FlagSelection

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

INTENSITY_COLUMNS = {
    "sum": ("intensity.sum.value", "intensity.sum.variance"),
    "prf": ("intensity.prf.value", "intensity.prf.variance"),
}
INTENSITY_PROVIDERS = {
    "sum": "written by dials.find_spots and dials.integrate",
    "prf": "written by dials.integrate with profile fitting; not for stills or spot lists",
}
POSITION = "xyzobs.px.value"
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


def validate_parameters(params) -> None:
    if params.resolution.n_shells is None or params.resolution.n_shells < 1:
        raise Sorry(f"n_shells must be at least 1 (got {params.resolution.n_shells})")
    if params.position_histogram.n_bins is None or params.position_histogram.n_bins < 1:
        raise Sorry(f"n_bins must be at least 1 (got {params.position_histogram.n_bins})")
    d_min, d_max = params.resolution.d_min, params.resolution.d_max
    for name, value in (("d_min", d_min), ("d_max", d_max)):
        if value is not None and not value > 0:
            raise Sorry(f"{name} must be a positive resolution in Angstrom (got {value:g})")
    if d_min is not None and d_max is not None and not d_max > d_min:
        raise Sorry(f"d_max ({d_max:g}) must be greater than d_min ({d_min:g})")


SUM_BIT, PRF_BIT = 8, 9  # integrated_sum, integrated_prf


def intensity_origin(choice: str, bit_counts: np.ndarray) -> str:
    if choice == "prf":
        return "dials.integrate profile fitting (intensity.prf.value)"
    if bit_counts[SUM_BIT]:
        return "dials.integrate summation (intensity.sum.value)"
    return "dials.find_spots: summed counts of the spot's signal pixels (intensity.sum.value)"


def empty_selection_hint(bit_counts: np.ndarray, selection: FlagSelection) -> str:
    """Why the seed's selection may select nothing (stills: summation only)."""
    if selection.rule == "all" and selection.mask == FLAG_BITS["integrated"]:
        n_sum, n_prf = int(bit_counts[SUM_BIT]), int(bit_counts[PRF_BIT])
        if n_sum and not n_prf:
            return (
                f"{n_sum} rows have integrated_sum but none integrated_prf (summation "
                "only, e.g. stills); 'integrated' needs both: use "
                "selection.flags=integrated_sum or selection.rule=any"
            )
    return ""


def choose_d_source(requested: str, files, have_experiments: bool) -> str | None:
    has_column = all("d" in f.columns for f in files)
    if requested == "geometry":
        if not have_experiments:
            raise Sorry("resolution.d_source=geometry needs the experiments (.expt file)")
        return "geometry"
    if requested == "column":
        for f in files:
            require_columns(f, ["d"], "resolution.d_source=column; written by dials.integrate")
        return "column"
    if have_experiments:
        return "geometry"
    return "column" if has_column else None


D_RULES = {
    "geometry": "d of the observed position xyzobs.px.value: s1 along the lab coordinate "
    "(Panel.pixel_to_millimeter, get_lab_coord) with |s1| = |s0|, d = 1/|s1 - s0|",
    "column": "the table's 'd' column (d of the Miller index, written by dials.integrate)",
    None: "no d: give the experiments (.expt) or a table with a 'd' column",
}


def require_columns(opened, columns, why: str) -> None:
    """``Sorry`` naming the file and the first missing column."""
    for column in columns:
        if column not in opened.columns:
            raise Sorry(f"{opened.info.path}: no '{column}' column ({why})")


@dataclass
class FileSummary:
    """What the log and the JSON say of one file."""

    index: int
    path: str
    n_rows: int
    n_selected: int
    selection: FlagSelection  # as used (after any fallback)
    fallback: str | None  # why it differs from the request
    hint: str  # why nothing is selected, if so
    origin: str  # where the intensities come from

    def record(self) -> dict:
        return {
            "path": self.path,
            **self.selection.describe(),
            "fallback": self.fallback,
            "intensity_origin": self.origin,
            "n_rows": self.n_rows,
            "n_selected": self.n_selected,
        }


@functools.lru_cache(maxsize=64)
def _flag_selection(names: tuple[str, ...]) -> FlagSelection:
    """One (immutable) selection object per distinct flag names: 10^5 files share a few."""
    return FlagSelection(names=names)


def file_summary(index: int, run: Run, record, bit_counts: np.ndarray) -> FileSummary:
    """The :class:`FileSummary` of file ``index`` (``bit_counts``: rows per flag bit)."""
    selection = _flag_selection(tuple(record.selection or ()))
    return FileSummary(
        index=index,
        path=run.files[index].info.path,
        n_rows=run.files[index].info.nrows,
        n_selected=record.n_selected,
        selection=selection,
        fallback=record.fallback,
        hint=empty_selection_hint(bit_counts, selection) if not record.n_selected else "",
        origin=intensity_origin(run.params.intensity.choice, bit_counts),
    )


@dataclass
class FileData:
    """The flag-selected rows of one file, as numpy arrays."""

    summary: FileSummary
    identifiers: dict
    rows: np.ndarray  # selected row numbers
    intensity: np.ndarray
    variance: np.ndarray | None
    xyz: np.ndarray
    panel: np.ndarray
    ids: np.ndarray
    experiment: np.ndarray  # index into the experiments, -1 none
    d_column: np.ndarray | None
    extent: dict[int, tuple[float, float]]  # panel sizes from all rows of the file

    @property
    def index(self) -> int:
        return self.summary.index


class PositionRows(SelectedRows):
    """Selected rows, plus each panel's data extent over all rows of a file."""

    def extra(self, chunk: Chunk) -> dict[int, tuple[float, float]]:
        xyz = chunk.columns[POSITION]
        return data_panel_extents(chunk.columns["panel"].astype(np.int64), xyz[:, 0], xyz[:, 1])

    def merge_extra(self, first, second):
        return merge_extents([first, second])


def file_data(index: int, run: Run, kept: FileRows | None, record, shared_index, d_source):
    """One file's kept rows as :class:`FileData` (experiments matched on the driver)."""
    params, info = run.params, run.files[index].info
    value, variance = INTENSITY_COLUMNS[params.intensity.choice]
    columns = kept.columns if kept is not None else {}
    n = kept.rows.size if kept is not None else 0

    def column(name, shape=()):
        return columns[name] if name in columns else np.zeros((n, *shape))

    ids = column("id").astype(np.int64, copy=False)
    panel = column("panel").astype(np.int64, copy=False)
    experiment = np.full(n, -1, dtype=np.int64)
    if run.experiment_infos:
        try:
            experiment = geometry.row_experiments(
                run.experiments, info.identifiers, ids, panel, info.path, shared_index
            )
        except geometry.GeometryError as error:
            raise Sorry(str(error)) from None
    bits = kept.bit_counts if kept is not None else np.zeros(32, dtype=np.int64)
    return FileData(
        summary=file_summary(index, run, record, bits),
        identifiers=info.identifiers,
        rows=kept.rows if kept is not None else np.zeros(0, dtype=np.int64),
        intensity=column(value).astype(np.float64, copy=False),
        variance=(
            column(variance).astype(np.float64, copy=False)
            if params.i_over_sigma.min is not None
            else None
        ),
        xyz=column(POSITION, (3,)).astype(np.float64, copy=False),
        panel=panel,
        ids=ids,
        experiment=experiment,
        d_column=column("d").astype(np.float64, copy=False) if d_source == "column" else None,
        extent=(kept.extra or {}) if kept is not None else {},
    )


def unassigned_rule(experiments) -> tuple[int | None, str | None]:
    """The experiment whose models serve rows with id -1 (``None``: no geometry), and why."""
    if experiments is None:
        return None, None
    index, reason = geometry.shared_models(experiments)
    if index is None:
        return None, f"rows with id -1 get no mm, lab or d: {reason}"
    return index, f"rows with id -1 use experiment {index}'s models: {reason}"


@dataclass
class Final:
    """What the statistics of a run give, with the files behind them."""

    computed: "Computed"
    files: list[FileSummary]
    result: dict
    lab_frame: bool


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

    def statistic(self, run: Run) -> PositionRows:
        params = run.params
        experiments = run.experiments if run.experiment_infos else None
        self.d_source = choose_d_source(
            params.resolution.d_source, run.files, experiments is not None
        )
        value, variance = INTENSITY_COLUMNS[params.intensity.choice]
        wanted = [POSITION, "panel", value]
        if self.criteria.needs_variance:
            wanted.append(variance)
        if self.d_source == "column":
            wanted.append("d")
        merged, self.rows_reason = merged_statistic(
            run, self.criteria, self.d_source, tuple(wanted)
        )
        return merged if merged is not None else PositionRows(tuple(wanted))

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
        return Final(computed, [f.summary for f in files], result, lab_frame)

    def finalize_merged(self, merged: MergedPositions, run: Run) -> Final:
        """:meth:`finalize` of the statistic the tasks computed (no rows here)."""
        params = run.params
        experiments = run.experiments if run.experiment_infos else None
        no_bits = np.zeros(32, dtype=np.int64)
        files = []
        for record in sorted(run.records, key=lambda r: r.index):
            bits = no_bits.copy()
            bits[SUM_BIT], bits[PRF_BIT] = merged.file_flag_counts.get(record.index, (0, 0))
            files.append(file_summary(record.index, run, record, bits))
        keys = merged.group_keys
        groups = [
            ExperimentGroup(f, i, run.files[f].info.identifiers.get(i))
            for f, i in zip(
                (keys >> ID_BITS).tolist(), ((keys & ((1 << ID_BITS) - 1)) - 1).tolist()
            )
        ]
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
        experiment_index = [run.files[g.file_index].info.experiment_of_id.get(g.id) for g in groups]
        result = describe_results(
            computed, files, params, self.criteria, lab_frame, experiment_index, run.compact
        )
        result["unassigned_rows"] = self.shared_reason
        return Final(computed, files, result, lab_frame)

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
        n_selected = int(sum(f.n_selected for f in final.files))
        median_d = result["median_d_strong"]
        fraction = "nan%" if not n_selected else f"{100.0 * result['n_strong'] / n_selected:.1f}%"
        return (
            f"Strong reflections: n={result['n_strong']} of {n_selected} ({fraction}) "
            f"{self.criteria.label()} median_d={'nan' if median_d is None else f'{median_d:.2f}'} "
            f"intensity={run.params.intensity.choice}"
        )

    def plot(self, final: Final, run: Run, path: str) -> None:
        plot(
            path,
            final.computed,
            run.experiments if final.lab_frame else None,
            run,
            self.criteria,
            run.params,
        )


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
#: Where panel sizes come from without experiments.
DATA_EXTENTS = "data: largest x and y of each panel in the files"
DETECTOR_EXTENTS = "image size of each panel of the experiments' detectors"


def n_detectors(experiments) -> int:
    """How many different detectors the experiments have (0 without experiments)."""
    return 0 if experiments is None else geometry.detector_layouts(experiments)


def extent_source(n_detectors: int) -> str:
    """Where the histograms' extents come from: the data, the experiments' detector, or,
    for experiments with different detectors, the largest panel of each number (their
    pixel positions are then binned together: said in the JSON, the log and the plot)."""
    if n_detectors == 0:
        return DATA_EXTENTS
    if n_detectors == 1:
        return DETECTOR_EXTENTS
    return (
        f"largest image size of each panel over {n_detectors} different detectors (their "
        "pixel positions share one histogram per panel number)"
    )


@dataclass
class Computed:
    """The statistics of a run and the per-row arrays behind them (all files together)."""

    stats: StrongPositions
    xyz: np.ndarray
    panel: np.ndarray
    experiment: np.ndarray
    positions: geometry.Positions | None  # mm, lab and d, with experiments
    d: np.ndarray | None
    d_source: str | None
    image_sizes: dict[int, tuple[float, float]]
    #: different detectors of the experiments (0: no experiments, extents from the data)
    n_detectors: int
    groups: list[ExperimentGroup]
    beam_centres: list[dict]
    n_without_geometry: int | None = None
    merged: MergedPositions | None = None  # what the tasks computed (then no rows here)

    @property
    def extent_source(self) -> str:
        return extent_source(self.n_detectors)


def joined(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(arrays)``; one file's array itself (10^6 rows: no copy)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def compute(files, params, criteria, experiments, d_source) -> Computed:
    """Geometry of the selected rows (DIALS side), then the statistics (pure numpy)."""
    xyz = joined([f.xyz for f in files]).reshape(-1, 3)
    panel = joined([f.panel for f in files])
    experiment = joined([f.experiment for f in files])
    positions = d = None
    if experiments is not None:
        positions = geometry.map_positions(experiments, experiment, panel, xyz[:, :2])
    if d_source == "geometry":
        d = positions.d
    elif d_source == "column":
        d = joined([f.d_column for f in files])

    image_sizes = merge_extents(f.extent for f in files)
    if experiments is not None:
        image_sizes.update(geometry.panel_image_sizes(experiments))
    groups, group_of_row = [], []
    for f in files:
        file_groups, rows_group = group_rows_by_experiment(f.index, f.identifiers, f.ids)
        group_of_row.append(rows_group + len(groups))
        groups.extend(file_groups)

    stats = strong_positions(
        joined([f.intensity for f in files]),
        xyz[:, 0],
        xyz[:, 1],
        panel,
        criteria,
        image_sizes=image_sizes,
        variance=(joined([f.variance for f in files]) if criteria.needs_variance else None),
        d=d,
        group_of_row=joined(group_of_row),
        n_groups=len(groups),
        n_bins=params.position_histogram.n_bins,
        n_shells=params.resolution.n_shells,
        d_min=params.resolution.d_min,
        d_max=params.resolution.d_max,
    )
    return Computed(
        stats=stats,
        xyz=xyz,
        panel=panel,
        experiment=experiment,
        positions=positions,
        d=d,
        d_source=d_source,
        image_sizes=image_sizes,
        n_detectors=n_detectors(experiments),
        groups=groups,
        beam_centres=[] if experiments is None else geometry.beam_centres(experiments),
        n_without_geometry=None if positions is None else positions.n_without_geometry,
    )


def describe_results(
    computed: Computed,
    files,
    params,
    criteria,
    lab_frame: bool,
    experiment_index: list[int | None],
    compact: bool = False,
) -> dict:
    """The JSON ``results`` block (per-experiment columns and beam centres in the
    ``compact`` form when asked)."""
    stats, shells = computed.stats, computed.stats.shells
    results = {
        "criteria": {
            "intensity_column": INTENSITY_COLUMNS[params.intensity.choice][0],
            "intensity_min": criteria.intensity_min,
            "i_over_sigma_min": criteria.i_over_sigma_min,
            "top_fraction": criteria.top_fraction,
            "label": criteria.label(),
            "rule": STRONG_RULE,
        },
        "n_selected": stats.selection.n_candidates,
        "n_strong": stats.selection.n_strong,
        "strong_fraction": stats.selection.strong_fraction,
        "strong_selection": stats.selection.as_dict(),
        "d_source": computed.d_source,
        "d_rule": D_RULES[computed.d_source],
        "n_without_geometry": computed.n_without_geometry,
        "median_d_all": stats.median_d_all,
        "median_d_strong": stats.median_d_strong,
        "resolution_shells": None if shells is None else shells.as_dict(),
        "orientation": PIXEL_ORIENTATION,
        "plot_view": (
            "lab: whole detector in the lab frame (mm), seen from the sample"
            if lab_frame
            else "pixel: panel pixel coordinates, origin top-left, y down"
        ),
        "position_histograms": {
            "n_bins": params.position_histogram.n_bins,
            "extent_source": computed.extent_source,
            "panels": [h.as_dict() for h in stats.histograms],
        },
        "beam_centres": (
            distinct_beam_centres(computed.beam_centres) if compact else computed.beam_centres
        ),
        "per_experiment": per_experiment_columns(
            computed, stats, len(files), experiment_index, compact
        ),
    }
    if params.output.positions:
        results["positions"] = positions_record(files, computed)
    return results


def per_experiment_columns(
    computed: Computed, stats: StrongPositions, n_files: int, experiment_index, compact: bool
) -> dict:
    """Selected and strong counts, strong fraction (not in the compact form: it is
    n_strong / n_selected) and median d per experiment (columns)."""
    groups = computed.groups
    n_all = np.asarray(stats.n_selected_per_group, dtype=np.int64).reshape(-1)
    n_strong = np.asarray(stats.n_strong_per_group, dtype=np.int64).reshape(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(n_all > 0, n_strong / np.maximum(n_all, 1), np.nan)
    median = np.array(
        [np.nan if m is None else m for m in stats.median_d_strong_per_group], dtype=np.float64
    )
    return {
        **experiment_columns(
            [g.file_index for g in groups],
            [g.id for g in groups],
            [g.identifier for g in groups],
            experiment_index,
            n_files,
            compact,
        ),
        **value_columns(
            {
                "n_selected": n_all,
                "n_strong": n_strong,
                **({} if compact else {"strong_fraction": fraction}),
                "median_d_strong": median,
            },
            compact,
        ),
    }


def distinct_beam_centres(centres: list[dict]) -> list[dict]:
    """The compact form of ``beam_centres``: one entry per distinct centre (to 6
    significant digits) with its ``experiments`` (runs when regular)."""
    distinct: dict[str, tuple[dict, list[int]]] = {}
    keys: dict[tuple, str] = {}  # the centre's own values -> its JSON key (made once)
    fields = ("panel", "px", "mm", "lab")
    for centre in centres:
        values = tuple(centre[k] for k in fields)
        key = keys.get(values)
        if key is None:
            plain = to_plain(dict(zip(fields, values)))
            key = keys[values] = json.dumps(plain, sort_keys=True)
            distinct.setdefault(key, (plain, []))
        distinct[key][1].append(centre["experiment"])
    return [
        {"experiments": encode_runs(experiments), **plain}
        for plain, experiments in distinct.values()
    ]


def positions_record(files, computed: Computed) -> dict:
    """Every strong reflection's position, column by column (output.positions=True)."""
    strong, xyz, positions = computed.stats.selection.strong, computed.xyz, computed.positions
    record = {
        "file_index": np.concatenate([np.full(f.rows.size, f.index) for f in files])[strong],
        "row": np.concatenate([f.rows for f in files])[strong],
        "id": np.concatenate([f.ids for f in files])[strong],
        "experiment": computed.experiment[strong],
        "panel": computed.panel[strong],
        "x_px": xyz[strong, 0],
        "y_px": xyz[strong, 1],
        "z_px": xyz[strong, 2],
        "intensity": np.concatenate([f.intensity for f in files])[strong],
    }
    if positions is not None:
        record.update(
            x_mm=positions.mm[strong, 0],
            y_mm=positions.mm[strong, 1],
            lab_x=positions.lab[strong, 0],
            lab_y=positions.lab[strong, 1],
            lab_z=positions.lab[strong, 2],
        )
    if computed.d is not None:
        record["d"] = computed.d[strong]
    return record


def report(result, files, criteria, params) -> None:
    """Per-file selection, the fallback if any, and the shell table in the log.

    Per-file lines for at most 20 files (all of them with -vv).
    """
    level = logging.INFO if len(files) <= 20 else logging.DEBUG
    for f in files if logger.isEnabledFor(level) else ():  # 10^5 lines not made for nothing
        logger.log(
            level,
            "%s: %d of %d reflections selected (%s, %s); intensity from %s",
            f.path,
            f.n_selected,
            f.n_rows,
            ",".join(f.selection.names) or "all",
            f.selection.describe()["dials_equivalent"],
            f.origin,
        )
        if f.fallback:
            logger.log(
                level if level == logging.DEBUG else logging.WARNING,
                "%s: selection.flags=integrated selects nothing here: %s "
                "(set selection.flags or selection.fallback=False to change this)",
                f.path,
                f.fallback,
            )
        if not f.n_selected:
            logger.log(
                level if level == logging.DEBUG else logging.WARNING,
                "%s: no reflections selected (selection.flags=%s, rule=%s)%s",
                f.path,
                ",".join(f.selection.names),
                f.selection.rule,
                f": {f.hint}" if f.hint else "",
            )
    if result["n_strong"] == 0:
        logger.warning("No strong reflections (%s): counts are zero", criteria.label())
    n_selected = result["n_selected"]
    top = criteria.top_fraction
    if top is not None and top < 1 and n_selected > 1 and result["n_strong"] == n_selected:
        logger.warning(
            "top_fraction=%g calls all %d selected reflections strong: their intensities are "
            "tied (ties are kept); check intensity.choice and the selection",
            criteria.top_fraction,
            n_selected,
        )
    shells = result["resolution_shells"]
    if shells is not None and shells["d_edges"] is not None:
        n_inside = sum(shells["n_all"])
        if shells["n_outside"] > n_inside:
            logger.warning(
                "%d of %d reflections are outside the resolution shells (%s to %s A):"
                " resolution.d_min / d_max do not match the data",
                shells["n_outside"],
                n_inside + shells["n_outside"],
                f"{shells['d_edges'][0]:.3g}",
                f"{shells['d_edges'][-1]:.3g}",
            )
    if shells is None:
        logger.info("No resolution shells: %s", D_RULES[None])
    elif shells["d_edges"] is not None:
        lines = [f"{'d_max':>8} {'d_min':>8} {'all':>8} {'strong':>8} {'fraction':>9}"]
        edges = shells["d_edges"]
        for i in range(shells["n_shells"]):
            fraction = shells["strong_fraction"][i]
            lines.append(
                f"{edges[i]:8.3f} {edges[i + 1]:8.3f} {shells['n_all'][i]:8d} "
                f"{shells['n_strong'][i]:8d} "
                f"{'-' if fraction is None else f'{100 * fraction:8.2f}%':>9}"
            )
        if shells["n_outside"]:
            lines.append(f"{shells['n_outside']} selected reflections outside these shells")
        logger.info(
            "Strong reflections per resolution shell (d from %s):\n%s",
            result["d_source"],
            "\n".join(lines),
        )


def plot(path, computed: Computed, lab_experiments, run: Run, criteria, params) -> None:
    """Positions in panel pixels, or in the lab frame for ``lab_experiments`` (a
    multi-panel detector); strong fraction per resolution shell."""
    from dials_refl_stats.plotting.detector import shell_view, strong_positions_figure

    if computed.merged is not None:
        view = merged_view(computed, lab_experiments)
    else:
        view = legacy_view(computed, lab_experiments)
    names = run.title
    label = f"{criteria.label()}, intensity.{params.intensity.choice}"
    strong_positions_figure(
        path,
        view,
        shell_view(computed.stats.shells, computed.d_source),
        title=f"Strong reflections ({label}): {names}",
        strong_label=criteria.label(),
        format_from=params.output.plot,
    )


def with_extent_note(view, computed: Computed):
    """``view``, its extent note saying so when different detectors share the panels."""
    if computed.n_detectors <= 1:
        return view
    note = (
        f"extent: largest panel of {computed.n_detectors} different detectors, "
        "their positions overlaid"
    )
    return dataclasses.replace(view, extent_note=note)


def legacy_view(computed: Computed, lab_experiments):
    """The plot's view of the rows joined here."""
    from dials_refl_stats.plotting.detector import positions_view

    view = positions_view(
        computed.xyz[:, :2],
        computed.stats.selection.strong,
        computed.image_sizes,
        computed.beam_centres,
        lab=None if lab_experiments is None else computed.positions.lab,
        lab_outlines=None if lab_experiments is None else geometry.lab_outlines(lab_experiments),
        panel=computed.panel,
        experiment=computed.experiment,
        extent_from_data=computed.n_detectors == 0,
    )
    return with_extent_note(view, computed)


def merged_view(computed: Computed, lab_experiments):
    """The plot's view of what the tasks binned: densities, and points while few."""
    from dials_refl_stats.plotting.detector import positions_view

    plot = computed.merged.plot
    view = positions_view(
        np.zeros((0, 2)),
        np.zeros(0, dtype=bool),
        computed.image_sizes,
        computed.beam_centres,
        lab=None if lab_experiments is None else np.zeros((0, 3)),
        lab_outlines=None if lab_experiments is None else geometry.lab_outlines(lab_experiments),
        panel=np.zeros(0, dtype=np.int64),
        experiment=np.zeros(0, dtype=np.int64),
        extent_from_data=computed.n_detectors == 0,
    )
    view = with_extent_note(view, computed)
    empty = np.zeros((0, 2))
    n_experiments = computed.merged.max_experiment + 1
    return dataclasses.replace(
        view,
        all_xy=empty if plot.all_points.xy is None else plot.all_points.xy,
        strong_xy=empty if plot.strong_points.xy is None else plot.strong_points.xy,
        all_experiment=plot.all_points.experiment,
        strong_experiment=plot.strong_points.experiment,
        experiment_labels=[f"expt {k}" for k in range(n_experiments)],
        all_density=plot.all_density,
        strong_density=plot.strong_density,
        n_all=plot.all_points.n,
        n_strong=plot.strong_points.n,
    )


def merged_statistic(
    run: Run, criteria: StrongCriteria, d_source: str | None, reads: tuple[str, ...]
) -> tuple[StrongPositionsStatistic | None, str]:
    """The statistic computed in the tasks (:mod:`.strong_positions_merge`), or ``None``
    and why only the rows joined here can give the results: an experiment without
    detector or beam, ``top_fraction`` (compares all rows), ``output.positions`` (lists
    them), or ``rows_on_driver=True``. Without experiments the panel sizes come from the
    data: a first pass over the files, reading the columns of ``reads`` as the
    statistic will, finds them (:class:`PanelExtentsStatistic`)."""
    params = run.params
    reasons = (
        (params.rows_on_driver, "rows_on_driver=True"),
        (
            not run.experiment_infos and run.one_pass and getattr(params.output, "plot", None),
            "no experiments: panel sizes come from the data, and each file is read once",
        ),
        (criteria.top_fraction is not None, "top_fraction compares all selected rows"),
        (params.output.positions, "output.positions lists the rows"),
    )
    for applies, reason in reasons:
        if applies:
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
        image_sizes = extents.finalize(run.reduce(extents).partial)
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
