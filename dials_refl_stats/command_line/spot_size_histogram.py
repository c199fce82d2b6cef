"""dials.spot_size_histogram: how big are my spots, in signal pixels?"""

from __future__ import annotations

import dials.util
import libtbx
import libtbx.phil
import numpy as np

from dials_refl_stats.analysis.distribution import ascii_histogram
from dials_refl_stats.analysis.spot_size import (
    MASK_NAMES,
    NUM_PIXELS,
    GroupedSizes,
    SpotSizeStatistic,
    mask_code,
)
from dials_refl_stats.analysis.statistic import split_group_keys
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.group_columns import experiment_columns, value_columns
from dials_refl_stats.pipeline.phil import (
    INPUT_PHIL,
    make_binning,
    output_phil,
    selection_phil,
)
from dials_refl_stats.pipeline.program import Program, Run, run_program

PROGRAM = "spot_size_histogram"

help_message = """
Histogram of spot sizes: the number of shoebox pixels carrying the chosen mask bits
(default Foreground, as the DIALS tutorial script does) for each selected reflection.
Tables without shoeboxes (dials.integrate output) use the num_pixels.foreground column.

Writes spot_size_histogram.json (slot edges, centres and counts, values outside the
range, summary statistics, per experiment) and spot_size_histogram.png.

Examples::

  dials.spot_size_histogram indexed.refl

  dials.spot_size_histogram indexed.expt indexed.refl n_slots=50 data_max=200

  dials.spot_size_histogram strong.refl selection.flags=all mask_bits=valid+foreground

  dials.spot_size_histogram integrated.refl source=num_pixels selection.flags=integrated_sum

  dials.spot_size_histogram indexed.refl data_max=Auto log_y=True plot=sizes.svg
"""


phil_scope = libtbx.phil.parse(
    """
spot_size
  .help = "How a spot's size is measured."
{
  source = *auto shoebox num_pixels
    .type = choice
    .help = "auto: count shoebox mask pixels when the table has shoeboxes, else use"
            "num_pixels.foreground (written by dials.integrate)."
  mask_bits = valid background *foreground strong background_used overlapped
    .type = choice(multi=True)
    .help = "Shoebox pixels with ALL these MaskCode bits are counted. foreground is"
            "the DIALS tutorial's choice (MaskCode.Foreground); dials.find_spots"
            "counts valid+foreground (Valid|Foreground)."
}
histogram
  .help = "Histogram slots; the defaults reproduce flex.histogram(sizes, 0, 1000, 100)."
{
  data_min = 0
    .type = float
    .help = "Lower edge of the first slot. Auto: the smallest size."
  data_max = 1000
    .type = float
    .help = "Upper edge of the last slot. Auto: the largest size."
  n_slots = 100
    .type = int(value_min=1, value_max=100000)
}
"""
    + selection_phil("indexed")
    + INPUT_PHIL
    + output_phil(
        PROGRAM,
        extra="""
  log_y = False
    .type = bool
    .help = "Logarithmic count axis in the plot."
  experiment_histograms = Auto
    .type = bool
    .help = "Write a histogram per experiment to the JSON. Auto: when there are at"
            "most 10 experiments (per-experiment summaries are always written, as"
            "column arrays)."
""",
    ),
    process_includes=True,
)


#: Per-experiment histograms in the JSON by default up to this many experiments.
MAX_AUTO_HISTOGRAMS = 10


