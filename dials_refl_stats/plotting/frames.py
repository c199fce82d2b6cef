"""Intensity against frame: intensities (log) with medians, reflections per frame, I/sigma.

Readable whatever the data: sparse scans (a few reflections per frame) are drawn in wider
frame bins, said on the plot (the JSON keeps the per-frame table); lines break at empty
bins; more than :data:`~dials_refl_stats.plotting.style.DENSITY_THRESHOLD` points become a
density image; image axes have integer ticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dials_refl_stats.analysis.intensity_per_frame import FrameTable, bin_medians
from dials_refl_stats.plotting import new_figure, save
from dials_refl_stats.plotting import style as _style
from dials_refl_stats.plotting.style import (
    DENSITY_THRESHOLD,
    MAX_COLOURS,
    colours_by_label,
    density_counts,
    display_title,
    integer_axis,
    light_cmap,
    log_norm,
    masked,
    no_minor_ticks,
    short_label,
    write_no_data,
)

#: Above this many series all points share one colour (no legend).
MAX_COLOURED_SERIES = MAX_COLOURS
#: Median, count and I/sigma lines for at most this many series (the first ones).
MAX_LINED_SERIES = MAX_COLOURS

#: Fewer reflections than this per frame bin on average: the plot uses wider bins ...
SPARSE_PER_BIN = 10
#: ... of about this many reflections each ...
TARGET_PER_BIN = 25
#: ... and never more than this many bins across the plot.
MAX_DISPLAY_BINS = 400
#: Markers on the median and I/sigma lines only up to this many bins.
MARKERS_UP_TO = 80


@dataclass(frozen=True)
class SeriesPoints:
    """One series to draw: its points (x position, intensity) and per-frame table."""

    label: str
    x: np.ndarray
    intensity: np.ndarray
    table: FrameTable
    image_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class Crowd:
    """The series after the first few, summarised: they are drawn as points in one
    colour and never as lines, so the plot needs only their number, frame span, scan
    image ranges, bin counts (:func:`display_factor`) and points (in series order).
    10^5 stills files are 10^5 series: no object per series."""

    n_series: int
    x: np.ndarray
    intensity: np.ndarray
    frame_first: int | None  # smallest first frame of a non-empty table
    frame_last: int | None  # largest last frame of a non-empty table
    image_ranges: frozenset
    max_n_bins: int
    max_frames: int  # largest n_bins * bin_width
    count_total: int  # rows of the tables with any row ...
    bins_counted: int  # ... and those tables' bins


@dataclass(frozen=True)
class Panel:
    """One intensity choice: a column of the figure."""

    title: str
    series: Sequence[SeriesPoints]
    #: series after ``series`` (only when there are more than :data:`MAX_COLOURED_SERIES`
    #: in all and ``series`` holds the first :data:`MAX_LINED_SERIES`)
    crowd: Crowd | None = None
    #: Points of the whole panel and how many are <= 0, when the series' points are a
    #: sample of them (``sampled``); ``None``: the series' points are all of them.
    n_points: int | None = None
    n_hidden: int | None = None
    sampled: bool = False


def point_style(n_points: int) -> dict:
    """Marker size and alpha for ``n_points`` (see :func:`plotting.style.point_style`)."""
    return _style.point_style(n_points)


def display_factor(series: Sequence[SeriesPoints], crowd: Crowd | None = None) -> int:
    """How many table bins make one plotted bin: 1 unless the series are sparse (fewer
    than :data:`SPARSE_PER_BIN` reflections per bin on average) or have more than
    :data:`MAX_DISPLAY_BINS` bins; at least 5 plotted bins remain."""
    tables = [s.table for s in series if s.table.n_bins]
    crowd_bins = crowd.max_n_bins if crowd is not None else 0
    if not tables and not crowd_bins:
        return 1
    n_bins = max([t.n_bins for t in tables] + [crowd_bins])
    counted = [t for t in tables if t.count.sum()]
    rows = sum(float(t.count.sum()) for t in counted)
    bins = sum(t.n_bins for t in counted)
    if crowd is not None:
        rows, bins = rows + crowd.count_total, bins + crowd.bins_counted
    per_bin = rows / bins if bins else 0.0
    factor = 1
    if 0 < per_bin < SPARSE_PER_BIN:
        factor = int(np.ceil(TARGET_PER_BIN / per_bin))
    factor = max(factor, int(np.ceil(n_bins / MAX_DISPLAY_BINS)))
    return int(max(1, min(factor, n_bins // 5)))


@dataclass(frozen=True)
class Binned:
    """A series' statistics in plotted bins (NaN where a bin is empty)."""

    first: np.ndarray
    last: np.ndarray
    count: np.ndarray
    median: np.ndarray
    mean_i_over_sigma: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.first + self.last)

    @property
    def edges(self) -> np.ndarray:
        return np.append(self.first, self.last[-1] + 1) - 0.5 if self.first.size else self.first


