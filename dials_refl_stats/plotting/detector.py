"""Detector plots: where the strong reflections are, and the strong fraction vs resolution.

Views (:class:`ScatterView`) say what to draw; :func:`strong_positions_figure` draws it:

* one panel, or the lab frame of a multi-panel detector with experiments: one axes;
* a multi-panel detector in panel pixels (no experiments): small multiples, one labelled
  axes per panel, each over that panel's extent;
* colours by experiment (``expt 0``, ...), each beam centre in its experiment's colour;
* more than :data:`~dials_refl_stats.plotting.style.DENSITY_THRESHOLD` points: a density
  image (log colour) instead of markers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dials_refl_stats.plotting import new_figure, save
from dials_refl_stats.plotting.style import (
    DENSITY_THRESHOLD,
    MAX_COLOURS,
    colour_of,
    density_counts,
    display_title,
    light_cmap,
    log_norm,
    masked,
    no_minor_ticks,
    point_style,
    short_label,
    write_no_data,
)

#: Notes printed on the position plot so the orientation is never a guess.
PIXEL_NOTE = (
    "Image orientation as in the DIALS image viewer: origin top-left, "
    "x = fast axis to the right, y = slow axis down (y axis inverted)"
)
LAB_NOTE = (
    "Lab frame seen from the sample looking along the beam: "
    "+x to the right, +y up (panel outlines from the experiment's detector)"
)
EXTENT_FROM_DATA = "extent from data (no experiments): largest x and y of each panel"
EXTENT_FROM_DETECTOR = "extent from the experiments' detector"

#: Density cells along the longer side of a panel (or of the lab-frame view).
DENSITY_BINS = 200


@dataclass
class ScatterView:
    """What the position plot shows: 2D points, outlines and beam centres.

    ``kind`` is ``"pixel"`` (panel pixels, y inverted) or ``"lab"`` (lab x, y in mm).
    Optional per-point ``*_panel`` and ``*_experiment`` arrays (row-aligned with the
    points) give small multiples per panel and colours per experiment; ``panel_sizes``
    maps panel -> (width, height) in pixels.
    """

    kind: str
    all_xy: np.ndarray
    strong_xy: np.ndarray
    outlines: Sequence[np.ndarray] = field(default_factory=list)
    beam_centres: np.ndarray | None = None
    xlabel: str = "x (pixels)"
    ylabel: str = "y (pixels)"
    note: str = ""
    all_panel: np.ndarray | None = None
    strong_panel: np.ndarray | None = None
    all_experiment: np.ndarray | None = None
    strong_experiment: np.ndarray | None = None
    experiment_labels: Sequence[str] = ()
    beam_experiments: np.ndarray | None = None
    beam_panels: np.ndarray | None = None
    panel_sizes: dict = field(default_factory=dict)
    extent_note: str = ""
    #: Densities binned elsewhere (``(ny, nx)`` over :func:`density_grid` of the outlines)
    #: with the numbers of points behind them, for points that were not all kept.
    all_density: np.ndarray | None = None
    strong_density: np.ndarray | None = None
    n_all: int | None = None
    n_strong: int | None = None

    @property
    def n_all_points(self) -> int:
        return len(self.all_xy) if self.n_all is None else self.n_all

    @property
    def n_strong_points(self) -> int:
        return len(self.strong_xy) if self.n_strong is None else self.n_strong

    @property
    def per_panel(self) -> bool:
        """Small multiples: pixels of several panels, with each point's panel known."""
        return self.kind == "pixel" and len(self.panel_sizes) > 1 and self.all_panel is not None


@dataclass
class ShellView:
    """Strong fraction per resolution shell, for the second panel."""

    inv_d2_edges: np.ndarray | None
    n_all: np.ndarray
    n_strong: np.ndarray
    d_source: str | None


_TINY = 1e-12


def _d_from_inv_d2(s):
    return 1.0 / np.sqrt(np.maximum(np.asarray(s, dtype=np.float64), _TINY))


