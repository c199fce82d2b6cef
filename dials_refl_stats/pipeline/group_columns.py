"""Per-experiment (group) column tables of the JSON, in the full or the compact form.

A group is the rows of one experiment ``id`` of one reflection file. The full form
names each group by ``file_index``, ``id``, ``identifier``, ``experiment_index`` (in the
experiment list given), ``label`` and ``short_label``; the compact form keeps the
numeric ``file_index``, ``id`` and ``experiment_index`` only, as runs when they are
regular (:mod:`dials_refl_stats.compact`), and rounds the groups' float columns.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dials_refl_stats.compact import compact_column, encode_runs, group_labels


def experiment_columns(
    file_index: Sequence[int],
    ids: Sequence[int],
    identifiers: Sequence[str | None],
    experiment_index: Sequence[int | None],
    n_files: int,
    compact: bool,
) -> dict[str, Any]:
    """The columns naming each group (see the module docstring)."""
    file_index, ids = [int(f) for f in file_index], [int(i) for i in ids]
    if compact:
        return {
            "file_index": encode_runs(np.asarray(file_index, dtype=np.int64)),
            "id": encode_runs(np.asarray(ids, dtype=np.int64)),
            "experiment_index": encode_runs(list(experiment_index)),
        }
    labels = group_labels(file_index, ids, n_files)
    short = [
        (f"f{f} " if n_files > 1 else "") + ("id -1" if i < 0 else f"expt {i}")
        for f, i in zip(file_index, ids)
    ]
    return {
        "file_index": file_index,
        "id": ids,
        "identifier": list(identifiers),
        "experiment_index": list(experiment_index),
        "label": labels,
        "short_label": short,
    }


def value_columns(columns: dict[str, Any], compact: bool) -> dict[str, Any]:
    """Numeric group columns; in the compact form each is a
    :func:`~dials_refl_stats.compact.compact_column` (rounded floats, runs when short)."""
    if not compact:
        return dict(columns)
    return {name: compact_column(values) for name, values in columns.items()}
