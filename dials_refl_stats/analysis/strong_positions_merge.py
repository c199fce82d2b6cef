"""Strong reflection positions as a mergeable statistic: the tasks do the work.

:mod:`.strong_positions` computes everything from the selected rows at once. With
experiments (their geometry as :class:`~dials_refl_stats.geometry.PanelFrames`: numpy
tables for simple panels, dxtbx panels for others such as parallax-corrected ones) and
no criterion that compares rows with each other (``top_fraction``), each task computes
its files' part instead: the strong rows, d, the panel histograms (the
detectors give the bins), counts, the per-experiment medians (an experiment's rows are
in one file), the plot's density grids and, while there are few, its points. The
driver then holds, per selected row with a finite d, only that d and whether the row
is strong (9 bytes; the resolution shells span the data's d range and the medians of d
are exact, both over the whole run), instead of every selected row's columns.

Every result equals :func:`.strong_positions.strong_positions` on the joined rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dials_refl_stats.analysis.grouping import density_cells
from dials_refl_stats.analysis.median import median_or_none
from dials_refl_stats.analysis.resolution_shells import ResolutionShells, resolution_shells
from dials_refl_stats.analysis.statistic import (
    ID_BITS,
    Chunk,
    Statistic,
    experiments_of_keys,
    merge_counts,
)
from dials_refl_stats.analysis.strong_positions import (
    PanelHistogram,
    StrongCriteria,
    StrongPositions,
    StrongSelection,
    data_panel_extents,
    medians_per_group,
    merge_extents,
    position_histograms,
    select_strong,
)
from dials_refl_stats.geometry import PanelFrames

POSITION = "xyzobs.px.value"
SUM_BIT, PRF_BIT = 8, 9  # integrated_sum, integrated_prf
ID_MASK = (1 << ID_BITS) - 1


#: Sorted distinct cells and their counts (a sparse histogram; merges by addition).
CellCounts = tuple[np.ndarray, np.ndarray]


def cell_counts(cells: np.ndarray) -> CellCounts:
    keys, counts = np.unique(cells, return_counts=True)
    return keys.astype(np.int64), counts.astype(np.int64)


def merged_cells(parts: list[CellCounts]) -> CellCounts:
    """Sparse histograms added (any number at once)."""
    (keys,), counts = merge_counts(
        (np.concatenate([p[0] for p in parts]),), np.concatenate([p[1] for p in parts])
    )
    return keys, counts


def dense(cells: CellCounts, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    out[cells[0]] = cells[1]
    return out


NO_CELLS: CellCounts = (np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclass(frozen=True)
class PlotGrid:
    """The plot's density cells: ``kind`` ``"pixel"`` (x, y px) or ``"lab"`` (lab x, y
    mm), ``bounds`` ``(x0, x1, y0, y1)``, ``bins`` ``(nx, ny)``."""

    kind: str
    bounds: tuple[float, float, float, float]
    bins: tuple[int, int]

    def cells(self, xy: np.ndarray) -> CellCounts:
        """Points per density cell (``iy * nx + ix``), as ``density_counts`` bins them."""
        return cell_counts(density_cells(xy[:, 0], xy[:, 1], self.bounds, self.bins))

    def dense(self, cells: CellCounts) -> np.ndarray:
        nx, ny = self.bins
        return dense(cells, nx * ny).reshape(ny, nx)


@dataclass
class Points:
    """Plot points (with their experiment and a run-wide order key) while there are at
    most ``cap`` of them in all; past it only their number."""

    n: int
    xy: np.ndarray | None = None
    experiment: np.ndarray | None = None
    order: np.ndarray | None = None

    @staticmethod
    def merged(parts: list["Points"], cap: int) -> "Points":
        """``parts`` joined in order: their points while at most ``cap`` in all."""
        n = sum(p.n for p in parts)
        if n > cap or any(p.xy is None for p in parts):
            return Points(n)
        return Points(
            n,
            np.concatenate([p.xy for p in parts]),
            np.concatenate([p.experiment for p in parts]),
            np.concatenate([p.order for p in parts]),
        )

    def in_order(self) -> "Points":
        if self.xy is None:
            return self
        order = np.argsort(self.order, kind="stable")
        return Points(self.n, self.xy[order], self.experiment[order], self.order[order])


@dataclass
class PlotPart:
    """The plot's share of a partial: density cells of all and of strong rows, and
    their points while few (dense ``(ny, nx)`` grids once final)."""

    all_density: CellCounts | np.ndarray
    strong_density: CellCounts | np.ndarray
    all_points: Points
    strong_points: Points


@dataclass
class PositionsPartial:
    """The mergeable part of the results for some files (see the module docstring)."""

    counts: np.ndarray  # n_candidates, n_strong, n_not_finite, n_without_sigma, n_no_geometry
    d: np.ndarray  # finite d of the selected rows
    d_strong: np.ndarray  # whether each of those rows is strong
    n_d_not_finite: int
    #: strong rows per cell of the detectors' panel histograms: panel * n_bins^2 + iy *
    #: n_bins + ix (sparse), and per panel those on it outside the bins
    histogram_cells: CellCounts
    outside: dict[int, int]
    #: strong rows on panels of no detector (rows without an experiment): panel, x, y
    orphans: np.ndarray
    orphan_extents: dict[int, tuple[float, float]]  # data extents of such panels
    group_keys: np.ndarray  # run-wide (file, id) keys, sorted, unique once complete
    group_selected: np.ndarray
    group_strong: np.ndarray
    group_median: np.ndarray | None  # once complete: median d of strong rows (NaN none)
    pending: tuple[np.ndarray, np.ndarray] | None  # until complete: (key, d) strong rows
    files: np.ndarray  # (n, 3): file index, rows with integrated_sum, with integrated_prf
    max_experiment: int
    plot: PlotPart | None = None


@dataclass
class MergedPositions:
    """What the run gives: :class:`StrongPositions` without per-row arrays, plus the
    per-group keys, per-file flag counts and the plot's grids and points."""

    stats: StrongPositions
    n_without_geometry: int
    image_sizes: dict[int, tuple[float, float]]
    group_keys: np.ndarray
    file_flag_counts: FileFlagCounts  # file -> (integrated_sum, _prf rows)
    max_experiment: int
    plot: PlotPart | None = field(default=None)


