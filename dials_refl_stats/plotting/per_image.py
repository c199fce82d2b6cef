"""The dials.per_image_statistics figure: spots, indexing, I/sigma and d_min per image.

Rows of a scan are drawn per experiment (one line each, never joined across experiments);
stills are one series in input order. Binned rows (``output.max_images``) sit at the
centre of their bin, and their heatmap cells cover the bin's images.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np

from dials_refl_stats.analysis.grouping import group_by_pairs, group_by_value
from dials_refl_stats.compact import group_labels
from dials_refl_stats.plotting import new_figure, save
from dials_refl_stats.plotting.style import MAX_COLOURS, colour_of, short_label

STILL = "still"
Z_FLOOR = "z_floor"

#: Line styles of the quantities in a panel when colours tell the experiments apart.
QUANTITY_STYLES = ("-", "--", ":")

NO_EXPERIMENTS_NOTE = "no d_min estimates (give the experiments, .expt)"
NOT_RUN_NOTE = "no d_min estimates (DIALS's per-image analysis did not run)"
NO_ESTIMATE_NOTE = "DIALS gave no d_min estimate"


@dataclass(frozen=True)
class Series:
    """Rows of the per-image table drawn as one line."""

    label: str
    rows: np.ndarray
    colour: str


def _values(series: dict, name: str) -> np.ndarray | None:
    values = series.get(name)
    if values is None:
        return None
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def series_label(experiment: int, numbering: str, unassigned: bool = True) -> str:
    """Legend label of one experiment's rows; rows without one are 0-based frames, of
    ``id`` -1 (``unassigned``) or of files given without experiments."""
    if experiment < 0:
        return ("unassigned (id -1)" if unassigned else "no experiment") + _frames(numbering)
    return short_label(f"experiment {experiment}")


def _frames(numbering: str) -> str:
    return ", frame = floor(z)" if numbering == Z_FLOOR else ""


#: Series key of the stills (experiments are >= -1; rows without one, by file and id:
#: -3 and below).
_STILLS = -2


def split_series(table: dict) -> list[Series]:
    """One series per experiment of scan rows, in table order; all stills are one series.
    Rows without an experiment are one series per file and ``id`` when there are at most
    :data:`MAX_COLOURS` of those, else one series."""
    experiments = np.asarray(table.get("experiment", []), dtype=np.int64)
    numbering = np.asarray(table.get("numbering", []), dtype=object)
    keys = np.where(numbering == STILL, _STILLS, np.maximum(experiments, -1))
    labels = _label_files_and_ids(table, keys)
    groups = sorted(group_by_value(keys)[1], key=lambda rows: rows[0])  # in table order
    ids = table.get("id")
    ids = None if ids is None else np.asarray(ids, dtype=np.int64)
    result = []
    for i, rows in enumerate(groups):
        key = int(keys[rows[0]])
        if key == _STILLS:
            label = "stills"
        elif key in labels:
            label = labels[key] + _frames(numbering[rows[0]])
        else:
            unassigned = ids is None or bool((ids[rows] == -1).all())
            label = series_label(key, numbering[rows[0]], unassigned)
        result.append(Series(label, rows, colour_of(i, len(groups))))
    return result


def _label_files_and_ids(table: dict, keys: np.ndarray) -> dict[int, str]:
    """Give rows without an experiment (``keys`` -1) a key per file and ``id`` (-3, -4,
    ...; in place) when there are 2 to :data:`MAX_COLOURS` of those; their labels."""
    unknown = keys == -1
    if not unknown.any() or table.get("file_index") is None or table.get("id") is None:
        return {}
    file_index = np.asarray(table["file_index"], dtype=np.int64)
    ids = np.asarray(table["id"], dtype=np.int64)
    pairs, grouping = group_by_pairs(file_index[unknown], ids[unknown])
    if not 1 < len(pairs) <= MAX_COLOURS:
        return {}
    keys[unknown] = -3 - grouping.inverse
    n_files = len(np.unique(file_index))
    names = group_labels(pairs[:, 0].tolist(), pairs[:, 1].tolist(), n_files)
    return {-3 - k: short_label(name) for k, name in enumerate(names)}


def bin_positions(table: dict, images_per_bin: int | None) -> tuple[np.ndarray, np.ndarray]:
    """First and last image of every row: the image itself, or a bin's first and last."""
    first = _values(table, "image")
    if not images_per_bin:
        return first, first
    last = _values(table, "image_last")
    expected = first + images_per_bin - 1
    if last is None:
        return first, expected
    return first, np.where(last >= first, last, expected)


