"""Many small msgpack files in one step (serial crystallography: one still per file).

Each file is read whole and decoded in C (:mod:`~dials_refl_stats.reader.msgpack_small`);
the files' columns are joined, checked and selected with one numpy call each, their
shoebox masks counted in one scan, and a :attr:`~Statistic.batchable` statistic gets
one chunk for all of them. Per-file work is a read, a decode and a few Python steps.

Nothing here raises for a bad file: a file that is not plainly valid (or changed since
the driver read its header) is handed back, and the one-file path reads it and gives
its error, so that messages and ``input.on_error=skip`` are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dials_refl_stats.analysis.statistic import Chunk, FileInfo, Statistic
from dials_refl_stats.reader import msgpack_small
from dials_refl_stats.reader.columns import FLAT_TYPES, SHOEBOX_TYPE, ColumnType
from dials_refl_stats.reader.shoebox import joined_mask_counts
from dials_refl_stats.reflections import (
    INTEGER_COLUMNS,
    ReflectionLoadError,
    impossible_panels,
    row_shape_problem,
)

from .execute import BASE_COLUMNS, FileRecord, SelectionPlan
from .inputs import ColumnIndex, DeferredFileInfo, small_column_index, small_file


def is_small(file: FileInfo) -> bool:
    """A file the driver found small (its header decoded whole, or deferred to here)."""
    if isinstance(file, DeferredFileInfo):
        return True
    columns = getattr(file, "columns", None)
    return columns is not None and columns.small and not file.problem


#: Bytes of files decoded and processed together (keeps the joined buffers in cache).
GROUP_BYTES = 4 << 20


@dataclass(frozen=True)
class _ColumnPlan:
    """What is read from the files of one column schema (types checked once for all)."""

    wanted: tuple[str, ...]
    #: (name, DIALS type, numpy form) of every needed flat column, base columns first
    flat: tuple[tuple[str, str, ColumnType], ...]
    #: an ``int6`` bbox column predicts the shoebox records
    bbox: bool


def _column_plan(index: ColumnIndex, statistic: Statistic) -> _ColumnPlan | None:
    """The plan for files with ``index``'s columns (``None``: a needed column is missing
    or of another type: the one-file path names the problem)."""
    types = dict(index.schema)
    wanted = statistic.columns(index.names)
    flat = []
    for name in (*BASE_COLUMNS, *wanted):
        type_name = types.get(name)
        if name == "shoebox":
            if type_name != SHOEBOX_TYPE:
                return None
            continue
        ctype = FLAT_TYPES.get(type_name)
        # an integer column of another type: the one-file path names the problem
        if ctype is None or (name in INTEGER_COLUMNS and np.dtype(ctype.dtype).kind not in "iu"):
            return None
        if row_shape_problem(name, ctype.shape) is not None:
            return None
        flat.append((name, type_name, ctype))
    has_bbox = "shoebox" in wanted and types.get("bbox") == "int6"
    return _ColumnPlan(wanted, tuple(flat), has_bbox)


def read_small_files(
    files: Sequence[FileInfo], statistic: Statistic, plan: SelectionPlan
) -> tuple[list[Chunk], list[FileRecord], list[FileInfo]]:
    """Chunks of ``files`` (one per group of about :data:`GROUP_BYTES` for a batchable
    statistic, else one per file), their records, and the files left for the one-file
    path."""
    chunks: list[Chunk] = []
    records: list[FileRecord] = []
    left: list[FileInfo] = []
    # column plans by ColumnIndex (shared by files with the same columns; kept alive in
    # the inputs module's cache, so their ids are stable)
    plans: dict[int, _ColumnPlan | None] = {}
    pending: dict[int, list] = {}
    size = 0
    for file in files:
        table, nbytes = msgpack_small.load_small(file.path)
        if table is None:
            left.append(file)
            continue
        if isinstance(file, DeferredFileInfo):  # the header, read here: with its rows
            try:
                opened = small_file(
                    file.path, file.index, table, nbytes, plan.experiments, plan.n_files
                )
            except ReflectionLoadError:  # not the experiments' table: named there
                left.append(file)
                continue
            info, index = opened.info, opened.info.columns
        elif table.nrows == file.nrows and nbytes == file.size_bytes:
            opened, info, index = None, file, small_column_index(table)
        else:  # changed since the driver read its header
            left.append(file)
            continue
        key = id(index)
        column_plan = plans.get(key, _UNSET)
        if column_plan is _UNSET:
            column_plan = plans[key] = _column_plan(index, statistic)
        if column_plan is None:
            left.append(file)
            continue
        pending.setdefault(key, []).append((info, table, opened, file))
        size += nbytes
        if size >= GROUP_BYTES:
            _process(pending, plans, statistic, plan, chunks, records, left)
            pending, size = {}, 0
    _process(pending, plans, statistic, plan, chunks, records, left)
    return chunks, records, left


_UNSET = object()


def _process(
    pending: dict, plans: dict, statistic, plan, chunks: list, records: list, left: list
) -> None:
    """Chunks and records of the ``pending`` files (by column plan)."""
    for key, group in pending.items():
        done, noted, refused = _group_chunks(group, plans[key], statistic, plan)
        chunks.extend(done)
        records.extend(noted)
        # refused files go back as they came: a deferred one is opened again there
        left.extend(refused)


def _lengths_valid(tables: list, nrows: np.ndarray, column_plan: _ColumnPlan) -> np.ndarray:
    """Per file: every needed flat column (and a predicting bbox) has ``nrows`` rows."""
    good = np.ones(len(tables), dtype=bool)
    checks = [(name, ctype.row_bytes) for name, _t, ctype in column_plan.flat]
    if column_plan.bbox:
        checks.append(("bbox", FLAT_TYPES["int6"].row_bytes))
    for name, row_bytes in checks:
        lengths = np.array([len(t.columns[name][1]) for t in tables], dtype=np.int64)
        good &= lengths == nrows * row_bytes
    return good


def _joined(tables: list, name: str, type_name: str, ctype: ColumnType) -> np.ndarray:
    """Column ``name`` of every table, one after the other (a writeable array)."""
    raw = bytearray().join([t.columns[name][1] for t in tables])
    values = np.frombuffer(raw, ctype.dtype).reshape((-1, *ctype.shape))
    return values != 0 if type_name == "bool" else values


def _group_chunks(group: list, column_plan: _ColumnPlan, statistic: Statistic, plan):
    """(chunks, records, files refused: left for the one-file path, as they came)."""
    files = [g[0] for g in group]
    tables = [g[1] for g in group]
    nrows = np.array([t.nrows for t in tables], dtype=np.int64)
    good = _lengths_valid(tables, nrows, column_plan)
    if good.all():
        bounds = np.zeros(len(tables) + 1, dtype=np.int64)
        np.cumsum(nrows, out=bounds[1:])
        columns = {name: _joined(tables, name, t, c) for name, t, c in column_plan.flat}
        good = _ids_valid(files, tables, columns["id"], bounds)
        bbox = columns.get("bbox")
        if bbox is not None and bbox.shape[1:] == (6,):  # inverted: the one-file path names it
            inverted = (bbox[:, 1::2] < bbox[:, 0::2]).any(axis=1)
            good &= ~_per_file_any(inverted, bounds)
        if "panel" in columns:  # as check_column: the one-file path names it
            good &= ~_per_file_any(impossible_panels(columns["panel"]), bounds)
    if not good.all():
        kept = [g for g, ok in zip(group, good) if ok]
        refused = [g[3] for g, ok in zip(group, good) if not ok]
        if not kept:
            return [], [], refused
        chunks, records, more = _group_chunks(kept, column_plan, statistic, plan)
        return chunks, records, more + refused
    if "shoebox" in column_plan.wanted:
        bbox = None
        if column_plan.bbox:  # an int6 column: joined above when the statistic reads it
            bbox = columns.get("bbox")
            if bbox is None:
                bbox = _joined(tables, "bbox", "int6", FLAT_TYPES["int6"])
        counted = joined_mask_counts(
            [t.columns["shoebox"][1] for t in tables], bbox, nrows.tolist(), statistic.shoebox_code
        )
        if counted is None:
            return [], [], [g[3] for g in group]
        columns["shoebox.count"], columns["shoebox.allocated"] = counted
    headers = {g[0].index: g[2] for g in group if g[2] is not None}
    selected, records = select_per_file(files, columns["flags"], bounds, plan, headers)
    if statistic.batchable:
        chunk = Chunk(files[0], 0, columns, selected, files=tuple(files), file_rows=nrows)
        return [chunk], records, []
    chunks = [
        Chunk(
            file,
            0,
            {k: v[bounds[i] : bounds[i + 1]] for k, v in columns.items()},
            selected[bounds[i] : bounds[i + 1]],
        )
        for i, file in enumerate(files)
    ]
    return chunks, records, []


def _per_file_any(rows: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Whether any of each file's rows is set."""
    running = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(rows, out=running[1:])
    return running[bounds[1:]] > running[bounds[:-1]]


