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

from typing import Sequence

import numpy as np

from dials_refl_stats.analysis.statistic import Chunk, FileInfo, Statistic
from dials_refl_stats.reader import msgpack_small
from dials_refl_stats.reader.columns import FLAT_TYPES, SHOEBOX_TYPE
from dials_refl_stats.reader.shoebox import joined_mask_counts

from .execute import BASE_COLUMNS, FileRecord, SelectionPlan
from .inputs import DeferredFileInfo, small_file

_ID_TYPE = "int"


def is_small(file: FileInfo) -> bool:
    """A file the driver found small (its header decoded whole, or deferred to here)."""
    if isinstance(file, DeferredFileInfo):
        return True
    columns = getattr(file, "columns", None)
    return columns is not None and columns.small and not file.problem


#: Bytes of files decoded and processed together (keeps the joined buffers in cache).
GROUP_BYTES = 4 << 20


def read_small_files(
    files: Sequence[FileInfo], statistic: Statistic, plan: SelectionPlan
) -> tuple[list[Chunk], list[FileRecord], list[FileInfo]]:
    """Chunks of ``files`` (one per group of about :data:`GROUP_BYTES` for a batchable
    statistic, else one per file), their records, and the files left for the one-file
    path."""
    chunks: list[Chunk] = []
    records: list[FileRecord] = []
    left: list[FileInfo] = []
    original = {f.index: f for f in files if isinstance(f, DeferredFileInfo)}
    wanted_of: dict[tuple[str, ...], tuple[str, ...] | None] = {}
    tables: list = []
    size = 0
    for file in files:
        data = msgpack_small.read_small(file.path)
        table = msgpack_small.unpack_table(data) if data else None
        if table is None or len(data) != file.size_bytes:
            left.append(file)
            continue
        opened = None
        if isinstance(file, DeferredFileInfo):  # the header, read here: with its rows
            opened = small_file(file.path, file.index, table, len(data), [], 1)
            file = opened.info
        elif table.nrows != file.nrows:
            left.append(file)
            continue
        names = tuple(table.columns)
        if names not in wanted_of:
            wanted = statistic.columns(frozenset(names))
            usable = all(n in table.columns for n in (*BASE_COLUMNS, *wanted))
            wanted_of[names] = wanted if usable else None
        wanted = wanted_of[names]
        if wanted is None or not _plain_columns(table, wanted):
            left.append(original.get(file.index, file))
            continue
        tables.append((file, table, wanted, opened))
        size += len(data)
        if size >= GROUP_BYTES:
            _process(tables, statistic, plan, chunks, records, left, original)
            tables, size = [], 0
    _process(tables, statistic, plan, chunks, records, left, original)
    return chunks, records, left


def _process(
    tables: list, statistic, plan, chunks: list, records: list, left: list, original: dict
) -> None:
    """Chunks and records of ``tables`` (files that need the same columns together)."""
    headers = {f.index: o for f, _t, _w, o in tables if o is not None}
    for wanted in dict.fromkeys(w for _f, _t, w, _o in tables):
        group = [(f, t) for f, t, w, _o in tables if w == wanted]
        done, noted, refused = _group_chunks(group, wanted, statistic, plan, headers)
        chunks.extend(done)
        records.extend(noted)
        # refused files go back as they came: a deferred one is opened again there
        left.extend(original.get(f.index, f) for f in refused)


def _plain_columns(table: msgpack_small.SmallTable, wanted: tuple[str, ...]) -> bool:
    """Every needed column has its type's exact byte length (shoebox: its type)."""
    n = table.nrows
    for name in (*BASE_COLUMNS, *wanted):
        type_name, payload = table.columns[name]
        if name == "shoebox":
            if type_name != SHOEBOX_TYPE:
                return False
            continue
        ctype = FLAT_TYPES.get(type_name)
        if ctype is None or len(payload) != n * ctype.row_bytes:
            return False
    return True


def _joined(tables: list, name: str) -> np.ndarray:
    """Column ``name`` of every table, one after the other (a writeable array)."""
    ctype = FLAT_TYPES[tables[0].columns[name][0]]
    if any(t.columns[name][0] != tables[0].columns[name][0] for t in tables):
        ctype = None
    if ctype is None:
        raise _Mixed
    raw = bytearray().join(t.columns[name][1] for t in tables)
    values = np.frombuffer(raw, ctype.dtype).reshape((-1, *ctype.shape))
    if tables[0].columns[name][0] == "bool":
        values = values != 0
    return values


class _Mixed(Exception):
    """Files of one group store a column with different types."""


def _group_chunks(group: list, wanted: tuple[str, ...], statistic: Statistic, plan, headers: dict):
    """(chunks, records, files refused: left for the one-file path)."""
    files = [f for f, _t in group]
    tables = [t for _f, t in group]
    nrows = np.array([t.nrows for t in tables], dtype=np.int64)
    bounds = np.zeros(len(tables) + 1, dtype=np.int64)
    np.cumsum(nrows, out=bounds[1:])
    try:
        columns = {
            name: _joined(tables, name) for name in (*BASE_COLUMNS, *wanted) if name != "shoebox"
        }
    except _Mixed:
        return [], [], files
    good = _ids_valid(files, tables, columns["id"], bounds)
    if "bbox" in columns:  # an inverted bounding box: the one-file path names the row
        good &= ~_per_file_any(
            (columns["bbox"][:, 1::2] < columns["bbox"][:, 0::2]).any(axis=1), bounds
        )
    if not good.all():
        kept = [g for g, ok in zip(group, good) if ok]
        chunks, records, refused = _group_chunks(kept, wanted, statistic, plan, headers)
        return chunks, records, refused + [f for f, ok in zip(files, good) if not ok]
    if "shoebox" in wanted:
        counted = _shoebox_counts(tables, statistic.shoebox_code)
        if counted is None:
            return [], [], files
        columns["shoebox.count"], columns["shoebox.allocated"] = counted
    flags = columns["flags"]
    selected, records = _select(files, flags, bounds, plan, headers)
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
    for i in nonempty.tolist():
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


def _shoebox_counts(tables: list, code: int) -> tuple[np.ndarray, np.ndarray] | None:
    bboxes = []
    for t in tables:
        bbox = t.columns.get("bbox")
        usable = bbox is not None and bbox[0] == "int6" and len(bbox[1]) == 24 * t.nrows
        bboxes.append(np.frombuffer(bbox[1], "<i4").reshape(-1, 6) if usable else None)
    payloads = [t.columns["shoebox"][1] for t in tables]
    return joined_mask_counts(payloads, bboxes, [t.nrows for t in tables], code)


def _select(files: list, flags: np.ndarray, bounds: np.ndarray, plan: SelectionPlan, headers):
    """The selected rows of every file (the shared fallback rule, file by file), and
    their records (with the headers read here, for deferred files)."""
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