def binned(series: SeriesPoints, factor: int) -> Binned:
    """The series' table in bins of ``factor`` table bins. Counts and mean I/sigma merge
    from the table; medians of the wider bins come from the series' points (their frame
    is ``floor(x + 0.5)``, see ``analysis.intensity_per_frame.plot_positions``)."""
    t = series.table
    empty = t.count == 0
    if factor == 1 or t.n_bins == 0:
        return Binned(
            t.frame_first,
            t.frame_last,
            t.count,
            np.where(empty, np.nan, t.median),
            np.where(t.n_with_sigma > 0, t.mean_i_over_sigma, np.nan),
        )
    group = np.arange(t.n_bins) // factor
    n_new = int(group[-1]) + 1
    count = np.bincount(group, weights=t.count, minlength=n_new).astype(np.int64)
    n_sigma = np.bincount(group, weights=t.n_with_sigma, minlength=n_new)
    ios = np.where(t.n_with_sigma > 0, t.mean_i_over_sigma, 0.0) * t.n_with_sigma
    ios_sum = np.bincount(group, weights=ios, minlength=n_new)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ios = np.where(n_sigma > 0, ios_sum / n_sigma, np.nan)
    width = t.bin_width * factor
    origin = int(t.frame_first[0])
    first = origin + width * np.arange(n_new, dtype=np.int64)
    frames = np.floor(np.asarray(series.x, dtype=np.float64) + 0.5).astype(np.int64)
    median = wide_bin_medians(frames, series.intensity, origin, width, n_new)
    median[count == 0] = np.nan
    return Binned(first, first + width - 1, count, median, mean_ios)


def wide_bin_medians(
    frames: np.ndarray, intensity: np.ndarray, origin: int, width: int, n_bins: int
) -> np.ndarray:
    """Median intensity of the points in each of ``n_bins`` bins of ``width`` frames
    from ``origin`` (NaN when empty): the medians of ``per_frame_table(frames,
    intensity, ..., bin_width=width, frame_range=(origin, ...))``'s first ``n_bins``
    bins, without its other statistics (points outside the bins are left out)."""
    bins = (np.asarray(frames, dtype=np.int64) - origin) // width
    inside = (bins >= 0) & (bins < n_bins)
    if not inside.all():
        bins, intensity = bins[inside], np.asarray(intensity)[inside]
    count = np.bincount(bins, minlength=n_bins)
    return bin_medians(bins, np.asarray(intensity, dtype=np.float64), count)


def _x_limits(panel: Panel, binned_series: Sequence[Binned]) -> tuple[float, float] | None:
    """Frames spanned by the tables (binned for the series drawn as lines, the first
    ones) and image ranges (at least 4 wide, so a one-image scan gets a readable
    integer axis)."""
    lows, highs = [], []
    for k, s in enumerate(panel.series):
        b = binned_series[k] if k < len(binned_series) else s.table
        first, last = (b.first, b.last) if isinstance(b, Binned) else (b.frame_first, b.frame_last)
        if first.size:
            lows.append(float(first[0]) - 0.5)
            highs.append(float(last[-1]) + 0.5)
        if s.image_range:
            lows.append(s.image_range[0] - 0.5)
            highs.append(s.image_range[1] + 0.5)
    crowd = panel.crowd
    if crowd is not None:
        if crowd.frame_first is not None:
            lows.append(float(crowd.frame_first) - 0.5)
            highs.append(float(crowd.frame_last) + 0.5)
        for first, last in crowd.image_ranges:
            lows.append(first - 0.5)
            highs.append(last + 0.5)
    if not lows:
        return None
    low, high = min(lows), max(highs)
    pad = max(0.02 * (high - low), 0.5)
    low, high = low - pad, high + pad
    if high - low < 4:
        centre = 0.5 * (low + high)
        low, high = centre - 2, centre + 2
    return low, high