class PanelExtentsStatistic(Statistic):
    """Each panel's data extent over every row (:func:`data_panel_extents`): the panel
    sizes when no detector is known, found by a first pass over the files."""

    name = "panel_extents"
    batchable = True

    def __init__(self, reads: tuple[str, ...] = (POSITION, "panel"), optional=()):
        #: the columns the pass after it reads: the same files are read, or skipped
        #: (``input.on_error=skip``), in both passes
        self.reads = tuple(dict.fromkeys((POSITION, "panel", *reads)))
        #: read too where a file has them (the pass after may read them)
        self.optional = tuple(c for c in optional if c not in self.reads)

    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        return self.reads + tuple(c for c in self.optional if c in available)

    def partial(self, chunk: Chunk) -> dict[int, tuple[float, float]]:
        xyz = np.asarray(chunk.columns[POSITION], dtype=np.float64).reshape(-1, 3)
        return data_panel_extents(np.asarray(chunk.columns["panel"]), xyz[:, 0], xyz[:, 1])

    def merge(self, first, second) -> dict[int, tuple[float, float]]:
        return merge_extents([first, second])

    def finalize(self, partial) -> dict[int, tuple[float, float]]:
        return dict(sorted((partial or {}).items()))


class StrongPositionsStatistic(Statistic):
    """The statistic of ``dials.strong_reflection_positions`` computed in the tasks."""

    name = "strong_reflection_positions"
    #: chunks of many small files: the partial tells files apart by their group keys
    batchable = True

    def __init__(
        self,
        *,
        intensity: str,
        variance: str | None,
        criteria: StrongCriteria,
        d_source: str | None,
        frames: PanelFrames | None,
        shared_index: int | None,
        image_sizes: dict[int, tuple[float, float]],
        n_bins: int,
        n_shells: int,
        d_min: float | None,
        d_max: float | None,
        plot_grid: PlotGrid | None,
        point_cap: int,
    ):
        if criteria.top_fraction is not None:
            raise ValueError("top_fraction compares rows of all files: not mergeable")
        self.intensity, self.variance, self.criteria = intensity, variance, criteria
        self.d_source, self.frames, self.shared_index = d_source, frames, shared_index
        self.image_sizes = dict(image_sizes)
        self.n_bins, self.n_shells, self.d_min, self.d_max = n_bins, n_shells, d_min, d_max
        self.plot_grid, self.point_cap = plot_grid, point_cap

    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        wanted = [POSITION, "panel", self.intensity]
        if self.criteria.needs_variance:
            wanted.append(self.variance)
        if self.d_source == "column":
            wanted.append("d")
        return tuple(wanted)

    def partial(self, chunk: Chunk) -> PositionsPartial:
        columns, selected = chunk.columns, chunk.selected
        files = _file_flag_counts(chunk)
        all_xyz = np.asarray(columns[POSITION], dtype=np.float64).reshape(-1, 3)
        all_panel = np.asarray(columns["panel"]).astype(np.int64)
        rows = np.flatnonzero(selected)
        xy, panel = all_xyz[rows, :2], all_panel[rows]
        intensity = np.asarray(columns[self.intensity], dtype=np.float64)[rows]
        variance = None
        if self.criteria.needs_variance:
            variance = np.asarray(columns[self.variance], dtype=np.float64)[rows]
        selection = select_strong(intensity, self.criteria, variance)
        strong = selection.strong
        keys = chunk.group_keys()[rows]
        experiment = self._experiments(chunk, keys, panel)
        lab = d = None
        n_no_geometry = 0
        if self.frames is not None:
            lab, d = self.frames.lab_and_d(experiment, panel, xy)
            n_no_geometry = int(np.isnan(d).sum())
        if self.d_source == "column":
            d = np.asarray(columns["d"], dtype=np.float64)[rows]
        counts = np.array(
            [
                selection.n_candidates,
                selection.n_strong,
                selection.n_intensity_not_finite,
                selection.n_without_sigma or 0,
                n_no_geometry,
            ],
            dtype=np.int64,
        )
        known = np.isin(panel, self._known_panels)
        histogram_cells, outside = self._histograms(xy[strong & known], panel[strong & known])
        orphan_rows = strong & ~known
        orphans = np.column_stack([panel[orphan_rows], xy[orphan_rows]]).astype(np.float64)
        unknown = ~np.isin(all_panel, self._known_panels)
        orphan_extents = {}
        if unknown.any():
            x, y = all_xyz[unknown, 0], all_xyz[unknown, 1]
            orphan_extents = data_panel_extents(all_panel[unknown], x, y)
        group_keys, group_of_row = np.unique(keys, return_inverse=True)
        n = group_keys.size
        finite_d = None if d is None else np.isfinite(d)
        partial = PositionsPartial(
            counts=counts,
            d=np.zeros(0) if d is None else d[finite_d],
            d_strong=np.zeros(0, bool) if d is None else strong[finite_d],
            n_d_not_finite=0 if d is None else int((~finite_d).sum()),
            histogram_cells=histogram_cells,
            outside=outside,
            orphans=orphans,
            orphan_extents=orphan_extents,
            group_keys=group_keys,
            group_selected=np.bincount(group_of_row, minlength=n).astype(np.int64),
            group_strong=np.bincount(group_of_row[strong], minlength=n).astype(np.int64),
            group_median=None,
            pending=(keys[strong], np.full(int(strong.sum()), np.nan) if d is None else d[strong]),
            files=files,
            max_experiment=int(experiment.max()) if experiment.size else -1,
        )
        if self.plot_grid is not None:
            order = chunk.order_keys(rows)
            partial.plot = self._plot_part(xy, lab, strong, experiment, order)
        return partial

    def _experiments(self, chunk: Chunk, keys: np.ndarray, panel: np.ndarray) -> np.ndarray:
        """Each selected row's experiment index (-1 none), panels checked (a bad panel
        names the file of the first row on one)."""
        files = chunk.files or (chunk.file,)
        experiment = experiments_of_keys(files, keys)
        if self.shared_index is not None:
            experiment[(keys & ID_MASK) == 0] = self.shared_index  # id -1
        if self.frames is not None:
            paths = {file.index: file.path for file in files}
            self.frames.check_panels(
                experiment, panel, lambda row: paths[int(keys[row]) >> ID_BITS]
            )
        return experiment

    @property
    def _known_panels(self) -> np.ndarray:
        return np.array(sorted(self.image_sizes), dtype=np.int64)

    def _histograms(self, xy, panel) -> tuple[CellCounts, dict[int, int]]:
        """:func:`position_histograms` of strong rows on the detectors' panels, sparse."""
        if not panel.size:
            return NO_CELLS, {}
        present = {int(p): self.image_sizes[int(p)] for p in np.unique(panel)}
        found = position_histograms(xy[:, 0], xy[:, 1], panel, present, self.n_bins)
        size = self.n_bins * self.n_bins
        keys, counts = [], []
        for h in found:
            flat = h.counts.ravel()
            cells = np.flatnonzero(flat)
            keys.append(cells + h.panel * size)
            counts.append(flat[cells])
        cells = (np.concatenate(keys).astype(np.int64), np.concatenate(counts).astype(np.int64))
        return cells, {h.panel: h.n_outside for h in found if h.n_outside}

    def _plot_part(self, xy, lab, strong, experiment, order) -> PlotPart:
        grid = self.plot_grid
        if grid.kind == "lab":
            has = np.isfinite(lab[:, 0])
            points, strong_points = has, has & strong
            plot_xy = lab[:, :2]
        else:
            points, strong_points = np.ones(strong.size, bool), strong
            plot_xy = xy

        def point_set(rows: np.ndarray) -> Points:
            n = int(rows.sum())
            if n > self.point_cap:
                return Points(n)
            return Points(n, plot_xy[rows], experiment[rows], order[rows])

        return PlotPart(
            grid.cells(plot_xy[points]),
            grid.cells(plot_xy[strong_points]),
            point_set(points),
            point_set(strong_points),
        )

    def merge(self, first: PositionsPartial, second: PositionsPartial) -> PositionsPartial:
        return self.merge_many([first, second])

    def merge_many(self, parts: list[PositionsPartial]) -> PositionsPartial:
        """:meth:`merge` of all ``parts`` in one step: each per-row array (d of every
        selected row: ~9 bytes a row, 137 MB for 10^5 stills) copied once, not once per
        level of a pairwise tree. Every field is a concatenation in order, an exact
        integer sum or a maximum, so the result is the pairwise tree's."""
        outside: dict[int, int] = {}
        for part in parts:
            for number, n in part.outside.items():
                outside[number] = outside.get(number, 0) + n
        plots = [p.plot for p in parts]
        plot = None
        if all(p is not None for p in plots):
            cap = self.point_cap
            plot = PlotPart(
                merged_cells([p.all_density for p in plots]),
                merged_cells([p.strong_density for p in plots]),
                Points.merged([p.all_points for p in plots], cap),
                Points.merged([p.strong_points for p in plots], cap),
            )
        pendings = [p.pending for p in parts if p.pending is not None]
        pending = None
        if pendings:
            pending = tuple(np.concatenate([p[i] for p in pendings]) for i in (0, 1))
        medians = [p.group_median for p in parts]
        return PositionsPartial(
            counts=np.sum([p.counts for p in parts], axis=0),
            d=np.concatenate([p.d for p in parts]),
            d_strong=np.concatenate([p.d_strong for p in parts]),
            n_d_not_finite=sum(p.n_d_not_finite for p in parts),
            histogram_cells=merged_cells([p.histogram_cells for p in parts]),
            outside=outside,
            orphans=np.concatenate([p.orphans for p in parts]),
            orphan_extents=merge_extents([p.orphan_extents for p in parts]),
            group_keys=np.concatenate([p.group_keys for p in parts]),
            group_selected=np.concatenate([p.group_selected for p in parts]),
            group_strong=np.concatenate([p.group_strong for p in parts]),
            group_median=None if any(m is None for m in medians) else np.concatenate(medians),
            pending=pending,
            files=np.concatenate([p.files for p in parts]),
            max_experiment=max(p.max_experiment for p in parts),
            plot=plot,
        )

    def complete(self, partial: PositionsPartial | None) -> PositionsPartial | None:
        """Per-group counts summed over a file's chunks and medians of d computed: a
        task's partial covers whole files, and an experiment's rows are in one file."""
        if partial is None or partial.pending is None:
            return partial
        keys, group_of_row = np.unique(partial.group_keys, return_inverse=True)
        n = keys.size
        pending_keys, pending_d = partial.pending
        group_of_strong = np.searchsorted(keys, pending_keys)
        medians = medians_per_group(pending_d, group_of_strong, n)
        partial.group_keys = keys
        partial.group_selected = np.bincount(
            group_of_row, weights=partial.group_selected, minlength=n
        ).astype(np.int64)
        partial.group_strong = np.bincount(
            group_of_row, weights=partial.group_strong, minlength=n
        ).astype(np.int64)
        partial.group_median = np.array([np.nan if m is None else m for m in medians])
        partial.pending = None
        return partial

    def finalize(self, partial: PositionsPartial | None) -> MergedPositions:
        partial = self.complete(partial) if partial is not None else self.empty()
        order = np.argsort(partial.group_keys, kind="stable")
        medians = np.asarray(partial.group_median[order], dtype=np.float64)
        n_candidates, n_strong, n_not_finite, n_without_sigma, n_no_geometry = (
            int(v) for v in partial.counts
        )
        selection = StrongSelection(
            strong=np.zeros(0, bool),
            n_candidates=n_candidates,
            n_strong=n_strong,
            n_intensity_not_finite=n_not_finite,
            n_without_sigma=n_without_sigma if self.criteria.needs_variance else None,
            top_fraction_k=None,
            top_fraction_threshold=None,
        )
        image_sizes = merge_extents([partial.orphan_extents])
        image_sizes.update(self.image_sizes)
        stats = StrongPositions(
            selection=selection,
            shells=self._shells(partial),
            histograms=self._final_histograms(partial, image_sizes),
            n_selected_per_group=partial.group_selected[order],
            n_strong_per_group=partial.group_strong[order],
            median_d_strong_per_group=_floats_or_none(medians),
            median_d_all=None if self.d_source is None else median_or_none(partial.d),
            median_d_strong=(
                None if self.d_source is None else median_or_none(partial.d[partial.d_strong])
            ),
        )
        plot = partial.plot
        if plot is not None:
            plot = PlotPart(
                self.plot_grid.dense(plot.all_density),
                self.plot_grid.dense(plot.strong_density),
                plot.all_points.in_order(),
                plot.strong_points.in_order(),
            )
        files = partial.files
        return MergedPositions(
            stats=stats,
            n_without_geometry=n_no_geometry,
            image_sizes=image_sizes,
            group_keys=partial.group_keys[order],
            file_flag_counts=FileFlagCounts(files),
            max_experiment=partial.max_experiment,
            plot=plot,
        )

    def _shells(self, partial: PositionsPartial) -> ResolutionShells | None:
        """:func:`resolution_shells` of every selected row (the d not finite count as
        rows without d, as they do there)."""
        if self.d_source is None:
            return None
        shells = resolution_shells(
            partial.d, partial.d_strong, self.n_shells, d_min=self.d_min, d_max=self.d_max
        )
        return ResolutionShells(
            n_shells=shells.n_shells,
            inv_d2_edges=shells.inv_d2_edges,
            n_all=shells.n_all,
            n_strong=shells.n_strong,
            n_without_d=shells.n_without_d + partial.n_d_not_finite,
            n_outside=shells.n_outside,
            n_strong_outside=shells.n_strong_outside,
        )

    def _final_histograms(self, partial: PositionsPartial, image_sizes) -> list[PanelHistogram]:
        """The detectors' panels from the tasks' counts; panels of no detector (rows
        without an experiment) binned here over their data extents."""
        orphans = partial.orphans
        extra = {p: image_sizes[p] for p in partial.orphan_extents if p not in self.image_sizes}
        binned = {
            h.panel: h
            for h in position_histograms(
                orphans[:, 1], orphans[:, 2], orphans[:, 0].astype(np.int64), extra, self.n_bins
            )
        }
        size = self.n_bins * self.n_bins
        panels = sorted(self.image_sizes)
        # by position among the panels, not by panel number (a table may number a panel
        # 33554432: one grid per panel there is)
        keys, counts = partial.histogram_cells
        grids = np.zeros((len(panels), size), dtype=np.int64)
        grids[np.searchsorted(np.array(panels, dtype=np.int64), keys // size), keys % size] = counts
        for position, number in enumerate(panels):
            width, height = self.image_sizes[number]
            counts = grids[position].reshape(self.n_bins, self.n_bins)
            binned[number] = PanelHistogram(
                panel=int(number),
                image_size=(int(round(width)), int(round(height))),
                x_edges=np.linspace(0.0, float(width), self.n_bins + 1),
                y_edges=np.linspace(0.0, float(height), self.n_bins + 1),
                counts=counts,
                n_outside=partial.outside.get(number, 0),
            )
        return [binned[number] for number in sorted(binned)]

    def empty(self) -> PositionsPartial:
        plot = None
        if self.plot_grid is not None:
            empty_points = Points(0, np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64))
            plot = PlotPart(NO_CELLS, NO_CELLS, empty_points, empty_points)
        return PositionsPartial(
            counts=np.zeros(5, dtype=np.int64),
            d=np.zeros(0),
            d_strong=np.zeros(0, bool),
            n_d_not_finite=0,
            histogram_cells=NO_CELLS,
            outside={},
            orphans=np.zeros((0, 3)),
            orphan_extents={},
            group_keys=np.zeros(0, np.int64),
            group_selected=np.zeros(0, np.int64),
            group_strong=np.zeros(0, np.int64),
            group_median=np.zeros(0),
            pending=None,
            files=np.zeros((0, 3), dtype=np.int64),
            max_experiment=-1,
            plot=plot,
        )


class FileFlagCounts:
    """File index -> (rows with integrated_sum, with integrated_prf), looked up in the
    merged ``(n_files, 3)`` table (no object per file until one is asked for)."""

    def __init__(self, table: np.ndarray):
        table = np.asarray(table, dtype=np.int64).reshape(-1, 3)
        self.table = table[np.argsort(table[:, 0], kind="stable")]

    def get(self, index: int, default: Any = None) -> Any:
        found = int(np.searchsorted(self.table[:, 0], index))
        if found < len(self.table) and self.table[found, 0] == index:
            return tuple(self.table[found, 1:].tolist())
        return default


def _floats_or_none(values: np.ndarray) -> list:
    """``values`` as Python floats, ``None`` for NaN."""
    out = values.tolist()
    for i in np.flatnonzero(np.isnan(values)).tolist():
        out[i] = None
    return out


def _file_positions(chunk: Chunk) -> np.ndarray:
    """Each row's position in ``chunk.files`` (0 for a one-file chunk)."""
    if not chunk.files:
        return np.zeros(chunk.n_rows, dtype=np.int64)
    return np.repeat(np.arange(len(chunk.files), dtype=np.int64), chunk.file_rows)


def _file_flag_counts(chunk: Chunk) -> np.ndarray:
    """``(n_files, 3)``: file index, rows with integrated_sum, with integrated_prf."""
    files = chunk.files or (chunk.file,)
    flags = np.asarray(chunk.columns["flags"], dtype=np.int64)
    position = _file_positions(chunk)
    out = np.empty((len(files), 3), dtype=np.int64)
    out[:, 0] = [file.index for file in files]
    for column, bit in ((1, SUM_BIT), (2, PRF_BIT)):
        out[:, column] = np.bincount(position, weights=(flags >> bit) & 1, minlength=len(files))
    return out
