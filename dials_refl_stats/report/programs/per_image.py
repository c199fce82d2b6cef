"""Section of dials.per_image_statistics: spots, indexing, I/σ and d_min per image; for
stills the sliding hit and indexing rates and the unit-cell histograms."""

from __future__ import annotations

import math

import numpy as np

from dials_refl_stats.analysis.stills import series_of
from dials_refl_stats.compact import expand
from dials_refl_stats.report.figures import (
    Figure,
    bars,
    colour,
    empty_note,
    layout,
    lines,
    ptext,
    scale_buttons,
    vertical_lines,
)
from dials_refl_stats.report.model import Budget, Content, Table, bounded_rows, fmt
from dials_refl_stats.report.sections import builder
from dials_refl_stats.report.thin import (
    as_float,
    block_first,
    block_last,
    block_median,
    block_sum,
    block_sum_2d,
    factor,
    plain,
    stride,
)

#: Per-image counts (summed when images are merged).
COUNTS = (
    "n_strong",
    "n_selected",
    "n_indexed",
    "n_integrated_sum",
    "n_integrated_prf",
    "n_spots_no_ice",
    "n_spots_4A",
    "total_intensity",
)
#: Per-image values (the median of the images' values when merged; -1 means none).
VALUES = (
    "median_intensity",
    "median_spot_size",
    "estimated_d_min",
    "d_min_distl_method_1",
    "d_min_distl_method_2",
)
D_MIN = (
    ("estimated_d_min", "estimated d_min"),
    ("d_min_distl_method_1", "distl method 1"),
    ("d_min_distl_method_2", "distl method 2"),
)
CELL = ("a", "b", "c", "alpha", "beta", "gamma")
MERGE_RULE = "counts summed; fraction indexed from the sums; other values: median of the images'"


def _value(values) -> np.ndarray:
    """Floats with ``None`` and DIALS's ``-1`` (no estimate) as NaN."""
    array = as_float(values)
    return np.where(array == -1, np.nan, array)


def coarse_images(per_image: dict, k: int) -> dict[str, np.ndarray]:
    """The per-image columns with blocks of ``k`` consecutive rows merged: counts summed,
    fraction indexed recomputed from the sums (exact), values as the median of the rows'."""
    n = len(per_image["image"])
    last = per_image.get("image_last") or per_image["image"]
    out = {
        "image_first": block_first(np.asarray(per_image["image"]), k),
        "image_last": block_last(np.asarray(last), k),
        "experiment": block_first(np.asarray(per_image["experiment"]), k),
        "experiment_last": block_last(np.asarray(per_image["experiment"]), k),
        **{
            f"{name}{end}": block(np.asarray(per_image[name]), k)
            for name in ("file_index", "id")
            if name in per_image
            for end, block in (("", block_first), ("_last", block_last))
        },
        "position": (np.arange(0, n, k) + np.minimum(np.arange(0, n, k) + k, n) - 1) / 2,
    }
    for name in COUNTS:
        if name in per_image:
            out[name] = block_sum(per_image[name], k)
    for name in VALUES:
        if name in per_image:
            out[name] = block_median(_value(per_image[name]), k)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["fraction_indexed"] = np.where(
            out["n_selected"] > 0, out["n_indexed"] / np.maximum(out["n_selected"], 1), np.nan
        )
    return out


def _images_text(c: dict) -> list[str]:
    """Hover/table labels: ``image 3``, ``images 3–5``, with the experiment when several
    (rows without one: their file and ``id``, when the table has them)."""
    several = len(set(c["experiment"].tolist()) | set(c["experiment_last"].tolist())) > 1
    n = len(c["experiment"])
    files = _pairs(c, "file_index", n)
    ids = _pairs(c, "id", n)
    out = []
    for a, b, e, f, (f0, f1), (i0, i1) in zip(
        c["image_first"].tolist(),
        c["image_last"].tolist(),
        c["experiment"].tolist(),
        c["experiment_last"].tolist(),
        files,
        ids,
    ):
        text = f"image {a}" if a == b and e == f else f"images {a}–{b}"
        if e < 0 and f < 0 and f0 is not None:
            if (f0, i0) == (f1, i1):
                text += f" (file {f0}, id {i0})"
            else:
                text += f" (file {f0}, id {i0} – file {f1}, id {i1})"
        elif several:
            text += f" (experiment {e})" if e == f else f" (experiments {e}–{f})"
        out.append(text)
    return out


