"""dials.strong_reflection_positions' results: each file's summary and kept rows
(:func:`file_summary`, :func:`file_data`), the statistics of rows joined in this process
(:func:`compute`), and the JSON ``results`` block and log report of what the tasks or
:func:`compute` give."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from dials_refl_stats import geometry
from dials_refl_stats.analysis.rows import FileRows
from dials_refl_stats.analysis.strong_positions import (
    PIXEL_ORIENTATION,
    STRONG_RULE,
    StrongPositions,
    merge_extents,
    strong_positions,
)
from dials_refl_stats.analysis.strong_positions_merge import (
    PRF_BIT,
    SUM_BIT,
    FileFlagCounts,
    MergedPositions,
)
from dials_refl_stats.compact import encode_runs
from dials_refl_stats.experiment_groups import ExperimentGroup, group_rows_by_experiment
from dials_refl_stats.output import to_plain
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.group_columns import experiment_columns, value_columns
from dials_refl_stats.selection import FLAG_BITS, FlagSelection

if TYPE_CHECKING:
    from dials_refl_stats.pipeline.program import Run

logger = logging.getLogger("dials.strong_reflection_positions")

#: The spot centroid whose position is reported.
POSITION = "xyzobs.px.value"

#: intensity.choice -> (value column, variance column).
INTENSITY_COLUMNS = {
    "sum": ("intensity.sum.value", "intensity.sum.variance"),
    "prf": ("intensity.prf.value", "intensity.prf.variance"),
}

#: d_source -> how d is found (the JSON's d_rule).
D_RULES = {
    "geometry": "d of the observed position xyzobs.px.value: s1 along the lab coordinate "
    "(Panel.pixel_to_millimeter, get_lab_coord) with |s1| = |s0|, d = 1/|s1 - s0|",
    "column": "the table's 'd' column (d of the Miller index, written by dials.integrate)",
    None: "no d: give the experiments (.expt) or a table with a 'd' column",
}


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


_INDEX = operator.attrgetter("index")
_N_SELECTED = operator.attrgetter("n_selected")
_FILE_INDEX, _ID, _IDENTIFIER = map(operator.attrgetter, ("file_index", "id", "identifier"))


class FileSummaries(Sequence):
    """Each file's :class:`FileSummary` (in file order), made when asked for: with 10^5
    stills the log and the JSON describe at most 100 files (all with -vv), so most runs
    make none. ``flag_counts``: file index -> (rows with integrated_sum, with
    integrated_prf)."""

    def __init__(self, run: Run, records, flag_counts: FileFlagCounts):
        self.run, self.flag_counts = run, flag_counts
        self.records = sorted(records, key=_INDEX)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self[k] for k in range(len(self))[item]]
        record = self.records[item]
        bits = np.zeros(32, dtype=np.int64)
        bits[SUM_BIT], bits[PRF_BIT] = self.flag_counts.get(record.index, (0, 0))
        return file_summary(record.index, self.run, record, bits)

    def n_selected(self) -> int:
        """The files' selected rows."""
        return sum(map(_N_SELECTED, self.records))


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
            list(map(_FILE_INDEX, groups)),
            list(map(_ID, groups)),
            list(map(_IDENTIFIER, groups)),
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


_CENTRE_FIELDS = ("panel", "px", "mm", "lab")
_CENTRE_VALUES = operator.itemgetter(*_CENTRE_FIELDS)
_EXPERIMENT = operator.itemgetter("experiment")


def distinct_beam_centres(centres: list[dict]) -> list[dict]:
    """The compact form of ``beam_centres``: one entry per distinct centre (to 6
    significant digits) with its ``experiments`` (runs when regular)."""
    distinct: dict[str, tuple[dict, list[int]]] = {}
    keys: dict[tuple, str] = {}  # the centre's own values -> its JSON key (made once)
    # consecutive centres with equal values (10^5 stills sharing models: their values
    # are the same objects) are one look-up
    for values, run in itertools.groupby(centres, _CENTRE_VALUES):
        key = keys.get(values)
        if key is None:
            plain = to_plain(dict(zip(_CENTRE_FIELDS, values)))
            key = keys[values] = json.dumps(plain, sort_keys=True)
            distinct.setdefault(key, (plain, []))
        distinct[key][1].extend(map(_EXPERIMENT, run))
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
