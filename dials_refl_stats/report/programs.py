"""Section builders of the programs of this package, registered by program name."""

from __future__ import annotations

import math

import numpy as np

from dials_refl_stats.report.figures import (
    Figure,
    bars,
    colour,
    empty_note,
    heatmap,
    layout,
    lines,
    ptext,
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
    label_of,
    records,
)
from dials_refl_stats.report.sections import builder
from dials_refl_stats.report.thin import (
    as_float,
    block_first,
    block_last,
    block_median,
    block_sum,
    block_sum_2d,
    block_weighted_mean,
    coarse_edges,
    factor,
    plain,
    stride,
)

# --------------------------------------------------------------------------- spot sizes


def _histogram(histogram: dict, budget: Budget) -> tuple[np.ndarray, np.ndarray, str]:
    """``(edges, counts, note)`` with slots merged to at most ``budget.points`` bars."""
    k = factor(len(histogram["counts"]), budget.points)
    note = f"{k} adjacent slots merged per bar" if k > 1 else ""
    return coarse_edges(histogram["edges"], k), block_sum(histogram["counts"], k), note


def _summary_rows(label: str, s: dict) -> list[str]:
    cells = [s.get(k) for k in ("n", "mean", "median", "std", "min", "max")]
    return [label] + [fmt(c) for c in cells]


def _spot_figure(results: dict, budget: Budget) -> Figure:
    overall = results["overall"]["histogram"]
    edges, counts, note = _histogram(overall, budget)
    centres = (edges[:-1] + edges[1:]) / 2
    ranges = np.stack([edges[:-1], edges[1:]], axis=1)
    traces = [
        bars(
            plain(centres),
            plain(counts),
            "all selected",
            width=plain(np.diff(edges)),
            customdata=[plain(r) for r in ranges],
            hovertemplate="size %{customdata[0]}–%{customdata[1]} px<br>"
            "count %{y}<extra>all</extra>",
            opacity=0.75,
        )
    ]
    histograms = results.get("per_experiment_histograms")
    if histograms is None:  # schema 1: one histogram inside each per-experiment entry
        histograms = [
            dict(g["histogram"], label=label_of(g)) for g in records(results.get("per_experiment"))
        ]
    if 2 <= len(histograms) <= budget.overlay:
        for i, histogram in enumerate(histograms):
            g_edges, g_counts, _ = _histogram(histogram, budget)
            g_centres = (g_edges[:-1] + g_edges[1:]) / 2
            traces.append(
                lines(
                    plain(g_centres),
                    plain(g_counts),
                    histogram.get("label", f"group {i}"),
                    i + 1,
                    line={"shape": "hvh", "color": colour(i + 1), "width": 1.5},
                    mode="lines",
                )
            )
    nonzero = np.flatnonzero(counts)
    xrange = None
    if nonzero.size:
        last = min(nonzero[-1] + 3, counts.size)
        xrange = [float(edges[0]), float(edges[last])]
    source = ", ".join(results.get("size_source") or [])
    extra = {} if nonzero.size else {"annotations": [empty_note("no reflections selected")]}
    fig = layout(
        f"Spot size ({source})",
        "spot size (signal pixels)",
        "reflections",
        bargap=0.02,
        xaxis={"range": xrange} if xrange else {},
        updatemenus=scale_buttons(),
        **extra,
    )
    outside = [
        f"{overall[k]} {k.replace('_', ' ')}"
        for k in ("below_range", "above_range", "not_finite")
        if overall.get(k)
    ]
    notes = [n for n in (note, "not shown: " + ", ".join(outside) if outside else "") if n]
    return Figure(traces, fig, "; ".join(notes))


def _per_group_figure(title, labels, values, ytitle, budget: Budget) -> Figure:
    """One point per group (experiment), every k-th group when there are many."""
    keep = stride(len(labels), budget.points)
    trace = lines(
        keep.tolist(),
        plain(as_float(values)[keep]),
        ytitle,
        0,
        mode="markers",
        text=[ptext(labels[i]) for i in keep.tolist()],
        hovertemplate="%{text}<br>%{y}<extra></extra>",
    )
    note = (
        f"every {keep[1] - keep[0]}-th of {len(labels)} groups shown"
        if len(keep) < len(labels)
        else ""
    )
    return Figure([trace], layout(title, "experiment (index in the results)", ytitle), note)


def _group_rows(groups, labels: list[str], names, budget: Budget) -> tuple[list, str]:
    """Table rows (label + ``names`` columns) of the first ``budget.table_rows`` groups."""
    n = min(len(labels), budget.table_rows)
    columns = [group_column(groups, k)[:n] for k in names]
    rows = [[labels[i]] + [fmt(c[i]) if i < len(c) else "–" for c in columns] for i in range(n)]
    note = f"first {n} of {len(labels)} experiments shown" if len(labels) > n else ""
    return rows, note