def _pairs(c: dict, name: str, n: int) -> list[tuple]:
    """(first, last) of column ``name`` for each merged row (``None`` without it)."""
    if name not in c:
        return [(None, None)] * n
    return list(zip(c[name].tolist(), c[f"{name}_last"].tolist()))


def _by_image(per_image: dict) -> bool:
    """Whether image numbers increase down the table (one scan, or stills): then they are
    the x axis; else (several scans) the row position is."""
    return bool(np.all(np.diff(np.asarray(per_image["image"], dtype=np.float64)) > 0))


def _x(c: dict, results: dict, by_image: bool) -> tuple[list, str]:
    """The x values of the merged rows and their axis title."""
    binned = results.get("binned")
    if by_image:
        x = (c["image_first"] + c["image_last"]) / 2
        stills = "still" in (results.get("numbering") or [])
        title = "image (stills: index in input order)" if stills else "image"
    else:
        x = c["position"]
        title = "row of the per-image table (dashed: next experiment; image in the hover)"
    if binned:
        title += f"; JSON bins of {binned['images_per_bin']} images"
    return plain(x), title


def _experiment_lines(per_image: dict, limit: int) -> list[dict]:
    """Dashed lines between experiments (rows without one: between their files and
    ids) on a row-position axis (none past ``limit``)."""
    changes = np.flatnonzero(np.diff(series_of(per_image)) != 0) + 0.5
    if changes.size > limit:
        return []
    return vertical_lines(changes.tolist())


def _integer_ticks(x: list) -> dict:
    """Whole-number ticks on a short image axis (no ticks at half images)."""
    finite = [v for v in x if v is not None]
    return {"dtick": 1} if finite and max(finite) - min(finite) < 10 else {}


def _merge_note(k: int, what: str = "point", rule: str = MERGE_RULE, unit: str = "images") -> str:
    return f"{k} {unit} merged per {what} ({rule})" if k > 1 else ""


def _images_per_bin(results: dict) -> int:
    """Consecutive images per row of the JSON's per-image series (1 unless binned)."""
    return int((results.get("binned") or {}).get("images_per_bin") or 1)


def _per_point(images: int) -> str:
    """What one plotted count sums: ``image`` or ``bin of N images``."""
    return "image" if images == 1 else f"bin of {images} images"


def _spots_figure(c, x, text, xtitle, note, overall, per: str = "image") -> Figure:
    series = [("n_strong", "strong"), ("n_indexed", "indexed"), ("n_spots_4A", "to 4 Å (DIALS)")]
    series += [
        (name, label)
        for name, label in (("n_integrated_sum", "integrated (sum)"), ("n_integrated_prf", "prf"))
        if overall.get(name)
    ]
    hover = "%{text}<br>%{y}<extra>%{fullData.name}</extra>"
    traces = [
        lines(x, plain(c[name]), label, i, text=text, hovertemplate=hover)
        for i, (name, label) in enumerate(series)
        if name in c
    ]
    for trace in traces[1::2]:  # equal series (everything indexed) stay visible
        trace["line"] = {**trace["line"], "dash": "dot"}
    return Figure(
        traces,
        layout(
            f"Spots per {per}",
            xtitle,
            "spots" if per == "image" else f"spots per {per}",
            xaxis=_integer_ticks(x),
            updatemenus=scale_buttons(),
        ),
        note,
    )


def _fraction_figure(c, x, text, xtitle, note) -> Figure:
    percent = plain(100 * c["fraction_indexed"])
    trace = lines(
        x, percent, "indexed", 0, text=text, hovertemplate="%{text}<br>%{y:.1f} %<extra></extra>"
    )
    empty = "no spots" if all(v is None for v in percent) else ""
    empty = empty or ("nothing indexed" if not np.nansum(c["n_indexed"]) else "")
    extra = {"annotations": [empty_note(empty)]} if empty else {}
    return Figure(
        [trace],
        layout(
            "Fraction of the selected spots indexed; gaps: no spots",
            xtitle,
            "indexed (%)",
            xaxis=_integer_ticks(x),
            yaxis={"range": [-2, 102]},
            **extra,
        ),
        note,
    )


