"""Section of dials.strong_reflection_positions: panel heatmaps, resolution shells."""

from __future__ import annotations

import math

import numpy as np

from dials_refl_stats.report.figures import (
    Figure,
    bars,
    empty_note,
    heatmap,
    layout,
    lines,
    scale_buttons,
)
from dials_refl_stats.report.model import (
    Budget,
    Content,
    Table,
    bounded_rows,
    fmt,
    group_column,
    group_labels,
    records,
)
from dials_refl_stats.report.programs.groups import group_rows, per_group_figure
from dials_refl_stats.report.sections import builder
from dials_refl_stats.report.thin import (
    as_float,
    block_sum,
    block_sum_2d,
    coarse_edges,
    factor,
    plain,
    stride,
)


def _panel_trace(panel: dict, cells: int, beam: list, budget: Budget) -> tuple[list[dict], str]:
    counts = panel["counts"]
    ny, nx = panel["n_bins_y"], panel["n_bins_x"]
    k = factor(int(math.ceil(math.sqrt(nx * ny))), int(math.sqrt(max(cells, 1))))
    z = block_sum_2d(counts, k, k)
    xe, ye = coarse_edges(panel["x_edges"], k), coarse_edges(panel["y_edges"], k)
    z_list = [[None if v == 0 else int(v) for v in row] for row in z.tolist()]
    name = f"panel {panel['panel']}"
    traces = [heatmap(plain((xe[:-1] + xe[1:]) / 2), plain((ye[:-1] + ye[1:]) / 2), z_list, name)]
    if beam:
        traces.append(
            lines(
                [b[0] for b in beam],
                [b[1] for b in beam],
                f"beam centre ({name})",
                7,
                mode="markers",
                marker={"symbol": "x", "size": 10, "color": "#D55E00"},
                hovertemplate="beam centre<br>x %{x} px<br>y %{y} px<extra></extra>",
            )
        )
    return traces, (f"{k}×{k} bins merged per cell" if k > 1 else "")


def _beam_centres(results: dict, budget: Budget) -> dict[int, list]:
    """Distinct beam centres (pixels, 0.1 px) per panel, at most ``budget.list_items``."""
    out: dict[int, set] = {}
    for b in results.get("beam_centres") or []:
        if b.get("px") is not None:
            out.setdefault(b.get("panel", 0), set()).add(tuple(round(v, 1) for v in b["px"]))
    return {p: sorted(v)[: budget.list_items] for p, v in out.items()}


def _panel_axes(panel: dict) -> dict:
    """Axes spanning the panel's histogram extent, equal scales, y (slow axis) down."""
    x0, x1 = panel["x_edges"][0], panel["x_edges"][-1]
    y0, y1 = panel["y_edges"][0], panel["y_edges"][-1]
    return {
        "xaxis": {"range": [x0, x1], "constrain": "domain"},
        "yaxis": {
            "range": [y1, y0],
            "scaleanchor": "x",
            "constrain": "domain",
        },
        "plot_bgcolor": "#ffffff",
    }


def _position_figures(results: dict, budget: Budget) -> list[Figure]:
    histograms = results["position_histograms"]
    panels = histograms["panels"]
    if not panels:
        return []
    beams = _beam_centres(results, budget)
    title = "Strong reflection positions ({})"
    xtitle, ytitle = "x (pixels, fast axis)", "y (pixels, slow axis)"
    figures = []
    if len(panels) <= 4:
        cells = budget.heatmap_cells // len(panels)
        for panel in panels:
            traces, note = _panel_trace(panel, cells, beams.get(panel["panel"], []), budget)
            extra = _panel_axes(panel)
            if not panel["n_in_range"]:
                extra["annotations"] = [empty_note("no strong reflections on this panel")]
            label = f"panel {panel['panel']}: {panel['n_in_range']} strong"
            fig = layout(title.format(label), xtitle, ytitle, **extra)
            figures.append(Figure(traces, fig, note, height=600))
        return figures
    return [_panel_menu_figure(panels, beams, budget), _panel_counts_figure(panels, budget)]


def _panel_menu_figure(panels: list[dict], beams: dict, budget: Budget) -> Figure:
    """One heatmap with a menu choosing the panel; at most ``4 * budget.overlay`` panels
    (those with the most strong reflections), so the menu's size stays bounded."""
    limit = 4 * budget.overlay
    order = np.argsort([-p["n_in_range"] for p in panels], kind="stable")[:limit]
    chosen = [panels[i] for i in sorted(order.tolist())]
    cells = budget.heatmap_cells // len(chosen)
    traces, owner, notes = [], [], set()
    for j, panel in enumerate(chosen):
        panel_traces, note = _panel_trace(panel, cells, beams.get(panel["panel"], []), budget)
        notes.add(note)
        for trace in panel_traces:
            trace["visible"] = j == 0
            traces.append(trace)
            owner.append(j)
    buttons = [
        {
            "label": f"panel {p['panel']} ({p['n_in_range']})",
            "method": "update",
            "args": [
                {"visible": [o == j for o in owner]},
                {
                    "xaxis.range": _panel_axes(p)["xaxis"]["range"],
                    "yaxis.range": _panel_axes(p)["yaxis"]["range"],
                },
            ],
        }
        for j, p in enumerate(chosen)
    ]
    if len(chosen) < len(panels):
        notes.add(f"{len(chosen)} of {len(panels)} panels (most strong reflections) in the menu")
    menu = [{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.03, "yanchor": "bottom"}]
    fig = layout(
        f"Strong reflection positions ({len(panels)} panels: choose one)",
        "x (pixels, fast axis)",
        "y (pixels, slow axis)",
        updatemenus=menu,
        **_panel_axes(chosen[0]),
    )
    return Figure(traces, fig, "; ".join(sorted(n for n in notes if n)), height=600)


