"""The statistic contract: ``partial`` over a chunk of rows, ``merge``, ``finalize``.

A statistic never does I/O and never imports DIALS. The pipeline hands it
:class:`Chunk` objects (some rows of one file: the columns it asked for, which rows
are selected, and what is known of the file's experiments); it returns a small
picklable *partial* for each. Partials are combined with ``merge``, which must be
associative and commutative, so that any split of the input (by file, by row range,
in any order, on processes or Dask workers) gives the same ``finalize`` result.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np

#: Group key of rows whose experiment is unknown: ``file_index << ID_BITS | (id + 1)``.
ID_BITS = 32


@dataclass(frozen=True)
class ExperimentInfo:
    """What a statistic may know of an experiment (plain data, no dxtbx)."""

    index: int  # position in the run's experiment list
    identifier: str | None
    image_range: tuple[int, int] | None  # scan's first and last image; None for stills
    #: experiments with the same number share one scan model (lattices of one sweep);
    #: ``None`` for stills
    sweep: int | None = None

    @property
    def is_still(self) -> bool:
        return self.image_range is None


#: ``dataclass`` options of per-file records: ``__slots__`` where Python has them (3.10+),
#: ~300 bytes less per object than an instance ``__dict__`` (10^5 files: ~30 MB each).
PER_FILE = {"frozen": True, **({"slots": True} if sys.version_info >= (3, 10) else {})}


@dataclass(**PER_FILE)
class FileInfo:
    """One reflection file of a run, as the workers see it."""

    index: int
    path: str
    nrows: int
    identifiers: dict[int, str] = field(default_factory=dict)
    #: table ``id`` -> index into the run's experiment list (empty without experiments)
    experiment_of_id: dict[int, int] = field(default_factory=dict)
    #: why the file cannot be read (``input.on_error=skip``: it is skipped)
    problem: str | None = None
    #: the experiment id whose images rows with ``id`` -1 are on (one sweep), if known
    unassigned_id: int | None = None

    def group_keys(self, ids: np.ndarray, fold_unassigned: bool = False) -> np.ndarray:
        """A run-wide key for each row's (file, id): sorts by file, then id.

        ``fold_unassigned``: rows with ``id`` -1 (e.g. spots that were not indexed) count
        with :attr:`unassigned_id`'s experiment, when the file has one sweep.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if fold_unassigned and self.unassigned_id is not None:
            ids = np.where(ids < 0, self.unassigned_id, ids)
        return join_group_keys(self.index, ids)


def experiments_of_keys(files: Sequence[FileInfo], keys: np.ndarray) -> np.ndarray:
    """The experiment index (-1: none) of each run-wide (file, id) key of ``files``'s
    rows, from their ``experiment_of_id``."""
    known_keys, index = [], []
    for file in files:
        base = file.index << ID_BITS
        for i, e in file.experiment_of_id.items():
            known_keys.append(base | (i + 1))
            index.append(e)
    experiment = np.full(np.shape(keys), -1, dtype=np.int64)
    if known_keys:
        known = np.array(known_keys, dtype=np.int64)
        order = np.argsort(known)
        known, experiments = known[order], np.array(index, dtype=np.int64)[order]
        where = np.minimum(np.searchsorted(known, keys), known.size - 1)
        found = known[where] == keys
        experiment[found] = experiments[where[found]]
    return experiment


def split_group_key(key: int) -> tuple[int, int]:
    """``(file_index, id)`` of a key made by :meth:`FileInfo.group_keys`."""
    key = int(key)
    return key >> ID_BITS, (key & ((1 << ID_BITS) - 1)) - 1


