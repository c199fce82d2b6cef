"""From reflection z coordinates to frame numbers, using each experiment's scan.

DIALS side of ``dials.intensity_per_frame``: how an experiment's frames are numbered
(:func:`axis_for_experiment`), and the names and rules of the numberings. The tasks
number the rows and collect them into series (one frame axis each: an experiment's scan,
or all stills of a file) in :mod:`dials_refl_stats.analysis.intensity_frames`. dxtbx
models are only used through the objects the caller passes in (never imported here).

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

from typing import Any

from dials_refl_stats.analysis.intensity_frames import NUMBERING_NAMES

IMAGE_NUMBER, EXPERIMENT_INDEX, Z_FLOOR = NUMBERING_NAMES

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


def scan_image_range(experiment: Any) -> tuple[int, int] | None:
    """The image range of a dxtbx experiment's scan (``None``: a still, no images)."""
    scan = experiment.scan
    if scan is None or scan.get_num_images() < 1:
        return None
    first, last = scan.get_image_range()
    return int(first), int(last)
