"""dials.per_image_statistics: what happened on every image?"""

from __future__ import annotations

from typing import Sequence

import dials.util
import libtbx.phil
import numpy as np

from dials_refl_stats import geometry
from dials_refl_stats.analysis.per_image import (
    COUNT_FIELDS,
    ISIGMA_EDGES,
    ISIGMA_LABELS,
    SKETCH_ALPHA,
    ImageTable,
    PerImageStatistic,
)
from dials_refl_stats.analysis.spot_size import MASK_NAMES, mask_code
from dials_refl_stats.analysis.statistic import split_group_keys
from dials_refl_stats.analysis.stills import cell_histograms, sliding_rate, thin_images
from dials_refl_stats.compact import COMPACT_DIGITS, compact_column
from dials_refl_stats.image_numbering import STILL, NumberedImages, number_images, take
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.phil import INPUT_PHIL, output_phil, selection_phil
from dials_refl_stats.pipeline.program import Program, Run, run_program
from dials_refl_stats.resolution_analysis import RESOLUTION_FAILED, DialsSpotAnalysis

PROGRAM = "per_image_statistics"

help_message = """
What happened on every image: for each image, the number of strong spots, of indexed
and integrated reflections, the fraction indexed, the total and median intensity, the
I/sigma distribution and the median spot size (signal pixels) of the selected spots.
With the experiments (.expt) images are numbered from each scan (every image of the
scan is listed, also empty ones), and the spot counts away from ice rings and to 4 Å
and the d_min estimates are computed by DIALS's own per-image analysis, equal to
dials.spot_counts_per_image's. Stills (no scan) are one image per experiment, numbered
in input order across files; for them the hit rate (images with at least hit.min_spots
strong spots) and indexing rate are reported overall and in a sliding window, and the
unit cells of the indexed crystals as histograms.

Writes per_image_statistics.json (a per-image table as column arrays) and
per_image_statistics.png. Past output.max_images images, the per-image series are
binned (sums, and medians of the images' values) and the JSON says so.

Examples::

  dials.per_image_statistics imported.expt strong.refl

  dials.per_image_statistics indexed.expt indexed.refl

  dials.per_image_statistics integrated.expt integrated.refl selection.flags=integrated_sum

  dials.per_image_statistics 'ssx/integrated_*.refl' hit.min_spots=20 window=500 mp.nproc=4
"""

phil_scope = libtbx.phil.parse(
    """
hit
  .help = "Stills: what makes an image a hit."
{
  min_spots = 16
    .type = int(value_min=1, value_max=1000000000)
    .help = "An image is a hit with at least this many strong spots."
}
window = 100
  .type = int(value_min=1, value_max=1000000)
  .help = "Stills: images in the sliding window of the hit and indexing rates."
resolution_analysis = True
  .type = bool
  .help = "With experiments: DIALS's per-image d_min estimates (as"
          "dials.spot_counts_per_image), computed with DIALS's arithmetic in numpy"
          "(~0.1 ms per image)."
spot_size
{
  mask_bits = valid background *foreground strong background_used overlapped
    .type = choice(multi=True)
    .help = "Spot size: shoebox pixels with all these MaskCode bits (as"
            "dials.spot_size_histogram); num_pixels.foreground without shoeboxes."
}
"""
    + selection_phil("strong")
    + INPUT_PHIL
    + output_phil(
        PROGRAM,
        extra="""
  max_images = 10000
    .type = int(value_min=10, value_max=1000000)
    .help = "Past this many images the per-image series in the JSON and the plot are"
            "binned into at most this many bins of consecutive images (10000 keeps"
            "the JSON of 10^5 stills, also inside dials.refl_stats, under 5 MB)."
""",
    ),
    process_includes=True,
)