@builder("dials.spot_size_histogram")
def spot_size_histogram(document: dict, budget: Budget) -> Content:
    results = document["results"]
    summary = results["overall"]["summary"]
    content = Content()
    content.summary = [
        (k, fmt(summary.get(k))) for k in ("n", "mean", "median", "std", "min", "max")
    ]
    content.summary += [(k, fmt(v)) for k, v in (summary.get("percentiles") or {}).items()]
    content.summary.append(("size source", fmt(results.get("size_source"))))
    if results.get("mask_bits"):
        content.summary.append(("mask bits", fmt(results["mask_bits"])))
    if not summary.get("n"):
        content.notes.append("No reflections selected: the histogram is empty.")
    for key in ("shoebox_rule", "num_pixels_rule"):
        if results.get(key):
            content.notes.append(f"{key.replace('_', ' ')}: {results[key]}")
    content.figures.append(_spot_figure(results, budget))
    groups = results.get("per_experiment")
    labels = group_labels(groups)
    if len(labels) > budget.overlay:
        content.figures.append(
            _per_group_figure(
                "Median spot size per experiment",
                labels,
                group_column(groups, "median"),
                "median size (px)",
                budget,
            )
        )
    names = ("n", "mean", "median", "std", "min", "max")
    rows, note = _group_rows(groups, labels, names, budget)
    content.tables.append(
        Table(
            "Spot size per experiment",
            ["experiment", "n", "mean", "median", "std", "min", "max"],
            rows,
            note,
        )
    )
    return content


# --------------------------------------------------------------------------- intensity per frame

NUMBERING = {
    "image_number": "image number",
    "experiment_index": "experiment index (stills: one image per experiment)",
    "z_floor": "frame (floor(z) + 1, no scan)",
}


def coarse_per_frame(per_frame: dict, limit: int) -> tuple[dict, int]:
    """Per-frame columns with blocks of ``k`` adjacent bins merged (``k`` also returned).

    Counts add and means are count-weighted (exact); the median of a merged bin is the
    median of its bins' medians (approximate, and said so in the plot).
    """
    n = len(per_frame["count"])
    k = factor(n, limit)
    count = per_frame["count"]
    return {
        "frame_first": block_first(per_frame["frame_first"], k),
        "frame_last": block_last(per_frame["frame_last"], k),
        "count": block_sum(count, k),
        "mean": block_weighted_mean(per_frame["mean"], count, k),
        "median": block_median(per_frame["median"], k),
        "mean_i_over_sigma": block_weighted_mean(
            per_frame["mean_i_over_sigma"], per_frame["n_with_sigma"], k
        ),
        "n_non_positive": block_sum(per_frame["n_non_positive"], k),
    }, k


def _frame_traces(results: dict, budget: Budget):
    """Yield ``(intensity, series label, coarse per-frame columns, k, index)``."""
    index = 0
    for block in results["intensities"]:
        for series in block["series"][: budget.overlay]:
            columns, k = coarse_per_frame(series["per_frame"], budget.points)
            yield block["intensity"], series["label"], columns, k, index
            index += 1


def _scan_shapes(results: dict) -> list[dict]:
    """Dashed lines at the scan's first and last image, when every series shares one scan."""
    ranges = {tuple(s["image_range"]) for s in results["series"] if s.get("image_range")}
    if len(ranges) != 1 or any(not s.get("image_range") for s in results["series"]):
        return []
    first, last = next(iter(ranges))
    return [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": x,
            "x1": x,
            "y0": 0,
            "y1": 1,
            "line": {"dash": "dash", "color": "#888", "width": 1},
        }
        for x in (first - 0.5, last + 0.5)
    ]


def _frame_figures(results: dict, budget: Budget) -> list[Figure]:
    numbering = {s.get("numbering") for s in results["series"]} or {"image_number"}
    xtitle = " / ".join(NUMBERING.get(n, str(n)) for n in sorted(numbering, key=str))
    bin_width = results.get("bin_width", 1)
    if bin_width > 1:
        xtitle += f" (bins of {bin_width} frames)"
    intensity_traces, count_traces, ios_traces = [], [], []
    merged, positive = 1, True
    n_series = len(results["series"])
    for intensity, label, c, k, i in _frame_traces(results, budget):
        merged = max(merged, k)
        x = plain((c["frame_first"] + c["frame_last"]) / 2)
        frames = [
            f"{a}" if a == b else f"{a}–{b}"
            for a, b in zip(c["frame_first"].tolist(), c["frame_last"].tolist())
        ]
        name = f"{intensity}, {label}" if n_series > 1 else intensity
        hover = "frames %{text}<br>%{y}<extra>%{fullData.name}</extra>"
        common = {"text": frames, "hovertemplate": hover, "legendgroup": name}
        median, mean = c["median"], c["mean"]
        finite = np.concatenate([median[np.isfinite(median)], mean[np.isfinite(mean)]])
        positive = positive and bool(np.all(finite > 0))
        intensity_traces.append(lines(x, plain(median), f"median {name}", i, **common))
        mean_trace = lines(x, plain(mean), f"mean {name}", i, **common)
        mean_trace["line"] = {**mean_trace["line"], "dash": "dot"}
        intensity_traces.append(mean_trace)
        count_traces.append(lines(x, plain(c["count"]), name, i, **common))
        ios_traces.append(lines(x, plain(c["mean_i_over_sigma"]), name, i, **common))
    notes = []
    if merged > 1:
        notes.append(f"up to {merged} frame bins merged per point")
    if n_series > budget.overlay:
        notes.append(f"first {budget.overlay} of {n_series} series shown")
    note = "; ".join(notes)
    median_note = "; ".join(
        notes + (["merged points show the median of the bins' medians"] if merged > 1 else [])
    )
    scale = "log" if positive else "linear"
    scan = _scan_shapes(results)
    return [
        Figure(
            intensity_traces,
            layout(
                "Median (solid) and mean (dotted) intensity per frame; gaps: empty bins; "
                "dashed: scan limits",
                xtitle,
                "intensity (counts)",
                yaxis={"type": scale},
                updatemenus=scale_buttons(scale),
                shapes=scan,
            ),
            median_note,
        ),
        Figure(
            count_traces,
            layout("Reflections per frame", xtitle, "reflections", shapes=scan),
            note,
        ),
        Figure(
            ios_traces,
            layout("Mean I/σ per frame; gaps: empty bins", xtitle, "mean I/σ(I)", shapes=scan),
            note,
        ),
    ]


