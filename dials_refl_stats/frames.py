"""From reflection z coordinates to frame numbers, using each experiment's scan.

DIALS side of ``dials.intensity_per_frame``: finds the experiment of each group of rows
(by experiment identifier, else by ``id`` as an index into the experiment list) and
decides how its frames are numbered. The arithmetic itself is pure numpy
(:mod:`dials_refl_stats.analysis.intensity_per_frame`). dxtbx models are only used
through the objects the caller passes in (never imported here).

Numbering kinds (recorded as ``numbering`` in the JSON):

``image_number``
    The experiment has a scan: image number = floor(z) + 1 (array coordinates; the scan
    with images first..last has array range (first - 1, last), image k covers z in
    [k - 1, k)). Correct for scans starting at image 0 (dials/dials#1153).
``experiment_index``
    Stills (no scan): every reflection of an experiment is on that experiment's one
    image; the frame is the experiment's index in the experiment list.
``z_floor``
    No experiment known (no .expt given, or rows with id -1): frame = floor(z), the
    0-based array frame. For a DIALS scan this is image number - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dials_refl_stats.analysis.intensity_per_frame import image_numbers, z_floor_frames

IMAGE_NUMBER = "image_number"
EXPERIMENT_INDEX = "experiment_index"
Z_FLOOR = "z_floor"

NUMBERING_RULES = {
    IMAGE_NUMBER: (
        "image number from the experiment's scan: floor(z) + 1, z in array coordinates "
        "(scan array range is (first_image - 1, last_image); image k covers z in [k-1, k))"
    ),
    EXPERIMENT_INDEX: (
        "stills (no scan): one image per experiment; frame = the experiment's index "
        "in the experiment list"
    ),
    Z_FLOOR: (
        "no experiment (scan) known: frame = floor(z), the 0-based array frame "
        "(image number - 1 for a DIALS scan); give the .expt file for image numbers"
    ),
}

AXIS_LABELS = {
    IMAGE_NUMBER: "Image number",
    EXPERIMENT_INDEX: "Experiment (still image) index",
    Z_FLOOR: "Frame = floor(z) (no scan known)",
}


class ExperimentMatchError(ValueError):
    """Rows that cannot be matched to the experiments given (one-line message)."""


@dataclass(frozen=True)
class FrameAxis:
    """How the frames of one group of rows are numbered."""

    numbering: str
    experiment_index: int | None = None
    image_range: tuple[int, int] | None = None

    def frames(self, z: np.ndarray) -> np.ndarray:
        if self.numbering == IMAGE_NUMBER:
            return image_numbers(z, self.image_range[0])
        if self.numbering == EXPERIMENT_INDEX:
            return np.full(np.shape(z), self.experiment_index, dtype=np.int64)
        return z_floor_frames(z)

    def outside_scan(self, frames: np.ndarray) -> np.ndarray:
        """Rows whose image number is not one of the scan's images."""
        if self.image_range is None:
            return np.zeros(np.shape(frames), dtype=bool)
        first, last = self.image_range
        return (frames < first) | (frames > last)


def axis_for_experiment(experiment: Any, index: int) -> FrameAxis:
    """The :class:`FrameAxis` of a dxtbx experiment (``index`` in its list)."""
    scan = experiment.scan
    if scan is None or scan.get_num_images() < 1:
        return FrameAxis(EXPERIMENT_INDEX, experiment_index=index)
    first, last = scan.get_image_range()
    return FrameAxis(IMAGE_NUMBER, experiment_index=index, image_range=(int(first), int(last)))


def frame_axes(
    experiments: Sequence[Any] | None,
    identifiers: dict[int, str],
    ids: Sequence[int],
    path: str,
    n_files: int = 1,
) -> dict[int, FrameAxis]:
    """A :class:`FrameAxis` for every experiment ``id`` in ``ids`` of one file.

    Rows are matched to experiments by identifier when the table has identifiers,
    otherwise by ``id`` as an index into ``experiments`` (one reflection file only).
    ``id`` -1 (no experiment) is numbered by ``z_floor``.
    """
    if not experiments:
        return {int(i): FrameAxis(Z_FLOOR) for i in ids}
    index_of_identifier = {e.identifier: n for n, e in enumerate(experiments) if e.identifier}
    axes = {}
    for i in (int(i) for i in ids):
        if i < 0:
            axes[i] = FrameAxis(Z_FLOOR)
            continue
        identifier = identifiers.get(i)
        if identifier:
            if identifier not in index_of_identifier:
                raise ExperimentMatchError(
                    f"{path}: experiment identifier {identifier} (id {i}) is not in the "
                    "experiment list given (pass the matching .expt file)"
                )
            index = index_of_identifier[identifier]
        else:
            if n_files > 1:
                raise ExperimentMatchError(
                    f"{path}: the table has no experiment identifiers, so its rows cannot "
                    "be matched to experiments when several reflection files are given"
                )
            if i >= len(experiments):
                raise ExperimentMatchError(
                    f"{path}: reflections with id {i} but only {len(experiments)} "
                    "experiment(s) given (pass the matching .expt file)"
                )
            index = i
        axes[i] = axis_for_experiment(experiments[index], index)
    return axes
