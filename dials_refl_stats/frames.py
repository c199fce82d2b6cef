"""The frame numberings of ``dials.intensity_per_frame``: names, rules and axis labels.

The tasks number the rows and collect them into series (one frame axis each: an
experiment's scan, or all stills of a file) in
:mod:`dials_refl_stats.analysis.intensity_frames`, from each experiment's image range
(``ExperimentInfo.image_range``: a scan of at least one image that is not a still).

Numbering kinds (recorded as ``numbering`` in the JSON):

``image_number``
    The experiment has a scan: image number = floor(z) + 1 (array coordinates; the scan
    with images first..last has array range (first - 1, last), image k covers z in
    [k - 1, k)). Correct for scans starting at image 0 (dials/dials#1153).
``experiment_index``
    Stills (no scan, or a one-image scan without oscillation): every reflection of an
    experiment is on that experiment's one image; the frame is the experiment's index in
    the experiment list.
``z_floor``
    No experiment known (no .expt given, or rows with id -1): frame = floor(z), the
    0-based array frame. For a DIALS scan this is image number - 1.
"""

from __future__ import annotations

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
