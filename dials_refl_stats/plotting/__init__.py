"""Matplotlib figures, Agg backend (never a window); one module per program's plots.

Figures are made with :func:`new_figure` (a plain ``matplotlib.figure.Figure`` on an Agg
canvas): no pyplot, so no global figure state, no GUI backend and a faster start.
Importing this package does not import matplotlib (about 0.3 s): :func:`new_figure` does,
and :func:`preload_in_background` can start that import early, in a thread.
"""

from __future__ import annotations

import threading

from dials_refl_stats.output import plot_format

_preload: threading.Thread | None = None


def _import_matplotlib() -> None:
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.colors  # noqa: F401
    import matplotlib.figure  # noqa: F401


def preload_in_background() -> None:
    """Start importing matplotlib in a daemon thread (so it overlaps reading the data)."""
    global _preload
    if _preload is None:
        _preload = threading.Thread(target=_import_matplotlib, daemon=True)
        _preload.start()


def new_figure(nrows: int = 1, ncols: int = 1, **subplots_kw):
    """``(figure, axes)`` like ``pyplot.subplots``, but without pyplot.

    ``nrows=0`` gives ``(figure, None)``: a figure without axes, for custom grids.
    """
    if _preload is not None:
        _preload.join()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figsize = subplots_kw.pop("figsize", None)
    layout = subplots_kw.pop("constrained_layout", True)
    figure = Figure(figsize=figsize, constrained_layout=layout)
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, **subplots_kw) if nrows else None
    return figure, axes


def save(figure, path: str, format_from: str) -> None:
    """Save ``figure``; the format comes from ``format_from``'s suffix."""
    figure.savefig(path, format=plot_format(format_from), dpi=150)