class PerImageStatistics(Program):
    name = PROGRAM
    wants_experiments = True
    rows_per_image = True
    light_experiments = True
    uses_crystals = True
    usage = "dials.per_image_statistics [options] [imported.expt] strong.refl"
    default_flags = ("strong",)
    defers_headers = True

    def validate(self, params) -> None:
        self.code = mask_code(params.spot_size.mask_bits or [])
        if self.code == 0:
            raise Sorry("mask_bits: choose at least one MaskCode bit (e.g. foreground)")

    #: whether DIALS's per-image analysis runs (experiments and resolution_analysis)
    analysing = False

    def experiments_known(self, params, experiments) -> None:
        self.analysing = bool(experiments) and bool(params.resolution_analysis)

    def check_file(self, opened, params) -> None:
        if "xyzobs.px.value" not in opened.columns:
            raise Sorry(
                f"{opened.info.path}: no 'xyzobs.px.value' column (observed centroids, "
                "written by dials.find_spots)"
            )
        if not self.analysing:
            return
        for column in ("intensity.sum.value", "intensity.sum.variance"):
            if column not in opened.columns:
                raise Sorry(
                    f"{opened.info.path}: no '{column}' column (DIALS's per-image analysis "
                    "needs it; resolution_analysis=False skips the analysis)"
                )

    def statistic(self, run: Run) -> PerImageStatistic:
        return PerImageStatistic(mask_code=self.code, analysis=spot_analysis(run))

    def finalize(self, table: ImageTable, run: Run) -> dict:
        numbered = number_images(table, [f.info for f in run.files], run.experiment_infos)
        columns = per_image_columns(table, numbered)
        failed = None
        if table.analysis is not None:
            analysis = dict(table.analysis)
            failed = take(analysis.pop(RESOLUTION_FAILED), numbered.source_row, False)
            columns.update(analysis_columns(analysis, numbered.source_row))
        return {"numbered": numbered, "columns": columns, "table": table, "failed": failed}

    def results(self, final: dict, run: Run) -> dict:
        return self.describe(final, run, run.compact)

    def describe(self, final: dict, run: Run, compact: bool) -> dict:
        """The results, in the compact JSON form (:func:`compact_images`) when asked."""
        params = run.params
        numbered: NumberedImages = final["numbered"]
        columns = dict(final["columns"])
        isigma = columns.pop("isigma_histogram")
        shown, binned = thin_images(columns, isigma, params.output.max_images)
        if compact:
            shown = compact_images(shown)
        stills = numbered.numbering == STILL
        totals = {k: int(np.sum(columns[k])) for k in COUNT_FIELDS}
        return {
            "n_images": numbered.n_images,
            "numbering": sorted(set(numbered.numbering.tolist())),
            "binned": binned,
            "per_image": shown,
            "isigma": {
                "edges": ISIGMA_EDGES,
                "labels": ISIGMA_LABELS,
                "counts": shown.pop("isigma_histogram"),
            },
            "overall": {
                **totals,
                "fraction_indexed": totals["n_indexed"] / totals["n_selected"]
                if totals["n_selected"]
                else None,
                "total_intensity": float(np.sum(columns["total_intensity"])),
            },
            "stills": stills_summary(columns, stills, run, compact) if stills.any() else None,
            "resolution_failed": describe_failures(final["failed"], numbered),
            "definitions": DEFINITIONS
            | {"mask_bits": [MASK_NAMES[m] for m in params.spot_size.mask_bits]},
        }

    def log_results(self, final: dict, run: Run) -> None:
        failures = describe_failures(final["failed"], final["numbered"])
        if failures and failures["n_images"]:
            self.logger.warning(
                "DIALS's resolution estimates failed on %d of %d images (first: %s): %s",
                failures["n_images"],
                final["numbered"].n_images,
                failures["first"],
                FAILURE_NOTE,
            )
        columns = final["columns"]
        n = final["numbered"].n_images
        shown = n if n <= 50 or run.invocation.options.verbose else 50
        # the experiment where image numbers repeat (several sweeps, id -1 rows); without
        # experiments the file and id of several
        known = bool((columns["experiment"] >= 0).any())
        experiments = known and len(np.unique(columns["image"])) < n
        unknown = not known and any(np.any(np.diff(columns[k])) for k in ("file_index", "id"))
        lines = [
            f"{'expt ' if experiments else ''}{' file    id ' if unknown else ''}"
            f"{'image':>8} {'strong':>7} {'indexed':>7} {'%idx':>6} {'median I':>10} {'d_min':>6}"
        ]
        d_min = columns.get("estimated_d_min", np.full(n, -1.0))
        d_min = np.where(d_min > 0, d_min, np.nan)
        percent = 100 * columns["fraction_indexed"]
        for i in range(shown):
            image, strong, indexed = (columns[k][i] for k in ("image", "n_strong", "n_indexed"))
            experiment = f"{columns['experiment'][i]:4d} " if experiments else ""
            if unknown:
                experiment = f"{columns['file_index'][i]:5d} {columns['id'][i]:5d} "
            lines.append(
                f"{experiment}{image:8d} {strong:7d} {indexed:7d} "
                f"{'-' if np.isnan(percent[i]) else f'{percent[i]:5.1f}%':>6} "
                f"{_g(columns['median_intensity'][i]):>10} {_g(d_min[i]):>6}"
            )
        if shown < n:
            lines.append(f"... {n} images in all (all of them with -v, or in the JSON)")
        self.logger.info("Per-image statistics:\n%s", "\n".join(lines))

    def summary_line(self, final: dict, run: Run) -> str:
        columns = final["columns"]
        n_selected = int(columns["n_selected"].sum())
        indexed = f"{100.0 * columns['n_indexed'].sum() / n_selected:.1f}" if n_selected else "nan"
        hits = int((columns["n_strong"] >= run.params.hit.min_spots).sum())
        d_min = columns.get("estimated_d_min")
        good = d_min[d_min > 0] if d_min is not None else np.zeros(0)
        d_text = f"{np.median(good):.2f}" if good.size else "nan"
        n_images, n_spots = final["numbered"].n_images, int(columns["n_strong"].sum())
        return (
            f"Per image: images={n_images} spots={n_spots} "
            f"indexed={indexed}% hits={hits} d_min={d_text}"
        )

    def plot(self, final: dict, run: Run, path: str) -> None:
        from dials_refl_stats.plotting.per_image import per_image_figure

        document = self.describe(final, run, compact=False)
        per_image_figure(
            path, document, title=f"Per image: {run.title}", format_from=run.params.output.plot
        )