def _draw_points(
    top, series: Sequence[SeriesPoints], colours: dict[str, str], coloured: bool, crowd=None
):
    """Scatter (or density image) of the positive intensities; returns how many <= 0.
    Series in one colour are one scatter of all their points, in series order."""
    xs = [s.x for s in series] + ([crowd.x] if crowd is not None else [])
    intensities = [s.intensity for s in series] + ([crowd.intensity] if crowd else [])
    positive = [i > 0 for i in intensities]
    hidden = int(sum((~p).sum() for p in positive))
    n_drawn = int(sum(p.sum() for p in positive))
    if n_drawn == 0:
        return hidden, None
    if n_drawn > DENSITY_THRESHOLD or not coloured:
        x = np.concatenate([x[p] for x, p in zip(xs, positive)])
        kept = np.concatenate([i[p] for i, p in zip(intensities, positive)])
    if not coloured and n_drawn <= DENSITY_THRESHOLD:
        top.scatter(x, kept, color="C0", rasterized=True, zorder=1, **point_style(n_drawn))
        return hidden, None
    if n_drawn > DENSITY_THRESHOLD:
        log_i = np.log10(kept)
        x_range = (float(np.floor(x.min())) - 0.5, float(np.ceil(x.max())) + 0.5)
        y_range = (float(log_i.min()), float(log_i.max()) + 1e-9)
        nx = int(min(400, max(20, x_range[1] - x_range[0])))
        counts = density_counts(x, log_i, x_range, y_range, (nx, 150))
        mesh = top.pcolormesh(
            np.linspace(*x_range, nx + 1),
            10.0 ** np.linspace(*y_range, 151),
            masked(counts),
            norm=log_norm(counts.max()),
            cmap=light_cmap(),
            rasterized=True,
            zorder=1,
        )
        return hidden, mesh
    style = point_style(n_drawn)
    for s, p in zip(series, positive):
        if p.any():
            top.scatter(
                s.x[p], s.intensity[p], color=colours[s.label], rasterized=True, zorder=1, **style
            )
    return hidden, None


def _draw_panel(figure, column_axes, panel: Panel, colours: dict[str, str], xlabel: str) -> None:
    top, middle, bottom = column_axes
    series, crowd = list(panel.series), panel.crowd
    n_series = len(series) + (crowd.n_series if crowd is not None else 0)
    coloured = n_series <= MAX_COLOURED_SERIES
    several = n_series > 1
    n_points = sum(int(s.intensity.size) for s in series)
    n_points += int(crowd.intensity.size) if crowd is not None else 0
    n_drawn = n_points
    if panel.n_points is not None:
        n_points = panel.n_points
    factor = display_factor(series, crowd)
    lined = series[:MAX_LINED_SERIES]  # lines for a few series; points for all
    binned_series = [binned(s, factor) for s in lined]
    # y given: nothing is above these axes, and matplotlib's automatic placement of the
    # title lays out every tick label once more to find that out
    top.set_title(display_title(panel.title, width=PANEL_TITLE_WIDTH), fontsize=10, y=1.0)
    limits = _x_limits(panel, binned_series)
    for ax in (top, middle, bottom):
        integer_axis(ax.xaxis)
    bottom.set_xlabel(xlabel)
    top.set_ylabel("Intensity (counts, log scale)")
    if n_points == 0:
        for ax, text in ((top, "no reflections selected"), (middle, ""), (bottom, "")):
            write_no_data(ax, text, xlim=limits or (0.0, 1.0))
        return

    hidden, mesh = _draw_points(top, series, colours, coloured, crowd)
    if panel.n_hidden is not None:
        hidden = panel.n_hidden
    for k, (s, b) in enumerate(zip(lined, binned_series)):
        colour = colours[s.label] if coloured else "C0"
        label = short_label(s.label) if coloured and several else None
        median_label = f"median: {label}" if label else "median per frame bin"
        if not coloured:  # many series: one legend entry for the few drawn as lines
            median_label = f"{median_label} (first {len(lined)} of {n_series} series)"
            median_label = median_label if k == 0 else None
        markers = {"marker": "o", "ms": 2.5} if b.count.size <= MARKERS_UP_TO else {}
        median = np.where(b.median > 0, b.median, np.nan)
        if np.isfinite(median).any():
            top.plot(
                b.centres,
                median,
                "-",
                color=colour if several else "k",
                lw=1.2,
                zorder=3,
                label=median_label,
                **markers,
            )
        if b.count.size:
            middle.stairs(b.count, b.edges, color=colour, lw=1, label=label)
        bottom.plot(b.centres, b.mean_i_over_sigma, "-", color=colour, lw=1, label=label, **markers)

    ranges = {s.image_range for s in series if s.image_range}
    ranges |= crowd.image_ranges if crowd is not None else set()
    for first, last in sorted(ranges):
        for edge in (first - 0.5, last + 0.5):
            for ax in (top, middle, bottom):
                ax.axvline(edge, color="0.5", lw=0.8, ls="--", zorder=0)
    if ranges:
        top.plot([], [], color="0.5", lw=0.8, ls="--", label="scan image range")
    if np.isfinite(top.dataLim.y0) and top.dataLim.y0 > 0:
        top.set_yscale("log")
        no_minor_ticks(top.yaxis)
    if limits:
        top.set_xlim(*limits)

    notes = [
        f"{hidden} of {n_points} intensities <= 0 not shown (log axis)"
        if hidden
        else f"all {n_points} intensities > 0 shown"
    ]
    width = series[0].table.bin_width * factor
    if factor > 1:
        n_frames = max(
            [s.table.n_bins * s.table.bin_width for s in series]
            + [crowd.max_frames if crowd is not None else 0]
        )
        why = "sparse: " if n_points < SPARSE_PER_BIN * n_frames else ""
        notes.append(
            f"plotted in bins of {width} frames ({why}{n_points} reflections, "
            f"{n_frames} frames); the JSON has every frame"
        )
    if panel.sampled:
        wide = ", and the medians of the plotted bins" if factor > 1 else ""
        notes.append(f"points{wide}: a uniform sample of {n_drawn} of {n_points}")
    if mesh is not None:
        drawn = "the sample's points" if panel.sampled else f"{n_points - hidden} points"
        notes.append(f"{drawn} drawn as a density (log colour)")
    if not coloured:
        notes.append(
            f"{n_series} series, one colour; lines for the first {len(lined)}, points for all"
        )
    top.text(
        0.01,
        0.99,
        "\n".join(notes),
        transform=top.transAxes,
        ha="left",
        va="top",
        fontsize=8,
        zorder=5,
        bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none"},
    )
    if mesh is not None:
        colour_axes = top.inset_axes((1.01, 0.1, 0.02, 0.8))
        figure.colorbar(mesh, cax=colour_axes, label="points per cell")
        no_minor_ticks(colour_axes.yaxis)
    if top.get_legend_handles_labels()[0]:
        top.legend(fontsize=7, loc="lower right", framealpha=0.7)
    unit = "frame" if width == 1 else f"{width} frames"
    middle.set_ylabel(f"Reflections\nper {unit}")
    middle.set_ylim(bottom=0)
    bottom.axhline(0, color="0.7", lw=0.5)
    bottom.set_ylabel("Mean I/sigma")