def _isigma_figure(results: dict, x, xtitle: str, k: int) -> Figure:
    labels = [ptext(label) for label in results["isigma"]["labels"]]
    counts = block_sum_2d(results["isigma"]["counts"], k, 1).reshape(-1, len(labels))
    per = _per_point(k * _images_per_bin(results))
    title = f"Spots per {per} and I/σ(I) bin (log colour; blank: none)"
    top = float(counts.max()) if counts.size else 0.0
    if top <= 0:
        fig = layout(title, xtitle, "I/σ(I)", annotations=[empty_note("no I/σ (no intensities)")])
        return Figure([], fig, _merge_note(k, "column", "counts summed", _row_unit(results)))
    with np.errstate(divide="ignore"):
        z = np.where(counts > 0, np.log10(np.maximum(counts, 1)), np.nan).T
    zmax = max(math.log10(top), 1.0)
    ticks = list(range(int(math.floor(zmax)) + 1))
    trace = {
        "type": "heatmap",
        "x": x,
        "y": labels,
        "z": [plain(row, 4) for row in z],
        "text": [[f"{int(v)}" for v in row] for row in counts.T.tolist()],
        "colorscale": "Viridis",
        "zmin": 0,
        "zmax": zmax,
        "colorbar": {
            "title": {"text": "spots"},
            "tickvals": ticks,
            "ticktext": [f"{10**t:g}" for t in ticks],
        },
        "hovertemplate": f"{xtitle.split(' ')[0]} %{{x}}<br>I/σ %{{y}}<br>%{{text}} spots"
        "<extra></extra>",
    }
    fig = layout(title, xtitle, "I/σ(I)", xaxis=_integer_ticks(x))
    return Figure([trace], fig, _merge_note(k, "column", "counts summed", _row_unit(results)))


def _row_unit(results: dict) -> str:
    """What one row of the JSON's per-image series is: ``images`` or ``bins of N images``."""
    n = _images_per_bin(results)
    return "images" if n == 1 else f"bins of {n} images"


def _d_min_figure(c, x, text, xtitle, note) -> Figure:
    hover = "%{text}<br>%{y} Å<extra>%{fullData.name}</extra>"
    traces = [
        lines(x, plain(c[name]), label, i, text=text, hovertemplate=hover)
        for i, (name, label) in enumerate(D_MIN)
        if name in c
    ]
    empty = not any(np.isfinite(c[name]).any() for name, _ in D_MIN if name in c)
    extra = {"annotations": [empty_note("DIALS gave no d_min estimate")]} if empty else {}
    return Figure(
        traces,
        layout(
            "d_min per image (DIALS per-image analysis; gaps: no estimate)",
            xtitle,
            "d_min (Å)",
            xaxis=_integer_ticks(x),
            yaxis={"autorange": "reversed"},
            **extra,
        ),
        note,
    )


def _rates_figure(stills: dict, budget: Budget) -> Figure:
    sliding = stills["sliding"]
    n = len(sliding["hit_rate"])
    size = max(1, math.ceil(stills["n_images"] / max(1, n)))
    keep = stride(n, budget.points)
    x = (keep * size).tolist()
    traces, shapes = [], []
    for i, (name, label) in enumerate(
        (("hit_rate", "hit rate"), ("indexing_rate", "indexing rate"))
    ):
        y = plain(100 * as_float(sliding[name])[keep])
        traces.append(
            lines(
                x,
                y,
                label,
                i,
                hovertemplate="image %{x}<br>%{y:.1f} %<extra>%{fullData.name}</extra>",
                line={"color": colour(i), "width": 1.5, "dash": "dot" if i else "solid"},
            )
        )
        overall = stills.get(name)
        if overall is not None:
            shapes.append(
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": 100 * overall,
                    "y1": 100 * overall,
                    "line": {"dash": "dash", "width": 1, "color": colour(i)},
                }
            )
    notes = []
    if size > 1:
        notes.append(f"JSON bins of about {size} images (median of the rates)")
    if len(keep) < n:
        notes.append(f"every {keep[1] - keep[0]}-th point shown")
    return Figure(
        traces,
        layout(
            f"Stills: hit rate (≥ {stills['hit_min_spots']} strong spots) and indexing rate "
            f"over the last {stills['window']} images; dashed: overall",
            "still image (index in input order)",
            "rate (%)",
            xaxis=_integer_ticks(x),
            yaxis={"range": [-2, 102]},
            shapes=shapes,
        ),
        "; ".join(notes),
    )


