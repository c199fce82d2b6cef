"""Intensity against frame: scatter (log intensity) with per-frame medians, and I/sigma."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from dials_refl_stats.analysis.intensity_per_frame import FrameTable
from dials_refl_stats.plotting import new_figure, save

#: Above this many series all points share one colour (no legend).
MAX_COLOURED_SERIES = 8


@dataclass(frozen=True)
class SeriesPoints:
    """One series to draw: its points (x position, intensity) and per-frame table."""

    label: str
    x: np.ndarray
    intensity: np.ndarray
    table: FrameTable
    image_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class Panel:
    """One intensity choice: a column of the figure."""

    title: str
    series: Sequence[SeriesPoints]


def point_style(n_points: int) -> dict:
    """Marker size and alpha for ``n_points`` (the seed's s=0.2; fainter when many)."""
    alpha = 1.0 if n_points <= 10_000 else max(0.15, (10_000 / n_points) ** 0.5)
    return {"s": 0.2 if n_points > 2_000 else 2.0, "alpha": alpha, "linewidths": 0}


def intensity_per_frame_figure(
    path: str,
    panels: Sequence[Panel],
    *,
    title: str,
    xlabel: str,
    format_from: str | None = None,
) -> None:
    """Top row: intensity scatter (log y, rasterised) with the median per frame bin;
    bottom row: mean I/sigma per frame bin. One column per intensity choice.

    Intensities <= 0 cannot be drawn on a log axis: their number is written on the plot.
    """
    n_columns = max(1, len(panels))
    figure, axes = new_figure(
        2,
        n_columns,
        figsize=(7 * n_columns, 7),
        sharex="col",
        squeeze=False,
        gridspec_kw={"height_ratios": [2, 1]},
        constrained_layout=True,
    )
    for column, panel in enumerate(panels):
        top, bottom = axes[0, column], axes[1, column]
        coloured = len(panel.series) <= MAX_COLOURED_SERIES
        n_points = sum(int(s.intensity.size) for s in panel.series)
        style = point_style(n_points)
        hidden = 0
        drawn_any = False
        for number, series in enumerate(panel.series):
            colour = f"C{number % 10}" if coloured else "C0"
            positive = series.intensity > 0
            hidden += int((~positive).sum())
            if positive.any():
                drawn_any = True
                top.scatter(
                    series.x[positive],
                    series.intensity[positive],
                    color=colour,
                    rasterized=True,
                    **style,
                )
            table = series.table
            has_median = np.isfinite(table.median) & (table.median > 0)
            label = series.label if coloured and len(panel.series) > 1 else None
            if has_median.any():
                top.plot(
                    table.centres[has_median],
                    table.median[has_median],
                    "-",
                    color="k" if len(panel.series) == 1 else colour,
                    lw=1.2,
                    marker="o",
                    ms=2.5,
                    label=(f"median: {label}" if label else "median per frame bin"),
                )
            has_ios = np.isfinite(table.mean_i_over_sigma)
            bottom.plot(
                table.centres[has_ios],
                table.mean_i_over_sigma[has_ios],
                "-o",
                color=colour,
                lw=1,
                ms=2.5,
                label=label,
            )
        ranges = {s.image_range for s in panel.series if s.image_range}
        for first, last in ranges:
            for edge in (first - 0.5, last + 0.5):
                for ax in (top, bottom):
                    ax.axvline(edge, color="0.5", lw=0.8, ls="--", zorder=0)
        if ranges:
            top.plot([], [], color="0.5", lw=0.8, ls="--", label="scan image range")
        if drawn_any:
            top.set_yscale("log")
        top.set_ylabel("Intensity (counts, log scale)")
        top.set_title(panel.title, fontsize=10)
        note = (
            f"{hidden} of {n_points} intensities <= 0 not shown (log axis)"
            if hidden
            else f"all {n_points} intensities > 0 shown"
        )
        top.text(
            0.01,
            0.99,
            note,
            transform=top.transAxes,
            ha="left",
            va="top",
            fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none"},
        )
        if n_points == 0:
            top.text(
                0.5,
                0.5,
                "no reflections selected",
                transform=top.transAxes,
                ha="center",
                va="center",
            )
        if top.get_legend_handles_labels()[0]:
            top.legend(fontsize=7, loc="lower right", framealpha=0.7)
        bottom.axhline(0, color="0.7", lw=0.5)
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.set_xlabel(xlabel)
        bottom.set_ylabel("Mean I/sigma")
    figure.suptitle(title, fontsize=11)
    save(figure, path, format_from or path)
