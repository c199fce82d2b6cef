"""dials.spot_size_histogram: how big are my spots, in signal pixels?"""

from __future__ import annotations

import logging
import os

import dials.util
import libtbx.phil
import numpy as np
from dials.util import Sorry

from dials_refl_stats.analysis.distribution import ascii_histogram
from dials_refl_stats.analysis.spot_size import (
    MASK_NAMES,
    mask_code,
    spot_size_distributions,
)
from dials_refl_stats.program import (
    Invocation,
    group_rows_by_experiment,
    load_reflection_sources,
    make_binning,
    make_flag_selection,
    output_phil,
    parse_command_line,
    require_plot_format,
    selection_phil,
    start_logging,
    write_outputs,
)

PROGRAM = "spot_size_histogram"
logger = logging.getLogger(f"dials.{PROGRAM}")

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

SHOEBOX = "shoebox"
NUM_PIXELS = "num_pixels.foreground"

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
    .type = int
}
"""
    + selection_phil("indexed")
    + output_phil(
        PROGRAM,
        extra="""
  log_y = False
    .type = bool
    .help = "Logarithmic count axis in the plot."
""",
    ),
    process_includes=True,
)


def choose_size_source(columns: frozenset[str], requested: str, path: str) -> str:
    """The column spot sizes come from: ``shoebox`` or ``num_pixels.foreground``."""
    if requested == "shoebox" and SHOEBOX not in columns:
        raise Sorry(
            f"{path}: no '{SHOEBOX}' column for source=shoebox "
            "(dials.find_spots and dials.index keep shoeboxes; dials.integrate drops them)"
        )
    if requested == "num_pixels" and NUM_PIXELS not in columns:
        raise Sorry(
            f"{path}: no '{NUM_PIXELS}' column for source=num_pixels "
            "(it is written by dials.integrate)"
        )
    if requested == "auto":
        if SHOEBOX in columns:
            return SHOEBOX
        if NUM_PIXELS in columns:
            return NUM_PIXELS
        raise Sorry(
            f"{path}: neither a '{SHOEBOX}' nor a '{NUM_PIXELS}' column, so no spot sizes"
            " (use strong.refl/indexed.refl with shoeboxes, or integrated.refl)"
        )
    return SHOEBOX if requested == "shoebox" else NUM_PIXELS


@dials.util.show_mail_handle_errors()
def run(args=None, *, phil=phil_scope) -> None:
    usage = "dials.spot_size_histogram [options] [indexed.expt] indexed.refl"
    invocation = parse_command_line(args, phil, usage, help_message)
    if invocation is None:
        return
    params = invocation.params
    binning = make_binning(params.histogram)
    flag_selection = make_flag_selection(params.selection)
    require_plot_format(params.output.plot)
    code = mask_code(params.spot_size.mask_bits)
    if code == 0:
        raise Sorry("mask_bits: choose at least one MaskCode bit (e.g. Foreground)")
    sources = load_reflection_sources(invocation.reflection_paths, params.reader)
    size_sources = [
        choose_size_source(s.column_names, params.spot_size.source, s.path) for s in sources
    ]

    start_logging(invocation, PROGRAM)
    sizes, group_of_row, groups, per_file = [], [], [], []
    for index, (source, size_source) in enumerate(zip(sources, size_sources)):
        selected = flag_selection.apply(source.column("flags"))
        record = {
            "path": source.path,
            "size_source": size_source,
            "n_rows": source.nrows,
            "n_flag_selected": int(selected.sum()),
        }
        if size_source == SHOEBOX:
            counts, allocated = source.shoebox_mask_counts(code)
            record["n_without_shoebox_pixels"] = int((selected & ~allocated).sum())
            selected &= allocated
        else:
            counts = source.column(NUM_PIXELS)
        record["n_selected"] = int(selected.sum())
        per_file.append(record)
        ids = source.column("id")[selected]
        file_groups, rows_group = group_rows_by_experiment(index, source.identifiers, ids)
        sizes.append(counts[selected])
        group_of_row.append(rows_group + len(groups))
        groups.extend(file_groups)
        logger.info(
            "%s: %d of %d reflections selected (%s), spot sizes from %s",
            source.path,
            record["n_selected"],
            source.nrows,
            ", ".join(flag_selection.names) or "all",
            size_source,
        )
        if record.get("n_without_shoebox_pixels"):
            logger.warning(
                "%s: %d selected reflections have no shoebox pixels allocated; they are left out",
                source.path,
                record["n_without_shoebox_pixels"],
            )

    all_sizes = np.concatenate(sizes)
    result = spot_size_distributions(all_sizes, np.concatenate(group_of_row), len(groups), binning)
    n_total = sum(s.nrows for s in sources)
    if all_sizes.size == 0:
        logger.warning(
            "No reflections selected (selection.flags=%s, rule=%s): the histogram is empty",
            ",".join(flag_selection.names),
            flag_selection.rule,
        )
    report(result, groups, len(sources))

    definition = describe_size_definition(size_sources, params.spot_size.mask_bits, code)
    results = {
        **definition,
        "overall": result.overall.as_dict(),
        "per_experiment": [
            {"experiment": g.describe(len(sources)), **d.as_dict()}
            for g, d in zip(groups, result.groups)
        ],
    }
    selection = {
        **flag_selection.describe(),
        "n_rows": n_total,
        "n_selected": int(all_sizes.size),
        "files": per_file,
    }
    write_outputs(
        invocation,
        sources,
        program=PROGRAM,
        selection=selection,
        results=results,
        plot=lambda path: plot_histograms(path, result, groups, invocation, params, size_sources),
    )
    summary = result.overall.summary
    logger.info(
        "Spot size: n=%d mean=%s median=%s source=%s",
        summary.n,
        "nan" if summary.mean is None else f"{summary.mean:.1f}",
        "nan" if summary.median is None else f"{summary.median:g}",
        "+".join(sorted(set(size_sources))),
    )


def describe_size_definition(size_sources: list[str], mask_bits, code: int) -> dict:
    """What "spot size" means in this run, for the JSON."""
    definition = {"size_source": sorted(set(size_sources))}
    if SHOEBOX in size_sources:
        definition.update(
            mask_bits=[MASK_NAMES[name] for name in mask_bits],
            mask_code=code,
            shoebox_rule=(
                "number of shoebox pixels whose mask has all bits of mask_code set "
                "(flex.shoebox.count_mask_values(mask_code)); rows without allocated "
                "shoebox pixels are left out"
            ),
        )
    if NUM_PIXELS in size_sources:
        definition["num_pixels_rule"] = (
            "num_pixels.foreground column written by dials.integrate "
            "(valid foreground pixels of the integration shoebox)"
        )
    return definition


def report(result, groups, n_files: int) -> None:
    """ASCII histogram(s) and per-experiment summaries in the log."""
    logger.info(
        "Spot size histogram (all selected reflections):\n%s",
        ascii_histogram(result.overall.histogram),
    )
    if len(groups) > 1:
        for group, dist in zip(groups, result.groups):
            s = dist.summary
            logger.info(
                "  %s: n=%d median=%s",
                group.label(n_files),
                s.n,
                "nan" if s.median is None else f"{s.median:g}",
            )


def plot_histograms(
    path: str, result, groups, invocation: Invocation, params, size_sources: list[str]
) -> None:
    from dials_refl_stats.plotting.histogram import histogram_bars

    names = ", ".join(os.path.basename(p) for p in invocation.reflection_paths)
    overlay = 1 < len(groups) <= 8
    bars = (
        [
            (g.label(len(invocation.reflection_paths)), d.histogram)
            for g, d in zip(groups, result.groups)
        ]
        if overlay
        else [("all selected", result.overall.histogram)]
    )
    bits = "|".join(MASK_NAMES[name] for name in params.spot_size.mask_bits)
    measures = []
    if SHOEBOX in size_sources:
        measures.append(f"shoebox pixels with mask {bits}")
    if NUM_PIXELS in size_sources:
        measures.append(NUM_PIXELS)
    summary = result.overall.summary
    if summary.n:
        names += f" (n={summary.n}, median={summary.median:g})"
    histogram_bars(
        path,
        bars,
        title=f"Spot sizes: {names}",
        xlabel=f"Spot size (pixels: {' / '.join(measures)})",
        log_y=params.output.log_y,
        format_from=params.output.plot,
    )
