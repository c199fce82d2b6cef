"""Matplotlib figures, Agg backend (never a window); one module per program's plots.

Figures are made with :func:`new_figure` (a plain ``matplotlib.figure.Figure`` on an Agg
canvas): no pyplot, so no global figure state, no GUI backend and a faster start.
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dials_refl_stats.output import plot_format


def new_figure(nrows: int = 1, ncols: int = 1, **subplots_kw):
    """``(figure, axes)`` like ``pyplot.subplots``, but without pyplot."""
    figsize = subplots_kw.pop("figsize", None)
    layout = subplots_kw.pop("constrained_layout", True)
    figure = Figure(figsize=figsize, constrained_layout=layout)
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, **subplots_kw)
    return figure, axes


def save(figure, path: str, format_from: str) -> None:
    """Save ``figure``; the format comes from ``format_from``'s suffix."""
    figure.savefig(path, format=plot_format(format_from), dpi=150)