def _inv_d2_from_d(d):
    return 1.0 / np.square(np.maximum(np.asarray(d, dtype=np.float64), _TINY))


def rectangle(width: float, height: float) -> np.ndarray:
    """A closed ``[0, width] x [0, height]`` outline."""
    return np.array([[0, 0], [width, 0], [width, height], [0, height], [0, 0]], dtype=float)


def _optional(values, rows) -> np.ndarray | None:
    return None if values is None else np.asarray(values)[rows]


def _labels(experiment: np.ndarray | None, labels: Sequence[str] | None) -> list[str]:
    """Short labels per experiment index: given ones shortened, else ``expt k``."""
    if labels:
        return [short_label(label) for label in labels]
    if experiment is None or not np.size(experiment):
        return []
    return [f"expt {k}" for k in range(int(np.max(experiment)) + 1)]


def pixel_view(
    xy: np.ndarray,
    strong: np.ndarray,
    image_sizes: dict[int, tuple[float, float]],
    beam_centres_px: np.ndarray | None = None,
    *,
    panel: np.ndarray | None = None,
    experiment: np.ndarray | None = None,
    experiment_labels: Sequence[str] | None = None,
    beam_experiments: Sequence[int] | None = None,
    beam_panels: Sequence[int] | None = None,
    extent_from_data: bool = False,
) -> ScatterView:
    """Panel pixels, y inverted: one axes per panel when ``panel`` (each point's panel)
    is given and there are several panels, else all panels overlaid in their own pixels.

    ``experiment`` (each point's experiment index, -1 none) colours the points;
    ``beam_experiments``/``beam_panels`` tie each beam centre to its experiment and panel;
    ``extent_from_data`` says that ``image_sizes`` were measured from the reflections.
    """
    strong = np.asarray(strong, dtype=bool)
    overlaid = len(image_sizes) > 1 and panel is None
    note = PIXEL_NOTE + ("; panels overlaid in their own pixels" if overlaid else "")
    return ScatterView(
        kind="pixel",
        all_xy=xy,
        strong_xy=xy[strong],
        outlines=[rectangle(w, h) for w, h in image_sizes.values()],
        beam_centres=beam_centres_px,
        xlabel="x (pixels, fast axis)",
        ylabel="y (pixels, slow axis)",
        note=note,
        all_panel=None if panel is None else np.asarray(panel),
        strong_panel=_optional(panel, strong),
        all_experiment=None if experiment is None else np.asarray(experiment),
        strong_experiment=_optional(experiment, strong),
        experiment_labels=_labels(experiment, experiment_labels),
        beam_experiments=None if beam_experiments is None else np.asarray(beam_experiments),
        beam_panels=None if beam_panels is None else np.asarray(beam_panels),
        panel_sizes=dict(image_sizes),
        extent_note=EXTENT_FROM_DATA if extent_from_data else EXTENT_FROM_DETECTOR,
    )


def lab_view(
    lab: np.ndarray,
    strong: np.ndarray,
    outlines: Sequence[np.ndarray],
    beam_centres_lab: np.ndarray | None = None,
    *,
    experiment: np.ndarray | None = None,
    experiment_labels: Sequence[str] | None = None,
    beam_experiments: Sequence[int] | None = None,
) -> ScatterView:
    """The whole detector in the lab frame (x, y in mm), rows without geometry left out."""
    strong = np.asarray(strong, dtype=bool)
    has = np.isfinite(lab[:, 0])
    return ScatterView(
        kind="lab",
        all_xy=lab[has, :2],
        strong_xy=lab[has & strong, :2],
        outlines=[np.asarray(o)[:, :2] for o in outlines],
        beam_centres=None if beam_centres_lab is None else beam_centres_lab[:, :2],
        xlabel="lab x (mm)",
        ylabel="lab y (mm)",
        note=LAB_NOTE,
        all_experiment=_optional(experiment, has),
        strong_experiment=_optional(experiment, has & strong),
        experiment_labels=_labels(experiment, experiment_labels),
        beam_experiments=None if beam_experiments is None else np.asarray(beam_experiments),
        extent_note=EXTENT_FROM_DETECTOR,
    )