def _cells_figure(cells: dict) -> Figure:
    traces = []
    fig = layout(
        f"Unit cells of the {cells['n_crystals']} indexed crystals",
        "",
        "",
        grid={"rows": 2, "columns": 3, "pattern": "independent", "ygap": 0.45, "xgap": 0.12},
        showlegend=False,
    )
    for i, name in enumerate(CELL):
        histogram = cells.get(name)
        axis = "" if i == 0 else str(i + 1)
        unit = "Å" if i < 3 else "°"
        fig[f"xaxis{axis}"] = {"title": {"text": f"{name} ({unit})"}}
        fig[f"yaxis{axis}"] = {"title": {"text": "crystals"} if i % 3 == 0 else {}}
        if not histogram:
            continue
        edges = as_float(histogram["edges"])
        traces.append(
            bars(
                plain((edges[:-1] + edges[1:]) / 2),
                plain(as_float(histogram["counts"])),
                name,
                i % 3,
                width=plain(np.diff(edges)),
                xaxis=f"x{axis}",
                yaxis=f"y{axis}",
                hovertemplate=f"{name} %{{x}} {unit}<br>%{{y}} crystals<extra></extra>",
            )
        )
    return Figure(traces, fig, height=520)


def _overall_table(results: dict) -> Table:
    o = results["overall"]
    rows = [
        ["images", fmt(results.get("n_images"))],
        ["rows", fmt(o.get("n_rows"))],
        ["strong spots", fmt(o.get("n_strong"))],
        ["selected spots", fmt(o.get("n_selected"))],
        ["indexed spots", fmt(o.get("n_indexed"))],
        [
            "fraction indexed",
            "–" if o.get("fraction_indexed") is None else f"{100 * o['fraction_indexed']:.1f} %",
        ],
        ["integrated (sum)", fmt(o.get("n_integrated_sum"))],
        ["integrated (prf)", fmt(o.get("n_integrated_prf"))],
        ["total intensity", fmt(o.get("total_intensity"))],
    ]
    per_image = results["per_image"]
    for name, label in D_MIN:
        if name in per_image:
            values = _value(per_image[name])
            good = values[np.isfinite(values)]
            median = f"{np.median(good):.3g} Å" if good.size else "–"
            rows.append([f"median {label} over images", median])
    stills = results.get("stills")
    if stills:
        rows += [
            ["stills", fmt(stills.get("n_images"))],
            [f"hits (≥ {stills['hit_min_spots']} strong)", fmt(stills.get("n_hits"))],
            ["hit rate", _percent(stills.get("hit_rate"))],
            ["indexed images", fmt(stills.get("n_indexed_images"))],
            ["indexing rate", _percent(stills.get("indexing_rate"))],
            ["indexing rate of hits", _percent(stills.get("indexing_rate_of_hits"))],
        ]
        cells = stills.get("unit_cells") or {}
        for name in CELL if cells.get("n_crystals") else ():
            h = cells.get(name) or {}
            rows.append(
                [f"cell {name} (mean ± std)", f"{fmt(h.get('mean'))} ± {fmt(h.get('std'))}"]
            )
    return Table("Overall", ["quantity", "value"], rows, collapsed=False)


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _image_table(per_image: dict, budget: Budget, unit: str = "images") -> Table:
    k = factor(len(per_image["image"]), budget.table_rows)
    c = coarse_images(per_image, k)
    names = [
        ("n_strong", "strong"),
        ("n_indexed", "indexed"),
        ("fraction_indexed", "% indexed"),
        ("n_integrated_sum", "sum"),
        ("n_integrated_prf", "prf"),
        ("total_intensity", "total I"),
        ("median_intensity", "median I"),
        ("median_spot_size", "median size"),
        ("n_spots_4A", "to 4 Å"),
        ("estimated_d_min", "d_min"),
    ]
    names = [(n, label) for n, label in names if n in c]
    columns = [plain(100 * c[n]) if n == "fraction_indexed" else plain(c[n], 6) for n, _ in names]
    text = _images_text(c)
    rows = [[text[i]] + [fmt(col[i]) for col in columns] for i in range(len(text))]
    rows, note = bounded_rows(rows, budget.table_rows, "rows")
    note = "; ".join(n for n in (note, _merge_note(k, "row", unit=unit)) if n)
    return Table("Per-image table", ["images"] + [label for _, label in names], rows, note)


