"""Rows of one experiment in one file: labels and groupings for per-experiment results."""

from __future__ import annotations

from dataclasses import dataclass

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


def group_rows_by_experiment(
    file_index: int, identifiers: dict[int, str], ids: np.ndarray
) -> tuple[list[ExperimentGroup], np.ndarray]:
    """The experiments present in ``ids`` (sorted) and each row's index into them."""
    values, group_of_row = np.unique(np.asarray(ids), return_inverse=True)
    groups = [ExperimentGroup(file_index, int(v), identifiers.get(int(v))) for v in values]
    return groups, group_of_row.astype(np.int64)