def positions_view(
    xy_px: np.ndarray,
    strong: np.ndarray,
    image_sizes: dict[int, tuple[float, float]],
    beam_centres: Sequence[dict],
    *,
    lab: np.ndarray | None = None,
    lab_outlines: Sequence[np.ndarray] | None = None,
    panel: np.ndarray | None = None,
    experiment: np.ndarray | None = None,
    experiment_labels: Sequence[str] | None = None,
    extent_from_data: bool | None = None,
) -> ScatterView:
    """:func:`lab_view` when ``lab_outlines`` are given (a multi-panel detector), else
    :func:`pixel_view`; ``beam_centres`` as ``geometry.beam_centres`` describes them.

    Optional, row-aligned with ``xy_px``: ``panel`` (small multiples per panel) and
    ``experiment`` (index into the experiments, -1 none: colours); ``experiment_labels``
    name the experiments. ``extent_from_data`` defaults to "no beam centres" (no
    experiments, so panel sizes were measured from the reflections).
    """
    beam_experiments = [int(b.get("experiment", i)) for i, b in enumerate(beam_centres)]
    if lab_outlines is not None:
        centres = np.array([b["lab"] for b in beam_centres]) if beam_centres else None
        return lab_view(
            lab,
            strong,
            lab_outlines,
            centres,
            experiment=experiment,
            experiment_labels=experiment_labels,
            beam_experiments=beam_experiments if beam_centres else None,
        )
    on_panel = [i for i, b in enumerate(beam_centres) if b.get("px") is not None]
    pixels = np.array([beam_centres[i]["px"] for i in on_panel]) if on_panel else None
    if extent_from_data is None:
        extent_from_data = not beam_centres
    return pixel_view(
        xy_px,
        strong,
        image_sizes,
        pixels,
        panel=panel,
        experiment=experiment,
        experiment_labels=experiment_labels,
        beam_experiments=[beam_experiments[i] for i in on_panel] if on_panel else None,
        beam_panels=[int(beam_centres[i].get("panel") or 0) for i in on_panel]
        if on_panel
        else None,
        extent_from_data=extent_from_data,
    )


def shell_view(shells, d_source: str | None) -> ShellView | None:
    """The :class:`ShellView` of ``analysis.resolution_shells.ResolutionShells`` (or None)."""
    if shells is None:
        return None
    return ShellView(shells.inv_d2_edges, shells.n_all, shells.n_strong, d_source)


# --- drawing -------------------------------------------------------------------------


def _experiment_colours(view: ScatterView) -> int:
    """How many experiments get their own colour (0: one colour for all)."""
    n = len(view.experiment_labels)
    return n if 1 < n <= MAX_COLOURS and view.strong_experiment is not None else 0


def _bounds(view: ScatterView, xy: np.ndarray) -> tuple[float, float, float, float]:
    """``x0, x1, y0, y1`` covering the outlines (or, without them, the points)."""
    parts = [o for o in view.outlines if len(o)] or ([xy] if len(xy) else [])
    if not parts:
        return 0.0, 1.0, 0.0, 1.0
    stacked = np.concatenate(parts)
    finite = stacked[np.isfinite(stacked).all(axis=1)]
    if not len(finite):
        return 0.0, 1.0, 0.0, 1.0
    x0, y0 = finite.min(axis=0)
    x1, y1 = finite.max(axis=0)
    return float(x0), float(max(x1, x0 + 1)), float(y0), float(max(y1, y0 + 1))


def density_bins(bounds: tuple[float, float, float, float]) -> tuple[int, int]:
    """Density cells ``(nx, ny)`` over ``bounds``: :data:`DENSITY_BINS` along the longer
    side."""
    x0, x1, y0, y1 = bounds
    long = max(x1 - x0, y1 - y0)
    nx = max(8, int(round(DENSITY_BINS * (x1 - x0) / long)))
    ny = max(8, int(round(DENSITY_BINS * (y1 - y0) / long)))
    return nx, ny