PANEL_TITLE_WIDTH = 70


def _margins(n_columns: int, title: str, panels: Sequence[Panel]) -> dict:
    """Gridspec margins in figure fractions for a 7 x 8.5 inch column (inches fixed:
    0.9 left, 0.9 between columns and on the right for a colour bar, room above for
    the wrapped titles)."""
    width, height = 7.0 * n_columns, 8.5
    title_lines = title.count("\n") + 1
    panel_lines = max(
        (display_title(p.title, width=PANEL_TITLE_WIDTH).count("\n") + 1 for p in panels),
        default=1,
    )
    top_inches = 0.25 + 0.22 * title_lines + 0.2 * panel_lines
    axes_width = (width - 1.8 - 1.8 * (n_columns - 1)) / n_columns
    return {
        "left": 0.9 / width,
        "right": 1 - 0.9 / width,
        "top": 1 - top_inches / height,
        "bottom": 0.6 / height,
        "wspace": 1.8 / axes_width,
        "hspace": 0.1,
    }


def intensity_per_frame_figure(
    path: str,
    panels: Sequence[Panel],
    *,
    title: str,
    xlabel: str,
    format_from: str | None = None,
):
    """Per intensity choice (a column): intensities against frame (log y, rasterised
    points or a density) with the median per frame bin; reflections per frame bin;
    mean I/sigma per frame bin. Returns the figure.

    Intensities <= 0 cannot be drawn on a log axis: their number is written on the plot.
    Colours follow the series labels, the same in every column.
    """
    n_columns = max(1, len(panels))
    title = display_title(title, width=40 + 60 * n_columns)
    figure, axes = new_figure(
        3,
        n_columns,
        figsize=(7 * n_columns, 8.5),
        sharex="col",
        squeeze=False,
        gridspec_kw={"height_ratios": [2.2, 0.8, 1], **_margins(n_columns, title, panels)},
        constrained_layout=False,  # fixed margins: constrained layout doubles the time
    )
    colours = colours_by_label([s.label for p in panels for s in p.series])
    for column, panel in enumerate(panels):
        _draw_panel(figure, axes[:, column], panel, colours, xlabel)
    if not panels:
        for ax in axes[:, 0]:
            write_no_data(ax)
    figure.suptitle(title, fontsize=11)
    save(figure, path, format_from or path)
    return figure
