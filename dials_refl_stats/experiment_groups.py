"""Rows of one experiment in one file: labels and groupings for per-experiment results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class ExperimentGroup:
    """Rows of one experiment in one file (or rows with no experiment, ``id`` -1)."""

    file_index: int
    id: int
    identifier: str | None

    def label(self, n_files: int) -> str:
        if self.id < 0:
            name = "unassigned (id -1)"
        elif self.identifier:
            name = f"experiment {self.id} ({self.identifier})"
        else:
            name = f"experiment {self.id}"
        return f"file {self.file_index}: {name}" if n_files > 1 else name

    def describe(self, n_files: int) -> dict:
        return {
            "file_index": self.file_index,
            "id": self.id,
            "identifier": self.identifier,
            "label": self.label(n_files),
        }


#: What was made of the last experiment lists seen, with the lists (kept alive, so that
#: identity is a safe key): ``(experiments, name, value)``.
_PER_LIST: list[tuple[Any, str, Any]] = []


def once_per_list(experiments: Any, name: str, make: Callable[[Any], Any]) -> Any:
    """``make(experiments)``, made once per experiment list and ``name``, not once per
    file (10^5 files of 10^5 experiments)."""
    for known, known_name, value in _PER_LIST:
        if known is experiments and known_name == name:
            return value
    value = make(experiments)
    _PER_LIST[:] = [(experiments, name, value), *_PER_LIST[:3]]  # a few: they keep lists alive
    return value


def identifier_index(experiments: Sequence[Any]) -> dict[str, int]:
    """``identifier -> position`` of ``experiments`` (anything with an ``identifier``:
    dxtbx experiments, :class:`~.analysis.statistic.ExperimentInfo`), empty identifiers
    left out; made once per list."""
    return once_per_list(
        experiments,
        "identifier_index",
        lambda known: {e.identifier: n for n, e in enumerate(known) if e.identifier},
    )


#: Experiment ids spanning fewer values than this (and than the rows) are counted, not sorted.
COUNTED_SPAN = 1 << 20


def distinct_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True)`` (int64 values and inverse), by counting
    when the ids span a small range (table ids: -1 and 0..n-1), else by sorting."""
    ids = np.asarray(ids).ravel()
    if not ids.size or not np.issubdtype(ids.dtype, np.integer):
        values, inverse = np.unique(ids, return_inverse=True)
        return values.astype(np.int64, copy=False), inverse.astype(np.int64, copy=False)
    low, high = int(ids.min()), int(ids.max())
    span = high - low + 1
    if span > COUNTED_SPAN or span > 4 * ids.size:
        values, inverse = np.unique(ids, return_inverse=True)
        return values.astype(np.int64, copy=False), inverse.astype(np.int64, copy=False)
    shifted = ids.astype(np.int64) - low
    present = np.bincount(shifted, minlength=span) > 0
    position = np.cumsum(present) - 1
    return np.flatnonzero(present) + low, position[shifted]


def group_rows_by_experiment(
    file_index: int, identifiers: dict[int, str], ids: np.ndarray
) -> tuple[list[ExperimentGroup], np.ndarray]:
    """The experiments present in ``ids`` (sorted) and each row's index into them."""
    values, group_of_row = distinct_ids(ids)
    groups = [ExperimentGroup(file_index, int(v), identifiers.get(int(v))) for v in values]
    return groups, group_of_row
