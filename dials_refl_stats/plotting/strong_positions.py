"""dials.strong_reflection_positions' figure: the plotting views of its results
(joined rows, or what the tasks binned) drawn by :mod:`.detector`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from dials_refl_stats import geometry
from dials_refl_stats.plotting.detector import (
    positions_view,
    shell_view,
    strong_positions_figure,
)

if TYPE_CHECKING:
    from dials_refl_stats.results.strong_positions import Computed


def plot(path: str, computed: Computed, lab_experiments, names: str, criteria, params) -> None:
    """Positions in panel pixels, or in the lab frame for ``lab_experiments`` (a
    multi-panel detector); strong fraction per resolution shell. ``names``: the inputs,
    for the title."""

    if computed.merged is not None:
        view = merged_view(computed, lab_experiments)
    else:
        view = legacy_view(computed, lab_experiments)
    label = f"{criteria.label()}, intensity.{params.intensity.choice}"
    strong_positions_figure(
        path,
        view,
        shell_view(computed.stats.shells, computed.d_source),
        title=f"Strong reflections ({label}): {names}",
        strong_label=criteria.label(),
        format_from=params.output.plot,
    )


def with_extent_note(view, computed: Computed):
    """``view``, its extent note saying so when different detectors share the panels."""
    if computed.n_detectors <= 1:
        return view
    note = (
        f"extent: largest panel of {computed.n_detectors} different detectors, "
        "their positions overlaid"
    )
    return dataclasses.replace(view, extent_note=note)


def legacy_view(computed: Computed, lab_experiments):
    """The plot's view of the rows joined here."""
    view = positions_view(
        computed.xyz[:, :2],
        computed.stats.selection.strong,
        computed.image_sizes,
        computed.beam_centres,
        lab=None if lab_experiments is None else computed.positions.lab,
        lab_outlines=None if lab_experiments is None else geometry.lab_outlines(lab_experiments),
        panel=computed.panel,
        experiment=computed.experiment,
        extent_from_data=computed.n_detectors == 0,
    )
    return with_extent_note(view, computed)


def merged_view(computed: Computed, lab_experiments):
    """The plot's view of what the tasks binned: densities, and points while few."""
    plot = computed.merged.plot
    view = positions_view(
        np.zeros((0, 2)),
        np.zeros(0, dtype=bool),
        computed.image_sizes,
        computed.beam_centres,
        lab=None if lab_experiments is None else np.zeros((0, 3)),
        lab_outlines=None if lab_experiments is None else geometry.lab_outlines(lab_experiments),
        panel=np.zeros(0, dtype=np.int64),
        experiment=np.zeros(0, dtype=np.int64),
        extent_from_data=computed.n_detectors == 0,
    )
    view = with_extent_note(view, computed)
    empty = np.zeros((0, 2))
    n_experiments = computed.merged.max_experiment + 1
    return dataclasses.replace(
        view,
        all_xy=empty if plot.all_points.xy is None else plot.all_points.xy,
        strong_xy=empty if plot.strong_points.xy is None else plot.strong_points.xy,
        all_experiment=plot.all_points.experiment,
        strong_experiment=plot.strong_points.experiment,
        experiment_labels=[f"expt {k}" for k in range(n_experiments)],
        all_density=plot.all_density,
        strong_density=plot.strong_density,
        n_all=plot.all_points.n,
        n_strong=plot.strong_points.n,
    )