DEFINITIONS = {
    "image": "scans: image number (floor(z) + 1); stills: index in input order; "
    "no experiment: floor(z)",
    "file_index": "the image's reflection file (index into inputs.reflections); with id, "
    "it names the image's rows where no experiment is known (experiment -1)",
    "id": "the rows' id column (DIALS's experiment id within the file; -1: unassigned)",
    "n_strong": "rows with the strong flag",
    "n_selected": "rows of the selection (selection.flags); the spot statistics use these",
    "n_indexed": "selected rows with the indexed flag; fraction_indexed = n_indexed / n_selected",
    "total_intensity": "sum of intensity.sum.value of the selected rows (exact fixed point, 1/256)",
    "median_intensity": f"from a log-bucket sketch: within {SKETCH_ALPHA:.0%} of the exact median",
    "median_spot_size": "exact median of shoebox pixels with the mask bits (num_pixels.foreground "
    "without shoeboxes)",
    "dials_analysis": "n_spots_no_ice, n_spots_4A, total_intensity_no_ice and the d_min "
    "estimates are DIALS's per_image_analysis.stats_for_reflection_table on each image's "
    "selected spots, with d from the experiments' geometry (as dials.spot_counts_per_image); "
    "-1 where DIALS gives none",
}


def _g(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4g}"