def _ids_valid(files: list, tables: list, ids: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per file: every ``id`` is -1 or one of the file's identifiers (and, with
    experiments, of its experiments), as :func:`~dials_refl_stats.reflections.check_column`
    and :func:`~dials_refl_stats.pipeline.execute.check_ids` require."""
    good = np.ones(len(files), dtype=bool)
    nonempty = np.flatnonzero(bounds[:-1] < bounds[1:])
    if not nonempty.size:
        return good
    low = np.full(len(files), -1, dtype=np.int64)
    high = np.full(len(files), -1, dtype=np.int64)
    low[nonempty] = np.minimum.reduceat(ids, bounds[nonempty])
    high[nonempty] = np.maximum.reduceat(ids, bounds[nonempty])
    first = np.zeros(len(files), dtype=np.int64)
    last = np.full(len(files), np.iinfo(np.int64).max)
    plain, other = [], []  # one identifier and no experiment mapping: most files
    for i in nonempty.tolist():
        usual = len(tables[i].identifiers) == 1 and not files[i].experiment_of_id
        (plain if usual else other).append(i)
    if plain:
        keys = [next(iter(tables[i].identifiers)) for i in plain]
        first[plain] = keys
        last[plain] = keys
    for i in other:
        keys = tables[i].identifiers.keys()
        mapping = files[i].experiment_of_id
        if mapping and mapping.keys() != keys:
            good[i] = False  # unusual: checked file by file
        elif keys:
            first[i], last[i] = min(keys), max(keys)
            if last[i] - first[i] + 1 != len(keys):
                good[i] = False  # not numbered in a row: checked file by file
    within = (low >= first) & (high <= last)
    # id -1 (unassigned) is fine: without identifiers any id >= -1 is; with them,
    # files holding -1 beside other ids are checked file by file
    no_keys = last == np.iinfo(np.int64).max
    return good & (low >= -1) & (within | no_keys)


def select_per_file(
    files: Sequence[FileInfo],
    flags: np.ndarray,
    bounds: np.ndarray,
    plan: SelectionPlan,
    headers: dict | None = None,
) -> tuple[np.ndarray, list[FileRecord]]:
    """The selected rows of files whose rows are joined (file ``i``: rows ``bounds[i]``
    to ``bounds[i + 1]``), with the shared fallback rule file by file, and their records
    (with ``headers`` read by the task, for deferred files)."""
    headers = headers or {}
    selected = plan.requested.apply(flags)
    choices = [(plan.requested.names, None)] * len(files)
    if plan.fallback and plan.requested.mask:
        # only files in which no row has any requested bit can fall back
        for i in np.flatnonzero(~_per_file_any((flags & plan.requested.mask) != 0, bounds)):
            rows = slice(bounds[i], bounds[i + 1])
            selection, reason = plan.for_file(flags[rows])
            if reason is not None:
                selected[rows] = selection.apply(flags[rows])
            choices[i] = (selection.names, reason)
    running = np.zeros(selected.size + 1, dtype=np.int64)
    np.cumsum(selected, out=running[1:])
    n_selected = (running[bounds[1:]] - running[bounds[:-1]]).tolist()
    n_rows = np.diff(bounds).tolist()
    records = [
        FileRecord(
            file.index, n_rows[i], n_selected[i], names, reason, opened=headers.get(file.index)
        )
        for i, (file, (names, reason)) in enumerate(zip(files, choices))
    ]
    return selected, records