class SpotSizeHistogram(Program):
    name = PROGRAM
    light_experiments = True
    usage = "dials.spot_size_histogram [options] [indexed.expt] indexed.refl"
    default_flags = ("indexed",)
    defers_headers = True

    def validate(self, params) -> None:
        self.binning = make_binning(params.histogram)
        self.code = mask_code(params.spot_size.mask_bits or [])
        if self.code == 0:
            raise Sorry("mask_bits: choose at least one MaskCode bit (e.g. foreground)")

    def check_file(self, opened, params) -> None:
        columns, path = opened.columns, opened.info.path
        requested = params.spot_size.source
        if requested == "shoebox" and "shoebox" not in columns:
            raise Sorry(
                f"{path}: no 'shoebox' column for source=shoebox "
                "(dials.find_spots and dials.index keep shoeboxes; dials.integrate drops them)"
            )
        if requested == "num_pixels" and NUM_PIXELS not in columns:
            raise Sorry(
                f"{path}: no '{NUM_PIXELS}' column for source=num_pixels "
                "(it is written by dials.integrate)"
            )
        if "shoebox" not in columns and NUM_PIXELS not in columns:
            raise Sorry(
                f"{path}: neither a 'shoebox' nor a '{NUM_PIXELS}' column, so no spot sizes"
                " (use strong.refl/indexed.refl with shoeboxes, or integrated.refl)"
            )

    def statistic(self, run: Run) -> SpotSizeStatistic:
        return SpotSizeStatistic(self.code, run.params.spot_size.source, self.binning)

    def results(self, final: GroupedSizes, run: Run) -> dict:
        params = run.params
        wanted = params.output.experiment_histograms
        n_groups = int(final.groups.size)
        with_histograms = (
            n_groups <= MAX_AUTO_HISTOGRAMS if wanted in (None, libtbx.Auto) else wanted
        )
        columns = final.summary_columns()
        per_experiment = {
            **describe_groups(final.groups, run, run.compact),
            **value_columns(
                {
                    "n": columns["n"],
                    "n_without_shoebox_pixels": final.n_without_pixels,
                    **{key: columns[key] for key in ("mean", "median", "min", "max", "std")},
                },
                run.compact,
            ),
        }
        return {
            **describe_size_definition(final.sources, params.spot_size.mask_bits, self.code),
            "overall": final.overall.as_dict(),
            "per_experiment": per_experiment,
            "per_experiment_histograms": (
                [
                    {"label": label, **d.histogram.as_dict()}
                    for label, d in zip(
                        describe_groups(final.groups, run)["label"], final.result.groups
                    )
                ]
                if with_histograms
                else None
            ),
        }

    def log_results(self, final: GroupedSizes, run: Run) -> None:
        logger = self.logger
        logger.info(
            "Spot size histogram (all selected reflections):\n%s",
            ascii_histogram(final.overall.histogram),
        )
        n_missing = int(final.n_without_pixels.sum())
        if n_missing:
            logger.warning(
                "%d selected reflections have no shoebox pixels allocated; they are left out",
                n_missing,
            )
        n_groups = len(final.groups)
        if 1 < n_groups:
            every = n_groups <= 20 or run.invocation.options.verbose
            shown = describe_groups(final.groups if every else final.groups[:20], run)["label"]
            columns = final.summary_columns()
            for label, n, median in zip(shown, columns["n"], columns["median"]):
                logger.info("  %s: n=%d median=%s", label, n, _g(None if n == 0 else median))
            if len(shown) < n_groups:
                logger.info("  ... %d experiments in all (all of them with -v)", n_groups)

    def summary_line(self, final: GroupedSizes, run: Run) -> str:
        summary = final.overall.summary
        mean = "nan" if summary.mean is None else f"{summary.mean:.1f}"
        source = "+".join(sorted(final.sources)) or "none"
        return f"Spot size: n={summary.n} mean={mean} median={_g(summary.median)} source={source}"

    def plot(self, final: GroupedSizes, run: Run, path: str) -> None:
        from dials_refl_stats.plotting.histogram import histogram_bars

        params = run.params
        overlay = 1 < len(final.groups) <= 8
        labels = describe_groups(final.groups, run)["short_label"] if overlay else []
        bars = (
            list(zip(labels, [d.histogram for d in final.result.groups]))
            if overlay
            else [("all selected", final.overall.histogram)]
        )
        bits = "|".join(MASK_NAMES[name] for name in params.spot_size.mask_bits)
        measures = []
        if "shoebox" in final.sources:
            measures.append(f"shoebox pixels with mask {bits}")
        if NUM_PIXELS in final.sources:
            measures.append(NUM_PIXELS)
        title = run.title
        summary = final.overall.summary
        if summary.n:
            title += f" (n={summary.n}, median={summary.median:g})"
        histogram_bars(
            path,
            bars,
            title=f"Spot sizes: {title}",
            xlabel=f"Spot size (pixels: {' / '.join(measures) or 'none'})",
            log_y=params.output.log_y,
            format_from=params.output.plot,
        )


def _g(value) -> str:
    return "nan" if value is None else f"{value:g}"


def describe_groups(keys: np.ndarray, run: Run, compact: bool = False) -> dict:
    """Column arrays describing each group key: file, id, identifier, experiment, labels
    (the identifier has its own column: UUIDs make poor labels); see
    :func:`~dials_refl_stats.pipeline.group_columns.experiment_columns`."""
    file_index, ids = (column.tolist() for column in split_group_keys(keys))
    # the compact form has no identifiers; without experiments no experiment_index
    with_experiments = bool(run.experiment_infos)
    infos = [run.files[f].info for f in file_index] if with_experiments or not compact else []
    identifiers = [] if compact else [info.identifiers.get(i) for info, i in zip(infos, ids)]
    experiment_index = (
        [info.experiment_of_id.get(i) for info, i in zip(infos, ids)]
        if with_experiments
        else [None] * len(ids)
    )
    return experiment_columns(
        file_index, ids, identifiers, experiment_index, len(run.files), compact
    )


def describe_size_definition(sources, mask_bits, code: int) -> dict:
    """What "spot size" means in this run, for the JSON."""
    definition = {"size_source": sorted(sources)}
    if "shoebox" in sources:
        definition.update(
            mask_bits=[MASK_NAMES[name] for name in mask_bits],
            mask_code=code,
            shoebox_rule=(
                "number of shoebox pixels whose mask has all bits of mask_code set "
                "(flex.shoebox.count_mask_values(mask_code)); rows without allocated "
                "shoebox pixels are left out"
            ),
        )
    if NUM_PIXELS in sources:
        definition["num_pixels_rule"] = (
            "num_pixels.foreground column written by dials.integrate "
            "(valid foreground pixels of the integration shoebox)"
        )
    definition["exactness"] = "exact: partials are value counts per experiment, merged by addition"
    return definition


#: The program, for dials.refl_stats (which runs every program's statistic in one pass).
PROGRAM_CLASS = SpotSizeHistogram


@dials.util.show_mail_handle_errors()
def run(args=None, *, phil=phil_scope) -> None:
    run_program(SpotSizeHistogram(), args, phil, help_message)
