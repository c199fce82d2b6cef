"""dials.intensity_per_frame's figure: its results as the panels, series and summarised
crowd that :mod:`.frames` draws."""

from __future__ import annotations

import numpy as np

from dials_refl_stats.analysis.intensity_frames import IMAGE_NUMBER as IMAGE_NUMBER_CODE
from dials_refl_stats.analysis.intensity_frames import IntensityFrames
from dials_refl_stats.plotting.frames import (
    MAX_COLOURED_SERIES,
    MAX_LINED_SERIES,
    Crowd,
    Panel,
    SeriesPoints,
    intensity_per_frame_figure,
)
from dials_refl_stats.results.intensity_per_frame import (
    INTENSITIES,
    Computed,
    IntensityResult,
    series_table,
)


def plot(
    path: str, computed: Computed, names: str, frame_column: str, xlabel: str, format_from: str
) -> None:
    """Each intensity's points and per-frame lines against the frame (``names``: the
    inputs, for the title; the format from ``format_from``'s suffix)."""
    series = computed.series
    bin_width = computed.frames.bin_width
    n_series = len(series)
    # past a few series the plot draws lines for the first ones only: the others are
    # summarised (no object per series)
    shown = n_series if n_series <= MAX_COLOURED_SERIES else MAX_LINED_SERIES
    panels = []
    for r in computed.by_choice:
        f = r.frames
        points = np.searchsorted(f.sample_series, np.arange(n_series + 1))
        order = np.argsort(f.sample_series, kind="stable")
        x, intensity = f.sample_x[order], f.sample_intensity[order]
        panels.append(
            Panel(
                title=f"{INTENSITIES[r.choice][0]} against {xlabel.lower()} (z of {frame_column})",
                series=[
                    SeriesPoints(
                        series.label(k),
                        x[points[k] : points[k + 1]],
                        intensity[points[k] : points[k + 1]],
                        series_table(f, r.bounds, k, bin_width),
                        series.image_range(k),
                    )
                    for k in range(shown)
                ],
                crowd=crowd(r, computed.frames, shown, (x, intensity), int(points[shown])),
                n_points=r.overall.n,
                n_hidden=r.overall.n_non_positive,
                sampled=not f.sample_complete,
            )
        )
    intensity_per_frame_figure(
        path,
        panels,
        title=f"Intensity per frame: {names}",
        xlabel=xlabel,
        format_from=format_from,
    )


def crowd(result: IntensityResult, frames: IntensityFrames, shown: int, points, first_point):
    """The series from ``shown`` on, summarised for the plot (``None``: there are none);
    ``points`` (x, intensity) in series order, theirs from ``first_point``."""
    n_series = frames.n_series - shown
    if n_series <= 0:
        return None
    n_bins = np.diff(result.bounds)[shown:]
    bins = slice(int(result.bounds[shown]), None)
    first, last = result.frames.bins["frame_first"][bins], result.frames.bins["frame_last"][bins]
    counted = result.frames.summary["n"][shown:] > 0
    scan = frames.numbering[shown:] == IMAGE_NUMBER_CODE
    image_first, image_last = frames.image_first[shown:][scan], frames.image_last[shown:][scan]
    return Crowd(
        n_series=n_series,
        x=points[0][first_point:],
        intensity=points[1][first_point:],
        frame_first=int(first.min()) if first.size else None,
        frame_last=int(last.max()) if last.size else None,
        image_ranges=frozenset(zip(image_first.tolist(), image_last.tolist())),
        max_n_bins=int(n_bins.max()),
        max_frames=int(n_bins.max()) * frames.bin_width,
        count_total=int(result.frames.summary["n"][shown:].sum()),
        bins_counted=int(n_bins[counted].sum()),
    )
