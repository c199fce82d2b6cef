"""Histogram bar charts."""

from __future__ import annotations

from typing import Sequence

from dials_refl_stats.analysis.distribution import Histogram
from dials_refl_stats.plotting import new_figure, save


def histogram_bars(
    path: str,
    histograms: Sequence[tuple[str, Histogram]],
    *,
    title: str,
    xlabel: str,
    log_y: bool = False,
    format_from: str | None = None,
) -> None:
    """Filled step histogram(s) sharing slots (overlaid, translucent when several).

    Drawn as one ``stairs`` artist per histogram, not one patch per slot.
    """
    figure, axes = new_figure(figsize=(8, 5), constrained_layout=True)
    several = len(histograms) > 1
    for label, hist in histograms:
        axes.stairs(
            hist.counts,
            hist.edges,
            fill=True,
            alpha=0.5 if several else 0.9,
            label=label,
        )
    axes.set_xlabel(xlabel)
    axes.set_ylabel("Number of reflections")
    if log_y:
        axes.set_yscale("log")
    axes.set_title(title)
    outside = [
        f"{label}: {h.below_range} below, {h.above_range} above range"
        for label, h in histograms
        if h.below_range or h.above_range
    ]
    if outside:
        axes.text(
            0.99,
            0.98,
            "\n".join(outside),
            transform=axes.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    if several:
        axes.legend(fontsize=8, loc="center right")
    save(figure, path, format_from or path)