def _panel_counts_figure(panels: list[dict], budget: Budget) -> Figure:
    keep = stride(len(panels), budget.points)
    x = [panels[i]["panel"] for i in keep.tolist()]
    y = [panels[i]["n_in_range"] for i in keep.tolist()]
    note = (
        f"every {keep[1] - keep[0]}-th of {len(panels)} panels" if len(keep) < len(panels) else ""
    )
    fig = layout("Strong reflections per panel", "panel", "strong reflections")
    return Figure([bars(x, y, "strong", 0)], fig, note)


def _shell_figure(shells: dict, budget: Budget) -> Figure:
    k = factor(len(shells["n_all"]), budget.points // 10)
    n_all, n_strong = block_sum(shells["n_all"], k), block_sum(shells["n_strong"], k)
    d_edges = as_float(shells.get("d_edges") or [None] * (len(shells["n_all"]) + 1))
    d_edges = coarse_edges(d_edges, k)
    labels = [
        f"{a:.2f}–{b:.2f} Å" if math.isfinite(a) and math.isfinite(b) else f"shell {i + 1}"
        for i, (a, b) in enumerate(zip(d_edges[:-1].tolist(), d_edges[1:].tolist()))
    ]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(n_all > 0, n_strong / np.where(n_all > 0, n_all, 1), np.nan)
    traces = [
        bars(labels, plain(n_all), "selected", 0, opacity=0.6),
        bars(labels, plain(n_strong), "strong", 3),
        lines(labels, plain(fraction), "strong fraction", 2, yaxis="y2"),
    ]
    fig = layout(
        f"Resolution shells ({shells.get('binning', '')}), low to high resolution",
        "shell (d range)",
        "reflections",
        barmode="group",
        yaxis2={
            "title": {"text": "strong fraction", "standoff": 12},
            "automargin": True,
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
        },
        updatemenus=scale_buttons(),
    )
    return Figure(traces, fig, f"{k} adjacent shells merged per bar" if k > 1 else "")


@builder("dials.strong_reflection_positions")
def strong_reflection_positions(document: dict, budget: Budget) -> Content:
    results = document["results"]
    criteria = results.get("criteria") or {}
    fraction = results.get("strong_fraction")
    content = Content()
    content.summary = [
        ("selected", fmt(results.get("n_selected"))),
        ("strong", fmt(results.get("n_strong"))),
        ("strong fraction", "–" if fraction is None else f"{100 * fraction:.3g} %"),
        ("criteria", fmt(criteria.get("label"))),
        ("intensity column", fmt(criteria.get("intensity_column"))),
        ("median d, all (Å)", fmt(results.get("median_d_all"))),
        ("median d, strong (Å)", fmt(results.get("median_d_strong"))),
        ("d source", fmt(results.get("d_source"))),
        ("rows without geometry", fmt(results.get("n_without_geometry"))),
    ]
    if not results.get("n_selected"):
        content.notes.append("No reflections selected: nothing to locate.")
    for key in ("rule",):
        if criteria.get(key):
            content.notes.append(f"strong: {criteria[key]}")
    for key in ("orientation", "plot_view", "d_rule", "unassigned_rows"):
        if results.get(key):
            content.notes.append(f"{key.replace('_', ' ')}: {results[key]}")
    for f in records((document.get("selection") or {}).get("per_file"), budget.list_items):
        if f.get("fallback"):
            content.notes.append(f"{f.get('path')}: {f['fallback']}")
    content.figures = _position_figures(results, budget)
    shells = results.get("resolution_shells")
    if shells and not sum(shells["n_all"]):
        content.notes.append("Resolution shells: no selected reflection has a resolution.")
    elif shells:
        content.figures.append(_shell_figure(shells, budget))
        d = shells.get("d_edges") or [None] * (len(shells["n_all"]) + 1)
        rows = [
            [fmt(d[i]), fmt(d[i + 1]), fmt(a), fmt(s), fmt(f)]
            for i, (a, s, f) in enumerate(
                zip(shells["n_all"], shells["n_strong"], shells["strong_fraction"])
            )
        ]
        rows, note = bounded_rows(rows, budget.table_rows, "shells")
        extra = (
            f"{shells.get('n_without_d', 0)} without d, "
            f"{shells.get('n_outside', 0)} outside the shells"
        )
        content.tables.append(
            Table(
                "Resolution shells",
                ["d max (Å)", "d min (Å)", "selected", "strong", "strong fraction"],
                rows,
                "; ".join(n for n in (note, extra) if n),
                collapsed=False,
            )
        )
    else:
        content.notes.append("No resolution shells (no geometry and no d column).")
    groups = results.get("per_experiment")
    labels = group_labels(groups)
    if len(labels) > budget.overlay:
        content.figures.append(
            per_group_figure(
                "Strong fraction per experiment",
                labels,
                group_column(groups, "strong_fraction"),
                "strong fraction",
                budget,
            )
        )
    names = ("n_selected", "n_strong", "strong_fraction", "median_d_strong")
    rows, note = group_rows(groups, labels, names, budget)
    content.tables.append(
        Table(
            "Per experiment",
            ["experiment", "selected", "strong", "strong fraction", "median d strong (Å)"],
            rows,
            note,
        )
    )
    return content
