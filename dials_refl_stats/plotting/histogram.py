"""Histogram bar charts, drawn over the data's range (the JSON keeps every slot)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dials_refl_stats.analysis.distribution import Histogram
from dials_refl_stats.plotting import new_figure, save
from dials_refl_stats.plotting.style import (
    colour_of,
    display_title,
    no_minor_ticks,
    short_label,
    write_no_data,
)

#: Default share of the counts the x axis must show (the rest is stated on the plot).
VIEW_FRACTION = 0.995

#: Zoom only when the shown range would be at most this share of the slots' range.
ZOOM_WHEN_BELOW = 0.6


def view_range(histograms: Sequence[Histogram], fraction: float) -> tuple[float, float, int] | None:
    """``(low, high, n_hidden)``: the slot edges that hold ``fraction`` of the counts
    (of every histogram), with a margin of about 5%; ``None`` when that is most of the
    slots' range anyway (or nothing was counted). ``n_hidden`` counts in slots beyond."""
    full_low = min(float(h.edges[0]) for h in histograms)
    full_high = max(float(h.edges[-1]) for h in histograms)
    lows, highs = [], []
    for h in histograms:
        counts = np.asarray(h.counts, dtype=np.float64)
        total = counts.sum()
        if total <= 0:
            continue
        cumulative = np.cumsum(counts)
        last = int(np.searchsorted(cumulative, fraction * total))
        first = int(np.searchsorted(cumulative, (1.0 - fraction) * total, side="right"))
        highs.append(float(h.edges[min(last + 1, counts.size)]))
        lows.append(float(h.edges[min(first, counts.size - 1)]))
    if not highs:
        return None
    low, high = min(lows), max(highs)
    span = full_high - full_low
    if low - full_low < 0.1 * (high - full_low):
        low = full_low  # keep the origin when the data start near it
    if high - low > ZOOM_WHEN_BELOW * span:
        return None
    width = min(float(h.slot_width) for h in histograms)
    margin = max(0.05 * (high - low), width)
    if low > full_low:
        low = max(full_low, full_low + np.floor((low - margin - full_low) / width) * width)
    high = min(full_high, full_low + np.ceil((high + margin - full_low) / width) * width)
    hidden = 0
    for h in histograms:
        edges = np.asarray(h.edges)
        outside = (edges[:-1] >= high) | (edges[1:] <= low)
        hidden += int(np.asarray(h.counts)[outside].sum())
    return low, high, hidden


def histogram_bars(
    path: str,
    histograms: Sequence[tuple[str, Histogram]],
    *,
    title: str,
    xlabel: str,
    log_y: bool = False,
    format_from: str | None = None,
    view_fraction: float | None = VIEW_FRACTION,
):
    """Filled step histogram(s) sharing slots (overlaid, translucent when several);
    returns the figure.

    Drawn as one ``stairs`` artist per histogram, not one patch per slot. The x axis
    shows the slots holding ``view_fraction`` of the counts (None: every slot) when
    they are a small part of the range, and says so on the plot.
    """
    title = display_title(title, width=75)
    xlabel = display_title(xlabel, width=80)
    # fixed margins (inches): constrained layout would double the drawing time
    figure, axes = new_figure(
        figsize=(8, 5),
        constrained_layout=False,
        gridspec_kw={
            "left": 0.8 / 8,
            "right": 1 - 0.25 / 8,
            "bottom": (0.35 + 0.2 * (xlabel.count("\n") + 1)) / 5,
            "top": 1 - (0.15 + 0.22 * (title.count("\n") + 1)) / 5,
        },
    )
    several = len(histograms) > 1
    n_counted = sum(int(np.sum(h.counts)) for _, h in histograms)
    for number, (label, hist) in enumerate(histograms):
        axes.stairs(
            hist.counts,
            hist.edges,
            fill=True,
            alpha=0.5 if several else 0.9,
            color=colour_of(number, len(histograms)),
            label=short_label(label),
        )
    axes.set_xlabel(xlabel)
    axes.set_ylabel("Number of reflections")
    axes.set_title(title, fontsize=11, y=1.0)  # y: see frames.py
    notes = []
    if histograms:
        full = (
            min(float(h.edges[0]) for _, h in histograms),
            max(float(h.edges[-1]) for _, h in histograms),
        )
        n_slots = max(int(np.size(h.counts)) for _, h in histograms)
        view = (
            view_range([h for _, h in histograms], view_fraction)
            if view_fraction is not None and n_counted
            else None
        )
        if view is not None:
            low, high, hidden = view
            axes.set_xlim(low, high)
            notes.append(
                f"x axis: {low:g} to {high:g}, holding {100 * view_fraction:g}% of the counts"
                f"{f' ({hidden} in slots beyond, not drawn)' if hidden else ''};"
                f"\nall {n_slots} slots ({full[0]:g} to {full[1]:g}) are in the JSON"
            )
            width = min(float(h.slot_width) for _, h in histograms)
            if (high - low) / width <= 5:
                notes.append(
                    f"the data fill only {round((high - low) / width)} slots: a smaller "
                    "data_max gives finer slots"
                )
        else:
            axes.set_xlim(*full)
    if n_counted == 0:
        write_no_data(axes, xlim=axes.get_xlim())
    elif log_y:
        axes.set_yscale("log")
        no_minor_ticks(axes.yaxis)
        axes.set_ylim(bottom=0.5)
    notes.extend(
        f"{short_label(label)}: {h.below_range} below, {h.above_range} above range"
        for label, h in histograms
        if h.below_range or h.above_range
    )
    if notes:
        axes.text(
            0.99,
            0.98,
            "\n".join(notes),
            transform=axes.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )
    if several:
        axes.legend(fontsize=8, loc="center right")
    save(figure, path, format_from or path)
    return figure
