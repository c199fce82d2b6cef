"""Shared look of every figure: titles, labels, colours, marker sizes, density images.

Rules that keep a plot readable whatever the data:

* titles name files by basename and wrap (:func:`display_title`);
* series are labelled briefly, ``expt 0`` rather than a UUID (:func:`short_label`);
* markers grow when points are few and shrink when many (:func:`point_style`); above
  :data:`DENSITY_THRESHOLD` points a 2D histogram with a log colour scale replaces them
  (:func:`density_counts`), so 10^6 rows draw as fast as 10^3;
* an empty selection says so in words (:func:`write_no_data`).
"""

from __future__ import annotations

import functools
import os
import re
import textwrap
from typing import Sequence

import numpy as np

from dials_refl_stats.analysis.grouping import density_counts  # noqa: F401 (plotting's name)

#: More points than this are drawn as a density image, not as markers.
DENSITY_THRESHOLD = 20_000

#: More series or experiments than this share one colour (no per-series legend).
MAX_COLOURS = 8

NO_DATA = "no reflections selected"

_FILE_SUFFIXES = (".refl", ".expt", ".pickle", ".json", ".h5", ".nxs", ".cbf", ".phil")
_TOKEN = re.compile(r"[^\s,;()\[\]]+")
_IDENTIFIER = re.compile(r"\s*\((?=[^)]*[0-9a-fA-F]{8})[0-9A-Za-z_-]{16,}\)")


def _basename(match: re.Match) -> str:
    token = match.group(0)
    if "/" not in token:
        return token
    if token.startswith(("/", "./", "../", "~")) or token.lower().endswith(_FILE_SUFFIXES):
        return os.path.basename(token.rstrip("/")) or token
    return token


def display_title(title: str, width: int = 90, max_lines: int = 3) -> str:
    """``title`` with file paths cut to their basenames, wrapped at ``width`` characters
    and cut to ``max_lines`` lines (ending in "...")."""
    text = _TOKEN.sub(_basename, title)
    lines = textwrap.wrap(text, width=width, break_on_hyphens=False) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, width - 4)].rstrip() + " ..."
    return "\n".join(lines)


def short_label(label: str) -> str:
    """A legend label without experiment identifiers: ``experiment 0 (f2db...)`` ->
    ``expt 0``; ``file 1: experiment 2 (...)`` -> ``file 1: expt 2``."""
    label = _IDENTIFIER.sub("", label)
    return re.sub(r"\bexperiment\b", "expt", label).strip()


def colour_of(index: int, n: int) -> str:
    """Colour of series ``index`` of ``n``: the tab10 cycle, one colour when many."""
    return f"C{index % 10}" if n <= MAX_COLOURS else "C0"


def colours_by_label(labels: Sequence[str]) -> dict[str, str]:
    """One colour per distinct label, in first-seen order (the same in every panel)."""
    distinct = list(dict.fromkeys(labels))
    return {label: colour_of(i, len(distinct)) for i, label in enumerate(distinct)}


def point_style(n_points: int) -> dict:
    """Scatter keywords for ``n_points`` markers: area ~ 1/sqrt(n) between 1 and 25
    points^2 (21 points are clearly visible), fainter when many overlap."""
    n = max(int(n_points), 1)
    size = float(np.clip(120.0 / np.sqrt(n), 1.0, 25.0))
    alpha = float(np.clip(np.sqrt(2000.0 / n), 0.3, 1.0))
    return {"s": size, "alpha": alpha, "linewidths": 0}


def log_norm(vmax: float):
    """A log colour scale from 1 to ``vmax`` counts."""
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=1.0, vmax=max(float(vmax), 2.0))


@functools.lru_cache(maxsize=None)
def light_cmap(name: str = "Greys", low: float = 0.2, high: float = 0.75):
    """Part of colour map ``name``: dense cells stay light enough for markers on top."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps[name](np.linspace(low, high, 128)), name=f"{name}_light")


def masked(counts: np.ndarray) -> np.ma.MaskedArray:
    """``counts`` with empty cells masked (drawn transparent)."""
    return np.ma.masked_less(counts, 1)


def write_no_data(axes, text: str = NO_DATA, xlim: tuple[float, float] = (0.0, 1.0)) -> None:
    """Say that there is nothing to draw, on sensible limits, without y ticks."""
    axes.text(
        0.5,
        0.5,
        text,
        transform=axes.transAxes,
        ha="center",
        va="center",
        fontsize=12,
        color="0.3",
    )
    axes.set_xlim(*xlim)
    axes.set_ylim(0.0, 1.0)
    axes.set_yticks([])


def integer_axis(axis) -> None:
    """Integer ticks only (image numbers, frames, panels)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def no_minor_ticks(axis) -> None:
    """No minor ticks on a log ``axis`` and plain labels (``100``, ``1e+05``): dozens of
    minor ticks and mathtext labels cost a fifth of a second each to lay out."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(_plain_number))


def _plain_number(value: float, _position=None) -> str:
    return f"{value:g}"