def cell_edges(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, list[int | None]]:
    """Heatmap column edges covering ``[first - 0.5, last + 0.5]`` of every row, with an
    empty column (``None``) where images are missing between rows."""
    edges = [first[0] - 0.5]
    columns: list[int | None] = []
    for row, (start, end) in enumerate(zip(first - 0.5, last + 0.5)):
        if start > edges[-1]:
            columns.append(None)
            edges.append(start)
        columns.append(row)
        edges.append(max(end, edges[-1] + 1e-9))
    return np.asarray(edges), columns


def d_min_note(results: dict, inputs: dict | None) -> str:
    """Why the d_min panel is empty: no experiments, no DIALS analysis, or no estimates."""
    table = results["per_image"]
    if "estimated_d_min" in table and results.get("resolution_failed") is not None:
        return NO_ESTIMATE_NOTE
    if inputs is not None:
        given = bool((inputs.get("experiments") or {}).get("n_experiments"))
    else:
        given = any(n != Z_FLOOR for n in table.get("numbering", []))
    return NOT_RUN_NOTE if given else NO_EXPERIMENTS_NOTE


def _write(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


class _Lines:
    """Draws a quantity per series: one colour per quantity for a single series, else
    one colour per series and one line style per quantity."""

    def __init__(self, series: list[Series], x: np.ndarray, step: bool) -> None:
        self.series, self.x, self.step = series, x, step
        self.several = len(series) > 1

    def draw(self, ax, y: np.ndarray, label: str, colour: str, style_index: int = 0, **kw):
        """Draw ``y`` of every series; only the first series' line carries ``label``."""
        marker = kw.pop("marker", "o")
        for index, part in enumerate(self.series):
            if self.several:
                kw.update(color=part.colour, linestyle=QUANTITY_STYLES[style_index])
                line_label = label if index == 0 else "_nolegend_"
            else:
                kw.update(color=colour)
                line_label = label
            x, values = self.x[part.rows], y[part.rows]
            if self.step:
                ax.step(x, values, where="mid", label=line_label, **kw)
            else:
                ax.plot(x, values, marker=marker, markersize=3, label=line_label, **kw)

    def legend(self, ax, quantities: bool = True) -> None:
        """Quantities (line styles) and, if few enough, the series (colours)."""
        from matplotlib.lines import Line2D

        handles, labels = ax.get_legend_handles_labels() if quantities else ([], [])
        title = None
        if self.several:
            handles = [Line2D([], [], color="0.3", linestyle=h.get_linestyle()) for h in handles]
            if len(self.series) <= MAX_COLOURS:
                handles += [Line2D([], [], color=s.colour) for s in self.series]
                labels = [*labels, *(s.label for s in self.series)]
            else:
                title = f"{len(self.series)} experiments (one colour)"
        if handles or title:
            ncol = 2 if len(handles) > 4 else 1
            where, size = ("best", "x-small") if self.several else ("upper right", "small")
            ax.legend(handles, labels, title=title, loc=where, ncol=ncol, fontsize=size)


def _isigma_panel(figure, ax, results: dict, columns: tuple[np.ndarray, np.ndarray]) -> None:
    from matplotlib.colors import LogNorm

    table = results["per_image"]
    n = len(table.get("image", []))
    counts = np.asarray(results["isigma"]["counts"], dtype=np.float64).reshape(n, -1) if n else None
    if not n or counts.sum() == 0:
        _write(ax, "no I/sigma (no intensities selected)")
        ax.set_ylabel("I/sigma")
        return
    counts[counts == 0] = np.nan
    edges, rows = cell_edges(*columns)
    empty = np.full(counts.shape[1], np.nan)
    shown_counts = np.array([empty if row is None else counts[row] for row in rows])
    shown = ax.pcolormesh(
        edges,
        np.arange(counts.shape[1] + 1) - 0.5,
        shown_counts.T,
        norm=LogNorm(),
        cmap="viridis",
    )
    ax.set_yticks(range(counts.shape[1]))
    ax.set_yticklabels(results["isigma"]["labels"], fontsize="x-small")
    figure.colorbar(shown, ax=ax, label="spots", pad=0.01)
    ax.set_ylabel("I/sigma")


def _separate_series(ax, series: list[Series]) -> None:
    """Dashed lines between experiments on a table-row axis, labelled if few."""
    for part in series[1:]:
        ax.axvline(part.rows[0] - 0.5, color="0.3", linestyle="--", linewidth=1)
    if len(series) <= MAX_COLOURS:
        for part in series:
            ax.text(
                part.rows[0] - 0.5,
                1.01,
                part.label.split(" (")[0],  # short: segments may be narrow
                transform=ax.get_xaxis_transform(),
                ha="left",
                va="bottom",
                fontsize="x-small",
            )


def _d_min_panel(ax, lines: _Lines, results: dict, inputs: dict | None) -> None:
    table = results["per_image"]
    d_min = _values(table, "estimated_d_min")
    if d_min is not None and np.any(d_min > 0):
        names = ("estimated_d_min", "d_min_distl_method_1", "d_min_distl_method_2")
        for i, (name, label) in enumerate(zip(names, ("d_min", "distl 1", "distl 2"))):
            values = _values(table, name)
            lines.draw(ax, np.where(values > 0, values, np.nan), label, f"C{i}", i, marker=".")
        ax.invert_yaxis()
        lines.legend(ax)
    else:
        _write(ax, d_min_note(results, inputs))
    ax.set_ylabel("d_min (Å)")


#: The x axis when a series repeats its image numbers.
REPEATED_LABEL = "Table row (files and ids in turn: image numbers repeat)"


def _images_repeat(series: list[Series], first: np.ndarray) -> bool:
    """Whether a series' images do not increase down the table (frames = floor(z) of
    several files or ids: no experiments given), so that only the row tells them apart."""
    return any(np.any(np.diff(first[part.rows]) <= 0) for part in series)


def _image_label(series: list[Series], table: dict, binned: dict | None) -> str:
    numbering = set(table.get("numbering", []))
    label = "Frame = floor(z), 0-based" if numbering == {Z_FLOOR} else "Image"
    if Z_FLOOR in numbering and len(numbering) > 1:
        label += " (frame = floor(z) for unassigned rows)"
    if binned:
        label += f" (bins of {binned['images_per_bin']} images, at their centre)"
    return label


def per_image_figure(path: str, document: dict, title: str, format_from: str):
    """Panels: spots and indexed per image, fraction indexed, I/sigma heatmap, d_min;
    for stills also hit/indexing rates and unit-cell histograms. ``document`` is the JSON
    document or its ``results``. Returns the figure."""
    from matplotlib.ticker import MaxNLocator

    results = document.get("results", document)
    inputs = document.get("inputs")
    table = results["per_image"]
    stills = results.get("stills")
    cells = (stills or {}).get("unit_cells") or {}
    n_cell_rows = 1 if cells.get("n_crystals") else 0
    n_rows = 4 + (1 if stills else 0) + n_cell_rows
    figure, axes = new_figure(n_rows, 1, figsize=(9, 2.3 * n_rows + 1))
    axes = list(np.atleast_1d(axes))
    n = len(table.get("image", []))
    binned = results.get("binned")
    per_bin = binned["images_per_bin"] if binned else None
    series = split_series(table)
    first, last = bin_positions(table, per_bin) if n else (np.zeros(0), np.zeros(0))
    xlabel = _image_label(series, table, binned)
    repeated = _images_repeat(series, first)
    if repeated:  # e.g. floor(z) of stills in files given without experiments
        first = last = np.arange(n, dtype=np.float64)
        xlabel = REPEATED_LABEL
    lines = _Lines(series, (first + last) / 2, step=n > 200)

    ax = axes[0]
    if n:
        lines.draw(ax, _values(table, "n_strong"), "strong", "tab:orange", 0)
        lines.draw(ax, _values(table, "n_indexed"), "indexed", "tab:blue", 1)
        if "n_spots_no_ice" in table:
            lines.draw(ax, _values(table, "n_spots_4A"), "to 4 Å", "tab:green", 2)
        lines.legend(ax)
    ax.set_ylabel(f"Spots per bin ({per_bin} images)" if per_bin else "Spots per image")

    ax = axes[1]
    if n:
        lines.draw(ax, 100 * _values(table, "fraction_indexed"), "indexed", "tab:blue")
        lines.legend(ax, quantities=False)
    ax.set_ylim(-2, 102)
    ax.set_ylabel("Indexed (%)")

    scan_series = [s for s in series if s.label != "stills"]
    by_row = len(series) > 1 and len(scan_series) > 0 and not repeated
    if by_row:
        rows = np.arange(n, dtype=np.float64)
        _isigma_panel(figure, axes[2], results, (rows, rows))
        _separate_series(axes[2], series)
    else:
        _isigma_panel(figure, axes[2], results, (first, last))
    _d_min_panel(axes[3], lines, results, inputs)

    if per_bin and n:
        for ax in (axes[0], axes[1], axes[3]):
            if ax.lines:
                ax.set_xlim(first.min() - 0.5, last.max() + 0.5)  # the bins' images
    next_axis = 4
    if stills:
        _stills_rates_panel(axes[next_axis], stills)
        next_axis += 1
    for index, ax in enumerate(axes[:4]):
        ax.set_xlabel(xlabel)
        if index == 2 and by_row:
            ax.set_xlabel("Table row (experiments in turn, dashed lines between them)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not n:
            _write(ax, "no images")
    if n_cell_rows:
        _cell_panels(figure, axes[next_axis], cells)
    figure.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize="medium")
    save(figure, path, format_from)
    return figure


def _stills_rates_panel(ax, stills: dict) -> None:
    sliding = stills["sliding"]
    x = np.arange(len(sliding["hit_rate"]))
    ax.plot(x, 100 * np.asarray(sliding["hit_rate"]), label="hit rate")
    ax.plot(x, 100 * np.asarray(sliding["indexing_rate"]), label="indexing rate")
    ax.set_ylabel(f"% (window {stills['window']})")
    ax.set_xlabel("Still (input order)")
    ax.set_ylim(-2, 102)
    ax.legend(loc="upper right", fontsize="small")


def _cell_panels(figure, cell_axis, cells: dict) -> None:
    cell_axis.set_axis_off()
    spec = cell_axis.get_subplotspec().subgridspec(1, 6, wspace=0.4)
    for i, name in enumerate(("a", "b", "c", "alpha", "beta", "gamma")):
        sub = figure.add_subplot(spec[0, i])
        hist = cells.get(name)
        if hist:
            sub.stairs(hist["counts"], np.asarray(hist["edges"]), fill=True)
        sub.set_title(name if len(name) == 1 else f"{name} (°)", fontsize="small")
        sub.tick_params(labelsize="x-small")