def density_grid(view: ScatterView) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
    """The bounds and cells of the density images of ``view``, from its outlines alone
    (so they can be binned before the points are known)."""
    bounds = _bounds(view, np.zeros((0, 2)))
    return bounds, density_bins(bounds)


def _density(axes, xy, bounds, cmap, vmax: float | None = None, alpha: float = 1.0, counts=None):
    """A log-colour 2D histogram image of ``xy`` (or of ``counts`` binned elsewhere)
    over ``bounds``; returns the image."""
    x0, x1, y0, y1 = bounds
    if counts is None:
        counts = density_counts(xy[:, 0], xy[:, 1], (x0, x1), (y0, y1), density_bins(bounds))
    return axes.imshow(
        masked(counts),
        origin="lower",
        extent=(x0, x1, y0, y1),
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        norm=log_norm(vmax if vmax is not None else counts.max()),
        alpha=alpha,
        zorder=2,
    )


def _draw_points(axes, view: ScatterView, all_xy, strong_xy, strong_exp, strong_label, bounds):
    """All selected (grey) and strong (red, or by experiment) points or densities."""
    images = []
    n_all = len(all_xy) if view.all_density is None else view.n_all_points
    n_strong = len(strong_xy) if view.strong_density is None else view.n_strong_points
    if n_all:
        if n_all > DENSITY_THRESHOLD:
            images.append(_density(axes, all_xy, bounds, light_cmap(), counts=view.all_density))
            axes.plot([], [], "s", color="0.6", label=f"all selected ({n_all}, density)")
        else:
            axes.scatter(
                all_xy[:, 0],
                all_xy[:, 1],
                color="0.72",
                label=f"all selected ({len(all_xy)})",
                zorder=2,
                rasterized=True,
                **{**point_style(len(all_xy)), "alpha": 1.0},
            )
    if not n_strong:
        return images
    if n_strong > DENSITY_THRESHOLD:
        cmap = light_cmap("Reds", 0.4, 1.0)
        images.append(
            _density(axes, strong_xy, bounds, cmap, alpha=0.9, counts=view.strong_density)
        )
        axes.plot([], [], "s", color="tab:red", label=f"strong: {strong_label} (density)")
        return images
    style = point_style(len(strong_xy))
    style["s"] = max(style["s"] * 2.0, 4.0)
    n_colours = _experiment_colours(view)
    if n_colours:
        for k in range(n_colours):
            mine = strong_exp == k
            if mine.any():
                axes.scatter(
                    strong_xy[mine, 0],
                    strong_xy[mine, 1],
                    color=colour_of(k, n_colours),
                    label=f"strong {view.experiment_labels[k]} ({int(mine.sum())})",
                    zorder=3,
                    rasterized=True,
                    **style,
                )
        rest = ~((strong_exp >= 0) & (strong_exp < n_colours))
        if rest.any():
            axes.scatter(
                strong_xy[rest, 0],
                strong_xy[rest, 1],
                color="k",
                label=f"strong, no experiment ({int(rest.sum())})",
                zorder=3,
                rasterized=True,
                **style,
            )
    else:
        axes.scatter(
            strong_xy[:, 0],
            strong_xy[:, 1],
            color="tab:red",
            label=f"strong: {strong_label} ({len(strong_xy)})",
            zorder=3,
            rasterized=True,
            **style,
        )
    return images


