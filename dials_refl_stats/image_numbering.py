"""Per-image tables on image numbers: scans, stills in input order, or bare frames.

Turns an :class:`~dials_refl_stats.analysis.per_image.ImageTable` (keyed by file,
experiment id and frame = floor(z)) into rows labelled the way DIALS users read them:

* an experiment with a scan: image number = frame + 1, and every image of the scan is
  listed, also those without any reflection (as ``dials.spot_counts_per_image`` does);
* stills (an experiment without a scan): one image per experiment, numbered in input
  order (file, then experiment id) across all files;
* no experiment known: frame = floor(z), 0-based.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_refl_stats.analysis.per_image import ImageTable, locate
from dials_refl_stats.analysis.statistic import ExperimentInfo, FileInfo, split_group_keys

IMAGE_NUMBER, STILL, FRAME = "image_number", "still", "z_floor"


@dataclass
class NumberedImages:
    """One row per image: which series and image, and where it is in the table."""

    group: np.ndarray  # group key (file, id)
    frame: np.ndarray  # floor(z) of the table
    image: np.ndarray  # image number (scans), still index (stills) or frame
    numbering: np.ndarray  # IMAGE_NUMBER / STILL / FRAME per row
    experiment: np.ndarray  # experiment index, -1 unknown
    source_row: np.ndarray  # row of the ImageTable, -1 for an image without rows

    @property
    def n_images(self) -> int:
        return int(self.group.size)


def number_images(
    table: ImageTable, files: list[FileInfo], experiments: list[ExperimentInfo]
) -> NumberedImages:
    """Image numbers for every row of ``table`` plus the empty images of each scan."""
    group, frame = [], []  # every image of every scan, also those without rows
    if any(info.image_range is not None for info in experiments):
        present = set(zip(np.asarray(table.group).tolist(), np.asarray(table.frame).tolist()))
        for file in files:
            for identifier, index in file.experiment_of_id.items():
                info = experiments[index]
                if info.image_range is None:
                    continue
                key = int(file.group_keys(np.array([identifier]))[0])
                first, last = info.image_range
                for f in range(first - 1, last):
                    if (key, f) not in present:
                        group.append(key)
                        frame.append(f)
    group = np.concatenate([np.asarray(table.group, dtype=np.int64), np.array(group, np.int64)])
    frame = np.concatenate([np.asarray(table.frame, dtype=np.int64), np.array(frame, np.int64)])
    file_of, id_of = split_group_keys(group)
    experiment = np.full(group.size, -1, dtype=np.int64)
    if experiments:
        experiment[:] = [
            files[f].experiment_of_id.get(i, -1) for f, i in zip(file_of.tolist(), id_of.tolist())
        ]
    is_still = np.array([info.image_range is None for info in experiments] or [False])
    still = (experiment >= 0) & is_still[np.maximum(experiment, 0)]
    numbering = np.where(experiment >= 0, np.where(still, STILL, IMAGE_NUMBER), FRAME)
    image = np.where(numbering == IMAGE_NUMBER, frame + 1, frame)
    # stills: one image per (file, id), numbered in input order
    still_keys = np.unique(group[still])
    image[still] = np.searchsorted(still_keys, group[still])
    order = np.lexsort((image, group))
    source_row = np.full(group.size, -1, dtype=np.int64)
    n_table = table.group.size
    source_row[:n_table] = np.arange(n_table)
    if n_table:
        source_row[:n_table] = locate(table.group, table.frame, group[:n_table], frame[:n_table])
    return NumberedImages(
        group=group[order],
        frame=frame[order],
        image=image[order],
        numbering=numbering[order],
        experiment=experiment[order],
        source_row=source_row[order],
    )


def take(values: np.ndarray, source_row: np.ndarray, fill) -> np.ndarray:
    """``values`` of each numbered image (``fill`` for images without rows)."""
    values = np.asarray(values)
    out = np.full(
        (source_row.size, *values.shape[1:]), fill, dtype=np.result_type(values, type(fill))
    )
    has = source_row >= 0
    out[has] = values[source_row[has]]
    return out