@builder("dials.per_image_statistics")
def per_image_statistics(document: dict, budget: Budget) -> Content:
    results = dict(document["results"])
    per_image = results["per_image"] = expand(results["per_image"])  # runs decoded
    if results.get("stills") and results["stills"].get("sliding"):
        results["stills"] = {**results["stills"], "sliding": expand(results["stills"]["sliding"])}
    overall = results["overall"]
    stills = results.get("stills")
    content = Content()
    content.summary = [
        ("images", fmt(results.get("n_images"))),
        ("numbering", fmt(results.get("numbering"))),
        ("strong spots", fmt(overall.get("n_strong"))),
        ("indexed", _percent(overall.get("fraction_indexed"))),
    ]
    if stills:
        content.summary += [
            ("hit rate", _percent(stills.get("hit_rate"))),
            ("indexing rate", _percent(stills.get("indexing_rate"))),
        ]
    binned = results.get("binned")
    if binned:
        content.notes.append(
            f"The JSON bins the series: {binned['images_per_bin']} images per bin, "
            f"{binned['n_bins']} bins ({binned['rule']})."
        )
    if "estimated_d_min" not in per_image:
        content.notes.append(
            "No spot counts to 4 Å or d_min estimates: they need the experiments (.expt) "
            "and resolution_analysis=True."
        )
    n = len(per_image["image"])
    if n:
        k = factor(n, budget.points)
        c = coarse_images(per_image, k)
        by_image = _by_image(per_image)
        x, xtitle = _x(c, results, by_image)
        text = _images_text(c)
        note = _merge_note(k, unit=_row_unit(results))
        n_bins = max(1, len(results["isigma"]["labels"]))
        k_heat = factor(n, max(1, budget.heatmap_cells // n_bins))
        c_heat = coarse_images(per_image, k_heat) if k_heat != k else c
        x_heat, _ = _x(c_heat, results, by_image)
        content.figures += [
            _spots_figure(
                c, x, text, xtitle, note, overall, _per_point(k * _images_per_bin(results))
            ),
            _fraction_figure(c, x, text, xtitle, note),
            _isigma_figure(results, x_heat, xtitle, k_heat),
        ]
        if "estimated_d_min" in c:
            content.figures.append(_d_min_figure(c, x, text, xtitle, note))
        if not by_image:
            for figure in content.figures:
                figure.layout["shapes"] = _experiment_lines(per_image, budget.list_items)
    else:
        content.notes.append("No images: nothing to plot.")
    if stills and stills.get("sliding") and len(stills["sliding"].get("hit_rate") or []):
        content.figures.append(_rates_figure(stills, budget))
    cells = (stills or {}).get("unit_cells") or {}
    if cells.get("n_crystals"):
        content.figures.append(_cells_figure(cells))
    content.tables.append(_overall_table(results))
    if n:
        content.tables.append(_image_table(per_image, budget, _row_unit(results)))
    definitions = results.get("definitions") or {}
    content.tables.append(
        Table("Definitions", ["column", "meaning"], [[k, fmt(v)] for k, v in definitions.items()])
    )
    return content