def _draw_beams(axes, view: ScatterView, rows=None, legend: bool = True) -> None:
    """Beam centres, each in its experiment's colour (one marker set when many)."""
    centres = view.beam_centres
    if centres is None or not len(centres):
        return
    experiments = view.beam_experiments
    if rows is not None:
        centres = centres[rows]
        experiments = None if experiments is None else experiments[rows]
        if not len(centres):
            return
    n_colours = len(view.experiment_labels)
    if experiments is None or not 1 <= n_colours <= MAX_COLOURS:
        axes.scatter(
            centres[:, 0],
            centres[:, 1],
            marker="+",
            s=120,
            color="tab:blue",
            linewidths=1.5,
            label=(f"beam centres ({len(centres)})" if len(centres) > 1 else "beam centre")
            if legend
            else None,
            zorder=4,
        )
        return
    for k in np.unique(experiments):
        mine = experiments == k
        name = view.experiment_labels[k] if 0 <= k < n_colours else f"expt {k}"
        colour = colour_of(int(k), n_colours) if n_colours > 1 else "tab:blue"
        axes.scatter(
            centres[mine, 0],
            centres[mine, 1],
            marker="+",
            s=120,
            color=colour,
            linewidths=1.5,
            label=f"beam centre {name}" if legend else None,
            zorder=4,
        )


def draw_positions(axes, view: ScatterView, strong_label: str) -> None:
    """All panels in one axes: equal aspect, outlines, beam centres, orientation stated."""
    for outline in view.outlines:
        axes.plot(
            outline[:, 0],
            outline[:, 1],
            color="0.45",
            linewidth=0.6,
            ls=":" if view.extent_note == EXTENT_FROM_DATA else "-",
            zorder=1,
        )
    bounds = _bounds(view, view.all_xy)
    images = _draw_points(
        axes, view, view.all_xy, view.strong_xy, view.strong_experiment, strong_label, bounds
    )
    _draw_beams(axes, view)
    if not view.n_all_points:
        write_no_data(axes, xlim=bounds[:2])
        axes.set_ylim(*bounds[2:])
    else:
        axes.set_xlim(*bounds[:2])
        axes.set_ylim(*bounds[2:])
    axes.set_aspect("equal", adjustable="datalim")
    if view.kind == "pixel":
        axes.invert_yaxis()
    axes.set_xlabel(view.xlabel)
    axes.set_ylabel(view.ylabel)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="upper right", markerscale=2, framealpha=0.8)
    if images:
        colour_axes = axes.inset_axes((1.01, 0.25, 0.015, 0.5))
        axes.figure.colorbar(images[0], cax=colour_axes, label="reflections per cell")
        no_minor_ticks(colour_axes.yaxis)
    note = view.note + (f"; {view.extent_note}" if view.extent_note else "")
    axes.text(
        0.0,
        -0.09,
        display_title(note, width=125),
        transform=axes.transAxes,
        fontsize=7,
        va="top",
    )


def _grid_shape(sizes: dict, n: int) -> tuple[int, int]:
    """Rows and columns of the small multiples: about square overall."""
    widths = np.array([w for w, _ in sizes.values()], dtype=float)
    heights = np.array([h for _, h in sizes.values()], dtype=float)
    aspect = float(np.median(heights / np.maximum(widths, 1)))
    ncols = int(np.clip(np.ceil(np.sqrt(n * aspect)), 1, n))
    return int(np.ceil(n / ncols)), ncols


def _sorted_by_panel(panel: np.ndarray, panels: list[int]):
    """Row order grouping by panel and the slice bounds of each of ``panels``."""
    order = np.argsort(panel, kind="stable")
    ordered = panel[order]
    starts = np.searchsorted(ordered, panels, side="left")
    ends = np.searchsorted(ordered, panels, side="right")
    return order, starts, ends


