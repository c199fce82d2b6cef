"""Detector plots: where the strong reflections are, and the strong fraction vs resolution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dials_refl_stats.plotting import new_figure, save

#: Notes printed on the position plot so the orientation is never a guess.
PIXEL_NOTE = (
    "Image orientation as in the DIALS image viewer: origin top-left, "
    "x = fast axis to the right, y = slow axis down (y axis inverted)"
)
LAB_NOTE = (
    "Lab frame seen from the sample looking along the beam: "
    "+x to the right, +y up (panel outlines from the experiment's detector)"
)


@dataclass
class ScatterView:
    """What the position plot shows: 2D points, outlines and beam centres.

    ``kind`` is ``"pixel"`` (panel pixels, y inverted) or ``"lab"`` (lab x, y in mm).
    """

    kind: str
    all_xy: np.ndarray
    strong_xy: np.ndarray
    outlines: Sequence[np.ndarray] = field(default_factory=list)
    beam_centres: np.ndarray | None = None
    xlabel: str = "x (pixels)"
    ylabel: str = "y (pixels)"
    note: str = ""


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


def pixel_view(
    xy: np.ndarray,
    strong: np.ndarray,
    image_sizes: dict[int, tuple[float, float]],
    beam_centres_px: np.ndarray | None = None,
) -> ScatterView:
    """Panel pixels (all panels overlaid in their own pixels), y inverted."""
    note = PIXEL_NOTE + ("; panels overlaid in their own pixels" if len(image_sizes) > 1 else "")
    return ScatterView(
        kind="pixel",
        all_xy=xy,
        strong_xy=xy[strong],
        outlines=[rectangle(w, h) for w, h in image_sizes.values()],
        beam_centres=beam_centres_px,
        xlabel="x (pixels, fast axis)",
        ylabel="y (pixels, slow axis)",
        note=note,
    )


def lab_view(
    lab: np.ndarray,
    strong: np.ndarray,
    outlines: Sequence[np.ndarray],
    beam_centres_lab: np.ndarray | None = None,
) -> ScatterView:
    """The whole detector in the lab frame (x, y in mm), rows without geometry left out."""
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
    )


def positions_view(
    xy_px: np.ndarray,
    strong: np.ndarray,
    image_sizes: dict[int, tuple[float, float]],
    beam_centres: Sequence[dict],
    *,
    lab: np.ndarray | None = None,
    lab_outlines: Sequence[np.ndarray] | None = None,
) -> ScatterView:
    """:func:`lab_view` when ``lab_outlines`` are given (a multi-panel detector), else
    :func:`pixel_view`; ``beam_centres`` as ``geometry.beam_centres`` describes them."""
    if lab_outlines is not None:
        centres = np.array([b["lab"] for b in beam_centres]) if beam_centres else None
        return lab_view(lab, strong, lab_outlines, centres)
    pixels = [b["px"] for b in beam_centres if b["px"] is not None]
    return pixel_view(xy_px, strong, image_sizes, np.array(pixels) if pixels else None)


def shell_view(shells, d_source: str | None) -> ShellView | None:
    """The :class:`ShellView` of ``analysis.strong_positions.ResolutionShells`` (or None)."""
    if shells is None:
        return None
    return ShellView(shells.inv_d2_edges, shells.n_all, shells.n_strong, d_source)


def draw_positions(axes, view: ScatterView, strong_label: str) -> None:
    """The seed's scatter: equal aspect, outlines, beam centre, orientation stated."""
    for outline in view.outlines:
        axes.plot(outline[:, 0], outline[:, 1], color="0.45", linewidth=0.6, zorder=1)
    if len(view.all_xy):
        axes.scatter(
            view.all_xy[:, 0],
            view.all_xy[:, 1],
            s=1.5,
            color="0.75",
            linewidths=0,
            label=f"all selected ({len(view.all_xy)})",
            zorder=2,
            rasterized=True,
        )
    if len(view.strong_xy):
        axes.scatter(
            view.strong_xy[:, 0],
            view.strong_xy[:, 1],
            s=6,
            color="tab:red",
            linewidths=0,
            label=f"strong: {strong_label} ({len(view.strong_xy)})",
            zorder=3,
            rasterized=len(view.strong_xy) > 5000,
        )
    if view.beam_centres is not None and len(view.beam_centres):
        axes.scatter(
            view.beam_centres[:, 0],
            view.beam_centres[:, 1],
            marker="+",
            s=120,
            color="tab:blue",
            linewidths=1.5,
            label="beam centre",
            zorder=4,
        )
    axes.set_aspect("equal", adjustable="datalim")
    if view.kind == "pixel":
        axes.invert_yaxis()
    axes.set_xlabel(view.xlabel)
    axes.set_ylabel(view.ylabel)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="upper right")
    axes.text(
        0.0,
        -0.12,
        view.note,
        transform=axes.transAxes,
        fontsize=7,
        va="top",
        ha="left",
        wrap=True,
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
    axes.set_xlabel(r"1/d$^2$ ($\AA^{-2}$); shells equal in 1/d$^2$")
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
    secondary.set_xlabel(r"d ($\AA$)" + (f", from {shells.d_source}" if shells.d_source else ""))


def strong_positions_figure(
    path: str,
    view: ScatterView,
    shells: ShellView | None,
    *,
    title: str,
    strong_label: str,
    format_from: str | None = None,
) -> None:
    """Position scatter (left) and strong fraction vs resolution (right), one file."""
    figure, (left, right) = new_figure(
        1,
        2,
        figsize=(14, 7),
        gridspec_kw={"width_ratios": [1.4, 1]},
        constrained_layout=True,
    )
    draw_positions(left, view, strong_label)
    left.set_title("Positions on the detector", fontsize=10)
    draw_shells(right, shells)
    figure.suptitle(title, fontsize=11)
    save(figure, path, format_from or path)
