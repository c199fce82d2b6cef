"""The selected rows themselves, as a mergeable statistic (exact; memory ~ selected rows).

For statistics that need every selected row at once on the driver (geometry through
dxtbx, per-frame medians over whole scans): partials hold the selected rows' columns
per file, ``merge`` concatenates, ``finalize`` puts each file's rows back in row order.
Also counts, per file, the rows carrying each flag bit (for hints when a selection is
empty), since unselected rows are not kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np

from dials_refl_stats.analysis.statistic import Chunk, Statistic

#: Flag bits counted per file.
N_FLAG_BITS = 32


@dataclass(frozen=True)
class RowsPart:
    file_index: int
    start: int
    rows: np.ndarray  # selected row numbers in the file
    columns: dict[str, np.ndarray]
    bit_counts: np.ndarray  # rows with each flag bit, over all rows of the chunk
    extra: Any = None  # what a subclass summarises over all rows (see SelectedRows.extra)


@dataclass(frozen=True)
class FileRows:
    """All selected rows of one file, in row order."""

    rows: np.ndarray
    columns: dict[str, np.ndarray]
    bit_counts: np.ndarray
    extra: Any = None

    def n_with(self, mask: int) -> int:
        """Rows (selected or not) having any bit of ``mask`` (exact for one-bit masks)."""
        bits = [b for b in range(N_FLAG_BITS) if mask >> b & 1]
        return int(max((self.bit_counts[b] for b in bits), default=0))


def flag_bit_counts(flags: np.ndarray) -> np.ndarray:
    """How many of ``flags`` have each of the low :data:`N_FLAG_BITS` bits."""
    as_bytes = np.ascontiguousarray(np.asarray(flags).astype("<u4")).view(np.uint8)
    bits = np.unpackbits(as_bytes.reshape(-1, 4), axis=1, bitorder="little")
    return bits.sum(axis=0, dtype=np.int64)


class SelectedRows(Statistic):
    """Keep ``wanted`` columns of the selected rows (plus ``flags`` and ``id``)."""

    name = "selected_rows"

    def __init__(self, wanted: tuple[str, ...], optional: tuple[str, ...] = ()):
        self.wanted = wanted
        self.optional = optional

    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        return self.wanted + tuple(c for c in self.optional if c in available)

    def partial(self, chunk: Chunk) -> list[RowsPart]:
        selected = chunk.selected
        rows = np.flatnonzero(selected)
        if rows.size == selected.size:  # every row (e.g. selection.flags=all): no copies
            columns = {name: np.asarray(values) for name, values in chunk.columns.items()}
        else:
            columns = {name: np.asarray(values)[selected] for name, values in chunk.columns.items()}
        counts = flag_bit_counts(chunk.columns["flags"])
        extra = self.extra(chunk)
        return [RowsPart(chunk.file.index, chunk.start, rows + chunk.start, columns, counts, extra)]

    def extra(self, chunk: Chunk) -> Any:
        """A summary of all rows of a chunk (selected or not); see :meth:`merge_extra`."""
        return None

    def merge_extra(self, first: Any, second: Any) -> Any:
        """Combine two :meth:`extra` summaries (associative, commutative)."""
        return None

    def merge(self, first: list[RowsPart], second: list[RowsPart]) -> list[RowsPart]:
        return first + second

    def empty(self) -> list[RowsPart]:
        return []

    def finalize(self, partial: list[RowsPart] | None) -> dict[int, FileRows]:
        by_file: dict[int, list[RowsPart]] = {}
        for part in partial or []:
            by_file.setdefault(part.file_index, []).append(part)
        result = {}
        for index, parts in sorted(by_file.items()):
            parts.sort(key=lambda p: p.start)
            names = parts[0].columns.keys()
            result[index] = FileRows(
                rows=_joined([p.rows for p in parts]),
                columns={n: _joined([p.columns[n] for p in parts]) for n in names},
                bit_counts=np.sum([p.bit_counts for p in parts], axis=0),
                extra=reduce(self.merge_extra, [p.extra for p in parts]),
            )
        return result


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(arrays)``, without a copy of a single array."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