def draw_panel_grid(cell, view: ScatterView, strong_label: str) -> list:
    """Small multiples in the gridspec ``cell``: one axes per panel, labelled "panel:
    strong/all", over the panel's extent (from the detector, or from the data as the
    note says). Returns the axes."""
    panels = sorted(view.panel_sizes)
    nrows, ncols = _grid_shape(view.panel_sizes, len(panels))
    grid = cell.subgridspec(nrows, ncols, wspace=0.06, hspace=0.06)
    figure = cell.get_gridspec().figure
    axes_grid = np.array(
        [[figure.add_subplot(grid[r, c]) for c in range(ncols)] for r in range(nrows)]
    )
    all_order, all_start, all_end = _sorted_by_panel(view.all_panel, panels)
    strong_panel = view.strong_panel if view.strong_panel is not None else view.all_panel[:0]
    strong_order, strong_start, strong_end = _sorted_by_panel(strong_panel, panels)
    all_xy, strong_xy = view.all_xy[all_order], view.strong_xy[strong_order]
    strong_exp = None if view.strong_experiment is None else view.strong_experiment[strong_order]
    big_all = len(view.all_xy) > DENSITY_THRESHOLD
    big_strong = len(view.strong_xy) > DENSITY_THRESHOLD
    beam_panels = view.beam_panels
    drawn = []
    for index, axes in enumerate(axes_grid.flat):
        if index >= len(panels):
            axes.set_axis_off()
            continue
        number = panels[index]
        width, height = view.panel_sizes[number]
        bounds = (0.0, float(width), 0.0, float(height))
        mine_all = all_xy[all_start[index] : all_end[index]]
        mine_strong = strong_xy[strong_start[index] : strong_end[index]]
        mine_exp = (
            None if strong_exp is None else strong_exp[strong_start[index] : strong_end[index]]
        )
        if big_all and len(mine_all):
            _density(axes, mine_all, bounds, light_cmap())
        elif len(mine_all):
            axes.scatter(
                mine_all[:, 0],
                mine_all[:, 1],
                color="0.72",
                rasterized=True,
                zorder=2,
                **{**point_style(len(view.all_xy)), "alpha": 1.0},
            )
        if big_strong and len(mine_strong):
            _density(axes, mine_strong, bounds, light_cmap("Reds", 0.4, 1.0), alpha=0.9)
        elif len(mine_strong):
            n_colours = _experiment_colours(view)
            colours = (
                np.array([colour_of(int(k), n_colours) if k >= 0 else "k" for k in mine_exp])
                if n_colours
                else "tab:red"
            )
            style = point_style(len(view.strong_xy))
            style["s"] = max(style["s"] * 2.0, 4.0)
            axes.scatter(
                mine_strong[:, 0], mine_strong[:, 1], c=colours, zorder=3, rasterized=True, **style
            )
        if beam_panels is not None:
            _draw_beams(axes, view, rows=np.flatnonzero(beam_panels == number), legend=False)
        axes.set_xlim(0, width)
        axes.set_ylim(height, 0)
        axes.set_aspect("equal", adjustable="box")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.text(
            0.02,
            0.97,
            f"{number}: {len(mine_strong)}/{len(mine_all)}",
            transform=axes.transAxes,
            fontsize=5.5,
            ha="left",
            va="top",
            zorder=5,
            bbox={"facecolor": "white", "alpha": 0.6, "edgecolor": "none", "pad": 0.5},
        )
        drawn.append(axes)
    return drawn