def join_group_keys(file_index: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Run-wide (file, id) keys, as :meth:`FileInfo.group_keys` makes them."""
    file_index = np.asarray(file_index, dtype=np.int64)
    return (file_index << ID_BITS) | (np.asarray(ids, dtype=np.int64) + 1)


def split_group_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(file_index, id)`` arrays of keys made by :meth:`FileInfo.group_keys`."""
    keys = np.asarray(keys, dtype=np.int64)
    return keys >> ID_BITS, (keys & ((1 << ID_BITS) - 1)) - 1


@dataclass
class Chunk:
    """Rows ``start .. start + n_rows`` of one file, or whole files in a row.

    A chunk of several files (for statistics with :attr:`Statistic.batchable`) holds
    their rows one file after the other: :attr:`files` and :attr:`file_rows` say whose
    they are; :attr:`file` is then the first of them.
    """

    file: FileInfo
    start: int
    columns: dict[str, np.ndarray]
    selected: np.ndarray  # bool per row: the run's flag selection
    files: tuple[FileInfo, ...] = ()
    file_rows: np.ndarray | None = None  # rows of each of ``files``

    @property
    def n_rows(self) -> int:
        return int(self.selected.size)

    def group_keys(self, fold_unassigned: bool = False) -> np.ndarray:
        """Every row's run-wide (file, id) key (:meth:`FileInfo.group_keys`)."""
        ids = self.columns["id"]
        if not self.files:
            return self.file.group_keys(ids, fold_unassigned)
        ids = np.asarray(ids, dtype=np.int64)
        rows = self.file_rows
        if fold_unassigned:
            unassigned = [f.unassigned_id for f in self.files]
            if any(u is not None for u in unassigned):
                known = np.repeat([u is not None for u in unassigned], rows)
                fold = np.repeat([u or 0 for u in unassigned], rows)
                ids = np.where((ids < 0) & known, fold, ids)
        index = np.repeat(np.array([f.index for f in self.files], dtype=np.int64), rows)
        return join_group_keys(index, ids)

    def order_keys(self, rows: np.ndarray) -> np.ndarray:
        """Run-wide order keys of ``rows`` (of this chunk): ``file << ID_BITS | row`` with
        the row numbered in its own file."""
        if not self.files:
            return (np.int64(self.file.index) << ID_BITS) | (rows + self.start)
        starts = np.zeros(len(self.files) + 1, dtype=np.int64)
        np.cumsum(self.file_rows, out=starts[1:])
        position = np.searchsorted(starts, rows, side="right") - 1
        index = np.array([file.index for file in self.files], dtype=np.int64)
        return (index[position] << ID_BITS) | (rows - starts[position])

    def rows(self, start: int, stop: int) -> "Chunk":
        """The sub-chunk of rows ``start .. stop`` (relative to this one-file chunk)."""
        if self.files:
            raise ValueError("rows() of a chunk of several files")
        return Chunk(
            file=self.file,
            start=self.start + start,
            columns={k: v[start:stop] for k, v in self.columns.items()},
            selected=self.selected[start:stop],
        )


class Statistic(ABC):
    """A mergeable statistic. Subclasses are picklable (plain parameters only)."""

    #: Name used in JSON, logs and the combined report.
    name: ClassVar[str]

    @abstractmethod
    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        """Columns to read, given the file's columns (``shoebox`` means mask counts)."""

    #: ``MaskCode`` bits whose shoebox pixel counts the statistic needs (``None``: none).
    shoebox_code: int | None = None
    #: Whether ``partial`` takes chunks of several files (it then uses only
    #: :meth:`Chunk.group_keys` to tell files apart).
    batchable: ClassVar[bool] = False

    def can_read(self, available: frozenset[str]) -> bool:
        """Whether a file with ``available`` columns has what the statistic needs."""
        return all(name in available for name in self.columns(available))

    def describe(self, final: Any) -> Any:
        """``final`` as JSON-ready data (dataclasses and arrays are fine)."""
        return final

    @abstractmethod
    def partial(self, chunk: Chunk) -> Any:
        """The partial result of one chunk (small, picklable; pure numpy)."""

    @abstractmethod
    def merge(self, first: Any, second: Any) -> Any:
        """Combine two partials; associative and commutative."""

    @abstractmethod
    def finalize(self, partial: Any) -> Any:
        """The result of the whole run."""

    def empty(self) -> Any:
        """The partial of no rows (the identity of ``merge``)."""
        return None

    def complete(self, partial: Any) -> Any:
        """A task's merged partial, before it is returned: it covers whole files (a file
        is never split between tasks), so a statistic whose groups never span files may
        replace their mergeable parts by final per-group values here (merging such
        partials must then only join them). Identity by default."""
        return partial

    def fold_hint(self, state: Any, partial: Any) -> Any:
        """The driver's prune-hint state once task result ``partial`` is merged
        (``state``: before it, ``None`` at first). ``None`` (the default): no hints."""
        return None

    def prune_hint(self, state: Any) -> Any:
        """What tasks handed out now may leave out of their partials, given
        :meth:`fold_hint`'s state of every result merged so far: whatever can no longer
        change the result (points that can no longer be in a bounded sample, say).
        ``None``: nothing (small: it goes with every task)."""
        return None

    def pruned(self, partial: Any, hint: Any) -> Any:
        """A task's completed ``partial`` less what ``hint`` (:meth:`prune_hint`) says can
        no longer change the result: merged with the rest, it gives the same result."""
        return partial

    def merge_all(self, partials: Iterable[Any]) -> Any:
        """Merge any number of partials (``None`` is the identity; ``None`` if all are)."""
        parts = [p for p in partials if p is not None]
        if len(parts) < 2:
            return parts[0] if parts else None
        return self.merge_many(parts)

    def merge_many(self, partials: list[Any]) -> Any:
        """Merge two or more partials: pairwise in a balanced tree. A statistic whose
        partials join in one step (count tables, say) overrides this: the driver merges
        up to :data:`MERGE_FAN_IN` partials at once."""
        level = partials
        while len(level) > 1:
            paired = [self.merge(a, b) for a, b in zip(level[0::2], level[1::2])]
            level = paired + level[len(paired) * 2 :]
        return level[0]


#: Partials the driver merges at once (:class:`~dials_refl_stats.pipeline.execute.MergeStack`):
#: a statistic whose ``merge_all`` joins them in one step copies each row log8(tasks)
#: times instead of log2(tasks) times.
MERGE_FAN_IN = 8


#: Dense counting (``bincount``) when the key ranges span at most this many cells per
#: row counted (plus a constant): a sort costs far more per row.
DENSE_CELLS_PER_ROW = 4
DENSE_CELLS_MIN = 1024


def merge_counts(
    keys: tuple[np.ndarray, ...], counts: np.ndarray
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Sum integer ``counts`` over equal key tuples (exactly, in int64).

    Keys come back unique and sorted lexicographically: the building block of exact,
    compact partials (value counts per group). Keys spanning small ranges are counted
    densely (one ``bincount``), others sorted; the result is the same.
    """
    keys = tuple(np.asarray(k, dtype=np.int64).ravel() for k in keys)
    counts = np.asarray(counts, dtype=np.int64).ravel()
    if not counts.size:
        return keys, counts
    dense = _dense_counts(keys, counts)
    if dense is None:
        dense = _ranked_dense_counts(keys, counts)
    if dense is not None:
        return dense
    order = np.lexsort(keys[::-1])
    keys = tuple(k[order] for k in keys)
    counts = counts[order]
    changed = np.zeros(counts.size, dtype=bool)
    changed[0] = True
    for k in keys:
        changed[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(changed)
    return tuple(k[starts] for k in keys), np.add.reduceat(counts, starts)


def merge_count_tables(
    *tables: tuple[tuple[np.ndarray, ...], np.ndarray],
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """:func:`merge_counts` of tables that are each already unique and sorted (as
    :func:`merge_counts` leaves them), in one step however many there are: when their
    key ranges do not overlap (partials of different files, whose keys start with the
    file), the result is the tables one after the other in key order, without a sort."""
    parts = [t for t in tables if t[1].size] or list(tables[:1])
    if len(parts) > 1:  # in the order of their first keys
        parts.sort(key=lambda part: tuple(int(k[0]) for k in part[0]))
    joined = tuple(np.concatenate(k) for k in zip(*(keys for keys, _ in parts)))
    counts = np.concatenate([c for _, c in parts])
    for (before, _), (after, _) in zip(parts, parts[1:]):
        if not tuple(int(k[-1]) for k in before) < tuple(int(k[0]) for k in after):
            return merge_counts(joined, counts)  # overlapping key ranges
    return tuple(k.astype(np.int64, copy=False) for k in joined), counts.astype(
        np.int64, copy=False
    )


def _ranked_dense_counts(keys: tuple[np.ndarray, ...], counts: np.ndarray):
    """:func:`_dense_counts` with the first key's distinct values numbered in order, when
    it never decreases (rows in file order keyed by run-wide group keys, whose range is
    wide but whose values are few); ``None`` otherwise or if still too big."""
    first = keys[0]
    if len(keys) < 2 or first.size < 2 or (first[1:] < first[:-1]).any():
        return None
    new_value = np.empty(first.size, dtype=bool)
    new_value[0] = False
    np.not_equal(first[1:], first[:-1], out=new_value[1:])
    rank = np.cumsum(new_value)  # 0, 1, ... in the order of the values: order kept
    dense = _dense_counts((rank, *keys[1:]), counts)
    if dense is None:
        return None
    (ranks, *others), summed = dense
    new_value[0] = True  # each value's first row
    return (first[new_value][ranks], *others), summed


def _dense_counts(keys: tuple[np.ndarray, ...], counts: np.ndarray):
    """:func:`merge_counts` by ``bincount`` over the keys' box, or ``None`` if too big.

    The cell of a key tuple is its row-major position in the box, so cells ascend in
    the keys' lexicographic order. Counts are summed exactly: ``bincount`` adds in
    float64, exact below 2**53, which the check on the total guarantees.
    """
    limit = DENSE_CELLS_PER_ROW * counts.size + DENSE_CELLS_MIN
    low, sizes = [], []
    cells = 1
    for k in keys:
        first, last = int(k.min()), int(k.max())
        low.append(first)
        sizes.append(last - first + 1)
        cells *= last - first + 1
        if cells > limit:
            return None
    if int(np.abs(counts).sum()) >= 1 << 53:
        return None
    cell = np.zeros(counts.size, dtype=np.int64)
    for k, first, size in zip(keys, low, sizes):
        cell *= size
        cell += k - first
    summed = np.bincount(cell, weights=counts, minlength=cells)
    present = np.flatnonzero(np.bincount(cell, minlength=cells))
    out = np.rint(summed[present]).astype(np.int64)
    decoded = []
    for first, size in zip(reversed(low), reversed(sizes)):
        decoded.append(present % size + first)
        present = present // size
    return tuple(reversed(decoded)), out