def per_image_columns(table: ImageTable, numbered: NumberedImages) -> dict[str, np.ndarray]:
    """The per-image columns, one entry per numbered image."""
    rows = numbered.source_row
    file_index, ids = split_group_keys(numbered.group)
    columns = {
        "experiment": numbered.experiment,
        "file_index": file_index,
        "id": ids,
        "image": numbered.image,
        "numbering": numbered.numbering,
        **{k: take(v, rows, 0) for k, v in table.counts.items()},
        "total_intensity": take(table.total_intensity, rows, 0.0),
        "median_intensity": take(table.median_intensity, rows, np.nan),
        "median_spot_size": take(table.median_spot_size, rows, np.nan),
        "isigma_histogram": take(table.isigma_histogram, rows, 0),
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        columns["fraction_indexed"] = columns["n_indexed"] / columns["n_selected"]
    return columns


def spot_analysis(run: Run) -> DialsSpotAnalysis | None:
    """DIALS's per-image analysis for the tasks (with experiments and
    ``resolution_analysis``), with every experiment's geometry."""
    if not run.experiment_infos or not run.params.resolution_analysis:
        return None
    frames = geometry.panel_frames(run.experiments)
    if frames is None:
        raise Sorry(
            "resolution_analysis needs the detector and beam of every experiment "
            "(resolution_analysis=False skips it)"
        )
    still = tuple(info.is_still for info in run.experiment_infos)
    return DialsSpotAnalysis(frames, still)


def analysis_columns(analysis: dict[str, np.ndarray], source_row: np.ndarray) -> dict:
    """DIALS's per-image fields of every numbered image (images without spots: no spots,
    no intensity, -1 for the estimates, as DIALS gives for too few spots)."""
    return {
        name: take(values, source_row, values.dtype.type(0) if name in ZERO_FILLED else -1.0)
        for name, values in analysis.items()
    }


#: Why DIALS's resolution estimates may fail on an image, and what the image then has.
FAILURE_NOTE = (
    "DIALS's estimates are written for strong spots and fail with a math error on others "
    "(e.g. intensities <= 0 of weak integrated reflections); those images have DIALS's "
    "counts and -1 for estimated_d_min, d_min_distl_method_1/2 and noisiness_method_1/2 "
    "(selection.flags=strong, the default, gives the estimates)"
)


def describe_failures(failed: np.ndarray | None, numbered: NumberedImages) -> dict | None:
    """The images on which DIALS's resolution estimates failed (``None``: no analysis)."""
    if failed is None:
        return None
    where = np.flatnonzero(failed)
    first = None
    if where.size:
        i = int(where[0])
        image, experiment = int(numbered.image[i]), int(numbered.experiment[i])
        if numbered.numbering[i] == STILL:
            first = f"still {image} (experiment {experiment})"
        else:
            first = f"image {image} of experiment {experiment}"
    return {"n_images": int(where.size), "first": first, "note": FAILURE_NOTE}


#: DIALS's per-image fields that are 0 (not -1) on an image without spots.
ZERO_FILLED = ("n_spots_no_ice", "n_spots_4A", "total_intensity_no_ice")


#: Per-image sums: the compact form keeps their 6 significant digits.
SUMS = ("total_intensity", "total_intensity_no_ice")


def compact_images(columns: dict) -> dict:
    """The per-image table in the compact form: every column a
    :func:`~dials_refl_stats.compact.compact_column` (the sums not rounded further);
    the I/sigma histograms as they are."""
    return {
        name: values
        if name == "isigma_histogram" or values is None
        else compact_column(values, None if name in SUMS else COMPACT_DIGITS)
        for name, values in columns.items()
    }


def stills_summary(columns: dict, stills: np.ndarray, run: Run, compact: bool = False) -> dict:
    """Hit and indexing rates (overall and in a sliding window), unit cells."""
    params = run.params
    hit = columns["n_strong"][stills] >= params.hit.min_spots
    indexed = columns["n_indexed"][stills] > 0
    n = int(stills.sum())
    sliding = thin_images(
        {
            "hit_rate": sliding_rate(hit, params.window),
            "indexing_rate": sliding_rate(indexed, params.window),
        },
        None,
        params.output.max_images,
    )[0]
    if compact:
        sliding = {k: v if v is None else compact_column(v) for k, v in sliding.items()}
    return {
        "n_images": n,
        "hit_min_spots": params.hit.min_spots,
        "n_hits": int(hit.sum()),
        "hit_rate": float(hit.mean()),
        "n_indexed_images": int(indexed.sum()),
        "indexing_rate": float(indexed.mean()),
        "indexing_rate_of_hits": float(indexed[hit].mean()) if hit.any() else None,
        "window": params.window,
        "sliding": sliding,
        "unit_cells": cell_histograms(
            crystal_cells(run.experiments, run.invocation.experiment_paths)
        )
        if run.experiment_infos
        else None,
    }


def crystal_cells(experiments, paths: Sequence[str]) -> np.ndarray:
    """Unit-cell parameters of every experiment's crystal (indexed stills), ``(n, 6)``;
    a ``Sorry`` naming the experiment files for a cell that is not finite (a crystal
    vector of inf or NaN in a hand-edited file: no histogram can hold it)."""
    with_crystal = [(i, e.crystal) for i, e in enumerate(experiments) if e.crystal is not None]
    cells = [c.get_unit_cell().parameters() for _i, c in with_crystal]
    cells = np.array(cells, dtype=np.float64).reshape(-1, 6)
    finite = np.isfinite(cells).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        cell = ", ".join(f"{v:.6g}" for v in cells[row])
        raise Sorry(
            f"{', '.join(paths)}: the crystal of experiment {with_crystal[row][0]} has a unit "
            f"cell that is not finite ({cell})"
        )
    return cells


#: The program, for dials.refl_stats (which runs every program's statistic in one pass).
PROGRAM_CLASS = PerImageStatistics


@dials.util.show_mail_handle_errors()
def run(args=None, *, phil=phil_scope) -> None:
    run_program(PerImageStatistics(), args, phil, help_message)