def _grid_legend(figure, view: ScatterView, strong_label: str) -> None:
    """Legend of the small multiples (artists drawn only for the legend)."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="", marker="s", color="0.72", label=f"all selected ({len(view.all_xy)})")
    ]
    n_colours = _experiment_colours(view)
    if n_colours and len(view.strong_xy) <= DENSITY_THRESHOLD:
        for k in range(n_colours):
            n = int((view.strong_experiment == k).sum())
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="o",
                    color=colour_of(k, n_colours),
                    label=f"strong {view.experiment_labels[k]} ({n})",
                )
            )
    else:
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                color="tab:red",
                label=f"strong: {strong_label} ({len(view.strong_xy)})",
            )
        )
    if view.beam_centres is not None and len(view.beam_centres):
        handles.append(Line2D([], [], ls="", marker="+", color="tab:blue", label="beam centre"))
    figure.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.03, 0.935),
        ncols=len(handles),
        fontsize=7,
        frameon=False,
    )


def draw_shells(axes, shells: ShellView | None) -> None:
    """Strong fraction (%) per shell against 1/d^2, with d (Angstrom) on top."""
    axes.set_title("Strong fraction per resolution shell", fontsize=10)
    if shells is None or shells.inv_d2_edges is None:
        axes.text(
            0.5,
            0.5,
            "No resolution available:\ngive the experiments (.expt)\nor a table with a 'd' column"
            if shells is None
            else "No reflections with d",
            transform=axes.transAxes,
            ha="center",
            va="center",
        )
        axes.set_xticks([])
        axes.set_yticks([])
        return
    edges = np.asarray(shells.inv_d2_edges, dtype=np.float64)
    n_all = np.asarray(shells.n_all)
    n_strong = np.asarray(shells.n_strong)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(n_all > 0, 100.0 * n_strong / np.maximum(n_all, 1), 0.0)
    centres = 0.5 * (edges[:-1] + edges[1:])
    widths = np.diff(edges)
    axes.bar(centres, fraction, width=widths * 0.95, color="tab:red", alpha=0.8)
    for x, f, s, a in zip(centres, fraction, n_strong, n_all):
        axes.annotate(
            f"{s}/{a}",
            (x, f),
            textcoords="offset points",
            xytext=(0, 2),
            ha="center",
            va="bottom",
            fontsize=6,
            rotation=90,
        )
    # plain text, not mathtext: its parser costs ~0.15 s to set up in a fresh process
    axes.set_xlabel("1/d² (Å⁻²); shells equal in 1/d²")
    axes.set_ylabel("Strong reflections (% of selected in shell)")
    top = float(fraction.max()) if fraction.size else 0.0
    axes.set_ylim(0, max(top * 1.25, 1.0))
    span = edges[-1] - edges[0]
    axes.set_xlim(max(edges[0] - 0.02 * span, edges[0] / 2, _TINY), edges[-1] + 0.02 * span)
    secondary = axes.secondary_xaxis("top", functions=(_d_from_inv_d2, _inv_d2_from_d))
    low, high = axes.get_xlim()
    ticks = [t for t in axes.get_xticks() if low <= t <= high and t > 0]
    secondary.set_xticks([float(_d_from_inv_d2(t)) for t in ticks])
    secondary.set_xticklabels([f"{float(_d_from_inv_d2(t)):.2f}" for t in ticks])
    secondary.set_xlabel("d (Å)" + (f", from {shells.d_source}" if shells.d_source else ""))


def strong_positions_figure(
    path: str,
    view: ScatterView,
    shells: ShellView | None,
    *,
    title: str,
    strong_label: str,
    format_from: str | None = None,
):
    """Positions (left: one axes, or small multiples per panel) and strong fraction vs
    resolution (right), one file; returns the figure."""
    if view.per_panel:
        # many axes: a fixed layout (constrained layout costs seconds for 60 panels)
        figure, _ = new_figure(0, figsize=(14, 7.5), constrained_layout=False)
        outer = figure.add_gridspec(
            1, 2, width_ratios=[1.4, 1], left=0.03, right=0.97, top=0.88, bottom=0.1, wspace=0.15
        )
        draw_panel_grid(outer[0, 0], view, strong_label)
        _grid_legend(figure, view, strong_label)
        note = view.note + f"; {view.extent_note}; numbers: panel: strong/all selected"
        figure.text(0.03, 0.08, display_title(note, width=110), fontsize=7, va="top")
        figure.text(0.03, 0.95, "Positions on the detector, per panel", fontsize=10)
        shells_axes = figure.add_subplot(outer[0, 1])
        draw_shells(shells_axes, shells)
        figure.suptitle(display_title(title, width=130), fontsize=11)
        save(figure, path, format_from or path)
        return figure
    # a fixed layout: constrained layout doubles the drawing time
    figure, _ = new_figure(0, figsize=(14, 7), constrained_layout=False)
    left = figure.add_axes((0.055, 0.14, 0.49, 0.74))
    right = figure.add_axes((0.655, 0.1, 0.325, 0.7))
    draw_positions(left, view, strong_label)
    left.set_title("Positions on the detector", fontsize=10, y=1.0)  # y: see frames.py
    draw_shells(right, shells)
    figure.suptitle(display_title(title, width=130), fontsize=11)
    save(figure, path, format_from or path)
    return figure
