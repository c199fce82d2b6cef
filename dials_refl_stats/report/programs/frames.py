"""Section of dials.intensity_per_frame: per-frame intensity, counts and I/sigma."""

from __future__ import annotations

import numpy as np

from dials_refl_stats.compact import intensity_series_full
from dials_refl_stats.report.figures import (
    Figure,
    layout,
    lines,
    scale_buttons,
    vertical_lines,
)
from dials_refl_stats.report.model import (
    Budget,
    Content,
    Table,
    bounded_rows,
    fmt,
)
from dials_refl_stats.report.sections import builder
from dials_refl_stats.report.thin import (
    block_first,
    block_last,
    block_median,
    block_sum,
    block_weighted_mean,
    factor,
    plain,
)

#: Axis text of each frame numbering (``numbering_rules`` of the JSON say how each is made).
NUMBERING = {
    "image_number": "image number (floor(z) + 1)",
    "experiment_index": "experiment index (stills: one image per experiment)",
    "z_floor": "frame = floor(z) (no scan)",
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
    return vertical_lines((first - 0.5, last + 0.5))


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
    title = "Median (solid) and mean (dotted) intensity per frame; gaps: empty bins"
    if scan:
        title += "; dashed: scan limits"
    return [
        Figure(
            intensity_traces,
            layout(
                title,
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
    results = intensity_series_full(document["results"])  # the full form of the series
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