def _frame_tables(results: dict, budget: Budget) -> list[Table]:
    tables = []
    for block in results["intensities"]:
        series_list = block["series"][: budget.overlay]
        limit = max(1, budget.table_rows // max(1, len(series_list)))
        rows, merged = [], 1
        for series in series_list:
            c, k = coarse_per_frame(series["per_frame"], limit)
            merged = max(merged, k)
            columns = ("count", "mean", "median", "mean_i_over_sigma", "n_non_positive")
            values = [c[name].tolist() for name in columns]
            for j, (a, b) in enumerate(zip(c["frame_first"].tolist(), c["frame_last"].tolist())):
                frames = f"{a}" if a == b else f"{a}–{b}"
                cells = [v[j] for v in values]
                cells[0], cells[4] = int(cells[0]), int(cells[4])
                rows.append([series["label"], frames] + [fmt(v) for v in cells])
        note = (
            f"{merged} frame bins merged per row (median: median of medians)" if merged > 1 else ""
        )
        tables.append(
            Table(
                f"Per-frame table ({block['intensity']}, {block['value_column']})",
                ["series", "frames", "count", "mean", "median", "mean I/σ", "I ≤ 0"],
                rows,
                note,
            )
        )
    return tables


@builder("dials.intensity_per_frame")
def intensity_per_frame(document: dict, budget: Budget) -> Content:
    results = document["results"]
    content = Content()
    for block in results["intensities"]:
        o, name = block["overall"], block["intensity"]
        content.summary += [
            (f"{name}: n", fmt(o.get("n"))),
            (f"{name}: mean", fmt(o.get("mean"))),
            (f"{name}: median", fmt(o.get("median"))),
            (f"{name}: mean I/σ", fmt(o.get("mean_i_over_sigma"))),
            (f"{name}: I ≤ 0", fmt(o.get("n_non_positive"))),
            (f"{name}: outside scan", fmt(block.get("n_outside_scan"))),
        ]
        if not o.get("n"):
            content.notes.append(f"{name}: no reflections selected.")
    content.summary += [
        ("frame source", fmt(results.get("frame_source"))),
        ("bin width", fmt(results.get("bin_width"))),
        ("series", fmt(len(results["series"]))),
    ]
    content.notes += [f"{k}: {v}" for k, v in (results.get("numbering_rules") or {}).items()]
    if results.get("statistics"):
        content.notes.append(results["statistics"])
    if any(s["per_frame"]["count"] for b in results["intensities"] for s in b["series"]):
        content.figures = _frame_figures(results, budget)
    else:
        content.notes.append("No frames to plot.")
    content.tables = _frame_tables(results, budget)
    rows = []
    for block in results["intensities"]:
        for s in block["series"]:
            m = s["summary"]
            cells = [m.get(k) for k in ("n", "mean", "median", "mean_i_over_sigma")]
            frames = f"{fmt(m.get('frame_min'))}–{fmt(m.get('frame_max'))}"
            rows.append(
                [block["intensity"], s["label"]]
                + [fmt(v) for v in cells]
                + [frames, fmt(s.get("n_outside_scan"))]
            )
    rows, note = bounded_rows(rows, budget.table_rows, "series")
    content.tables.insert(
        0,
        Table(
            "Per-series summary",
            ["intensity", "series", "n", "mean", "median", "mean I/σ", "frames", "outside scan"],
            rows,
            note,
            collapsed=False,
        ),
    )
    return content


# --------------------------------------------------------------------------- strong positions


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
            _per_group_figure(
                "Strong fraction per experiment",
                labels,
                group_column(groups, "strong_fraction"),
                "strong fraction",
                budget,
            )
        )
    names = ("n_selected", "n_strong", "strong_fraction", "median_d_strong")
    rows, note = _group_rows(groups, labels, names, budget)
    content.tables.append(
        Table(
            "Per experiment",
            ["experiment", "selected", "strong", "strong fraction", "median d strong (Å)"],
            rows,
            note,
        )
    )
    return content
