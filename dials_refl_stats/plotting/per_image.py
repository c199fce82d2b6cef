"""The dials.per_image_statistics figure: spots, indexing, I/sigma and d_min per image."""

from __future__ import annotations

import textwrap

import numpy as np

from dials_refl_stats.plotting import new_figure, save


def _values(series: dict, name: str) -> np.ndarray | None:
    values = series.get(name)
    if values is None:
        return None
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def per_image_figure(path: str, results: dict, title: str, format_from: str) -> None:
    """Panels: spots and indexed per image, fraction indexed, I/sigma heatmap, d_min;
    for stills also hit/indexing rates and unit-cell histograms."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    series = results["per_image"]
    stills = results.get("stills")
    cells = (stills or {}).get("unit_cells") or {}
    n_cell_rows = 1 if cells.get("n_crystals") else 0
    n_rows = 4 + (1 if stills else 0) + n_cell_rows
    figure, axes = new_figure(n_rows, 1, figsize=(9, 2.3 * n_rows + 1))
    axes = list(np.atleast_1d(axes))
    image = _values(series, "image")
    n = 0 if image is None else image.size
    binned = results.get("binned")
    xlabel = "Image" + (f" (bins of {binned['images_per_bin']} images)" if binned else "")
    step = n > 200
    draw = (
        (lambda ax, x, y, **kw: ax.step(x, y, where="mid", **kw))
        if step
        else (lambda ax, x, y, **kw: ax.plot(x, y, marker="o", markersize=3, **kw))
    )

    ax = axes[0]
    if n:
        draw(ax, image, _values(series, "n_strong"), label="strong", color="tab:orange")
        draw(ax, image, _values(series, "n_indexed"), label="indexed", color="tab:blue")
        if "n_spots_no_ice" in series:
            draw(ax, image, _values(series, "n_spots_4A"), label="to 4 Å", color="tab:green")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_ylabel("Spots per image")

    ax = axes[1]
    if n:
        draw(ax, image, 100 * _values(series, "fraction_indexed"), color="tab:blue")
    ax.set_ylim(-2, 102)
    ax.set_ylabel("Indexed (%)")

    ax = axes[2]
    counts = np.asarray(results["isigma"]["counts"], dtype=np.float64).reshape(n, -1) if n else None
    if n and counts.sum() > 0:
        counts[counts == 0] = np.nan
        extent = (image[0] - 0.5, image[-1] + 0.5, -0.5, counts.shape[1] - 0.5)
        shown = ax.imshow(
            counts.T,
            aspect="auto",
            origin="lower",
            extent=extent,
            norm=LogNorm(),
            interpolation="nearest",
            cmap="viridis",
        )
        ax.set_yticks(range(counts.shape[1]))
        ax.set_yticklabels(results["isigma"]["labels"], fontsize="x-small")
        figure.colorbar(shown, ax=ax, label="spots", pad=0.01)
    else:
        ax.text(
            0.5,
            0.5,
            "no I/sigma (no intensities selected)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_ylabel("I/sigma")

    ax = axes[3]
    d_min = _values(series, "estimated_d_min")
    if d_min is not None and np.any(d_min > 0):
        for name, label in (
            ("estimated_d_min", "d_min"),
            ("d_min_distl_method_1", "distl 1"),
            ("d_min_distl_method_2", "distl 2"),
        ):
            values = _values(series, name)
            ax.plot(image, np.where(values > 0, values, np.nan), marker=".", label=label)
        ax.invert_yaxis()
        ax.legend(loc="upper right", fontsize="small")
    else:
        ax.text(
            0.5,
            0.5,
            "no d_min estimates (give the experiments, .expt)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_ylabel("d_min (Å)")

    next_axis = 4
    if stills:
        ax = axes[next_axis]
        next_axis += 1
        sliding = stills["sliding"]
        x = np.arange(len(sliding["hit_rate"]))
        ax.plot(x, 100 * np.asarray(sliding["hit_rate"]), label="hit rate")
        ax.plot(x, 100 * np.asarray(sliding["indexing_rate"]), label="indexing rate")
        ax.set_ylabel(f"% (window {stills['window']})")
        ax.set_xlabel("Still (input order)")
        ax.set_ylim(-2, 102)
        ax.legend(loc="upper right", fontsize="small")
    for ax in axes[:4]:
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not n:
            ax.text(0.5, 0.5, "no images", ha="center", va="center", transform=ax.transAxes)
    if n_cell_rows:
        cell_axis = axes[next_axis]
        cell_axis.set_axis_off()
        spec = cell_axis.get_subplotspec().subgridspec(1, 6, wspace=0.4)
        for i, name in enumerate(("a", "b", "c", "alpha", "beta", "gamma")):
            sub = figure.add_subplot(spec[0, i])
            hist = cells.get(name)
            if hist:
                edges = np.asarray(hist["edges"])
                sub.stairs(hist["counts"], edges, fill=True)
            sub.set_title(name if len(name) == 1 else f"{name} (°)", fontsize="small")
            sub.tick_params(labelsize="x-small")
    figure.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize="medium")
    save(figure, path, format_from)
