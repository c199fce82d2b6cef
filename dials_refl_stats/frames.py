"""From reflection z coordinates to frame numbers, using each experiment's scan.

DIALS side of ``dials.intensity_per_frame``: finds the experiment of each group of rows
(by experiment identifier, else by ``id`` as an index into the experiment list),
decides how its frames are numbered, and collects the rows into series (one frame axis
each: an experiment's scan, or all stills of a file) with :class:`SeriesCatalogue`.
The arithmetic itself is pure numpy (:mod:`dials_refl_stats.analysis.intensity_per_frame`).
dxtbx models are only used through the objects the caller passes in (never imported
here).

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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from dials_refl_stats.analysis.grouping import group_by_index
from dials_refl_stats.analysis.intensity_per_frame import image_numbers, z_floor_frames
from dials_refl_stats.experiment_groups import identifier_index

if TYPE_CHECKING:
    from dials_refl_stats.experiment_groups import ExperimentGroup

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
    index_of_identifier = identifier_index(experiments)  # once per run, not per file
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


@dataclass
class Series:
    """Rows numbered on one frame axis: an experiment's scan, a file's stills, ..."""

    label: str
    numbering: str
    groups: list[ExperimentGroup] = field(default_factory=list)
    image_range: tuple[int, int] | None = None

    def describe(self, n_files: int) -> dict:
        return {
            "label": self.label,
            "numbering": self.numbering,
            "experiments": [g.describe(n_files) for g in self.groups],
            "image_range": list(self.image_range) if self.image_range else None,
        }


@dataclass(frozen=True)
class FileFrames:
    """One file's rows on their frame axes (``frames``/``series`` meaningful where used)."""

    frames: np.ndarray  # per row: frame number (0 for unused rows)
    series: np.ndarray  # per row: index into SeriesCatalogue.series (-1 unused)
    axes: dict[int, FrameAxis]  # by experiment id present in the used rows


class SeriesCatalogue:
    """The series of a run, in order of first appearance over the files.

    Every experiment with a scan (and the rows with ``id`` -1, or every experiment
    without experiments given) is a series of its own; all stills of one file share one.
    """

    def __init__(self, n_files: int):
        self.n_files = n_files
        self.series: list[Series] = []
        self._index: dict[tuple, int] = {}

    def add_file(
        self,
        file_index: int,
        experiments: Sequence[Any] | None,
        identifiers: dict[int, str],
        ids: np.ndarray,
        z: np.ndarray,
        used: np.ndarray,
        path: str,
    ) -> FileFrames:
        """Frame number and series of every ``used`` row of one file.

        Raises :class:`ExperimentMatchError` when rows match no experiment given. Rows
        are grouped by ``id`` with one sort (stills files hold thousands of experiments).
        """
        from dials_refl_stats.experiment_groups import ExperimentGroup, distinct_ids

        ids = np.asarray(ids)
        z = np.asarray(z, dtype=np.float64)
        rows = np.flatnonzero(used)
        present, inverse = distinct_ids(ids[rows])
        grouping = group_by_index(inverse, present.size)
        axes = frame_axes(experiments, identifiers, present, path, self.n_files)
        frames = np.zeros(ids.size, dtype=np.int64)
        series = np.full(ids.size, -1, dtype=np.int64)
        series_of_id = np.empty(present.size, dtype=np.int64)
        for number, (i, members) in enumerate(zip(present, grouping)):
            axis = axes[int(i)]
            these = rows[members]
            frames[these] = axis.frames(z[these])
            group = ExperimentGroup(file_index, int(i), identifiers.get(int(i)))
            series_of_id[number] = self._series_of(file_index, group, axis)
        series[rows] = series_of_id[grouping.inverse]
        return FileFrames(frames=frames, series=series, axes=axes)

    def _series_of(self, file_index: int, group: ExperimentGroup, axis: FrameAxis) -> int:
        stills = axis.numbering == EXPERIMENT_INDEX
        key = (file_index, "stills") if stills else (file_index, group.id)
        if key not in self._index:
            label = "stills" if stills else group.label(1)
            if self.n_files > 1:
                label = f"file {file_index}: {label}"
            self._index[key] = len(self.series)
            self.series.append(Series(label, axis.numbering, image_range=axis.image_range))
        self.series[self._index[key]].groups.append(group)
        return self._index[key]
