"""Running a statistic over files: chunks -> partials -> one merged partial.

The same task function runs in the driver (``mp.method=serial``), in worker
processes (``multiprocessing``) and on Dask workers (``dask``): a task is a batch of
files (sized by bytes; a task costs milliseconds in any engine), it reads each file's
selected rows, computes the statistic's partial per file and merges them, and returns
a :class:`RunPartial`: the statistic's partial plus a small record per file.
Workers need numpy and this package only (no DIALS), except for legacy pickle tables.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable, Sequence

import numpy as np

from dials_refl_stats.analysis.statistic import (
    MERGE_FAN_IN,
    PER_FILE,
    Chunk,
    ExperimentInfo,
    FileInfo,
    Statistic,
)
from dials_refl_stats.pipeline import packed_records
from dials_refl_stats.pipeline.inputs import (
    DeferredFileInfo,
    DeferredInfos,
    HeaderFileInfo,
    OpenedFile,
    deferred_info,
    open_file,
    problem_file,
)
from dials_refl_stats.pipeline.packed_records import FileBatch
from dials_refl_stats.reader import ReflectionFileError, read_layout
from dials_refl_stats.reader.columns import SHOEBOX_TYPE, read_flat
from dials_refl_stats.reader.formats import sniff_bytes
from dials_refl_stats.reader.mask_counts import Scratch, block_mask_counts
from dials_refl_stats.reader.msgpack_layout import ColumnSpan
from dials_refl_stats.reader.shoebox import ShoeboxScan
from dials_refl_stats.reflections import (
    ReflectionLoadError,
    _as_load_error,
    check_column,
    open_reflection_file,
)
from dials_refl_stats.selection import FLAG_BITS, FlagSelection

logger = logging.getLogger("dials.dials_refl_stats.pipeline")

#: Target bytes of reflection files per task.
BATCH_BYTES = 64 * 1024**2
#: At most this many files per task.
BATCH_FILES = 2000
#: Seconds between progress lines in the log.
PROGRESS_INTERVAL = 5.0

#: Column names the pipeline always reads (selection and experiment groups).
BASE_COLUMNS = ("flags", "id")


@dataclass(frozen=True)
class SelectionPlan:
    """The run's flag selection, and the shared fallback rule.

    Fallback (only when ``fallback`` is set, i.e. ``selection.flags`` is at the
    program's default and ``selection.fallback=True``): a file in which no row has any
    bit of the requested flags uses ``strong``, or every row when none is strong.
    """

    requested: FlagSelection
    fallback: bool = False
    #: the run's experiments and file count, for headers the tasks read (deferred files:
    #: each file's ``id`` -> experiment mapping, as the driver would have made it)
    experiments: Sequence[ExperimentInfo] = field(default=(), compare=False)
    n_files: int = 1

    def for_file(self, flags: np.ndarray) -> tuple[FlagSelection, str | None]:
        """The selection used for one file, and why it differs from the request."""
        mask = self.requested.mask
        if not self.fallback or not mask or not flags.size or (flags & mask).any():
            return self.requested, None
        wanted = "+".join(self.requested.names)
        if (flags & FLAG_BITS["strong"]).any():
            return (
                FlagSelection(names=("strong",)),
                f"no row has the '{wanted}' flag; using 'strong'",
            )
        return (
            FlagSelection(names=("all",)),
            f"no row has the '{wanted}' or 'strong' flag; using every row",
        )


@dataclass(**PER_FILE)
class FileRecord:
    """What happened to one file (kept for the JSON and the log)."""

    index: int
    n_rows: int
    n_selected: int
    selection: tuple[str, ...]
    fallback: str | None = None
    skipped: str | None = None  # one-line reason, with input.on_error=skip
    #: the header the task read (an ``OpenedFile``), for a file the driver deferred
    opened: Any = None


@dataclass
class RunPartial:
    """A statistic's partial plus the records of the files it covers."""

    partial: Any
    records: list[FileRecord] = field(default_factory=list)

    def __reduce__(self):
        """Pickled with the records as columns (:func:`pack_records`)."""
        return _unpacked_run_partial, (self.partial, pack_records(self.records))


#: A record's header read by the task, and that header's file info, go as columns too.
_RECORD_NESTING = {"opened": (OpenedFile, {"info": (HeaderFileInfo, {})})}


def pack_records(records: list[FileRecord]) -> tuple | list:
    """``records`` as columns (:mod:`.packed_records`; a task's 2000 records cost the
    worker and the driver ~4x less than as objects), or as they are when not all plain
    :class:`FileRecord`."""
    if all(type(r) is FileRecord for r in records):
        return packed_records.pack(records, FileRecord, _RECORD_NESTING)
    return list(records)


def unpack_records(packed: tuple | list) -> list[FileRecord]:
    """The records of :func:`pack_records`."""
    if isinstance(packed, list):
        return packed
    return packed_records.unpack(packed, FileRecord, _RECORD_NESTING)


def _unpacked_run_partial(partial: Any, records: tuple | list) -> RunPartial:
    return RunPartial(partial, unpack_records(records))


class ChunkError(ReflectionLoadError):
    """A file whose rows cannot be used (bad ids, missing column); one line."""


class MissingColumnError(ChunkError):
    """A column the statistic needs is not in the file at ``path`` (a file whose header
    only the task read: the driver then asks the program why, see ``Run.explain``)."""

    def __init__(self, path: str, name: str):
        super().__init__(f"{path}: no '{name}' column")
        self.path, self.name = path, name

    def __reduce__(self):
        return MissingColumnError, (self.path, self.name)


def read_chunk(file: FileInfo, statistic: Statistic, plan: SelectionPlan, reader: str):
    """All rows of ``file`` as a :class:`Chunk`, and its :class:`FileRecord`."""
    columns = read_msgpack_columns(file, statistic) if reader in ("auto", "fast") else None
    if columns is None:
        columns = read_source_columns(file, statistic, reader)
    check_ids(file, columns["id"])
    selection, reason = plan.for_file(columns["flags"])
    selected = selection.apply(columns["flags"])
    record = FileRecord(file.index, file.nrows, int(selected.sum()), selection.names, reason)
    return Chunk(file=file, start=0, columns=columns, selected=selected), record


def read_source_columns(file: FileInfo, statistic: Statistic, reader: str) -> dict:
    """The columns ``statistic`` needs, through :func:`open_reflection_file` (any format)."""
    source = open_reflection_file(file.path, reader)
    if source.nrows != file.nrows:
        raise ChunkError(f"{file.path}: changed while it was being read")
    available = source.column_names
    wanted = statistic.columns(available)
    for name in (*BASE_COLUMNS, *wanted):
        if name not in available:
            raise MissingColumnError(file.path, name)
    columns = {name: source.column(name) for name in BASE_COLUMNS}
    for name in wanted:
        if name == "shoebox":
            counts, allocated = source.shoebox_mask_counts(statistic.shoebox_code)
            columns["shoebox.count"], columns["shoebox.allocated"] = counts, allocated
        else:
            columns[name] = source.column(name)
    return columns


def read_msgpack_columns(file: FileInfo, statistic: Statistic) -> dict | None:
    """The columns ``statistic`` needs from a msgpack file, through one open handle, with
    the header the driver read when the file is unchanged (``None``: not msgpack, or not
    openable; the general path then reads it, or gives its error)."""
    try:
        fh = open(file.path, "rb")
    except OSError:
        return None
    with fh, _as_load_error(file.path):
        size = os.fstat(fh.fileno()).st_size
        index = getattr(file, "columns", None)
        if index is not None and not index.small and size == getattr(file, "size_bytes", -1):
            spans, identifiers = index.spans(file.nrows), file.identifiers
        else:
            if sniff_bytes(fh.read(512)) != "msgpack":
                return None
            layout = read_layout(file.path, fh)
            if layout.nrows != file.nrows:
                raise ChunkError(f"{file.path}: changed while it was being read")
            spans, identifiers = layout.columns, layout.identifiers
        wanted = statistic.columns(frozenset(spans))
        for name in (*BASE_COLUMNS, *wanted):
            if name not in spans:
                raise MissingColumnError(file.path, name)
        columns = {}
        for name in (*BASE_COLUMNS, *wanted):
            if name == "shoebox":
                counts, allocated = shoebox_counts(file, fh, spans, statistic.shoebox_code)
                columns["shoebox.count"], columns["shoebox.allocated"] = counts, allocated
            else:
                values = read_flat(file.path, fh, spans[name])
                check_column(file.path, name, values, file.nrows, identifiers)
                columns[name] = values
    return columns


def shoebox_counts(
    file: FileInfo, fh: BinaryIO, spans: dict[str, ColumnSpan], code: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: shoebox pixels whose mask has all bits of ``code``, and allocated; the
    reader's streaming scan over the already open file (bbox predicts the records)."""
    span = spans["shoebox"]
    if span.type_name != SHOEBOX_TYPE:
        raise ChunkError(f"{file.path}: column 'shoebox' has type {span.type_name[:60]}")
    bbox = spans.get("bbox")
    if bbox is not None and bbox.type_name == "int6":
        try:
            bbox = read_flat(file.path, fh, bbox)
        except ReflectionFileError:  # a broken bbox only costs the prediction
            bbox = None
    else:
        bbox = None
    counts = np.zeros(file.nrows, np.int64)
    allocated = np.zeros(file.nrows, bool)
    work = Scratch()
    for buf, block in ShoeboxScan(file.path, fh.fileno(), span, file.nrows, bbox).windows():
        rows = slice(block.row0, block.row0 + len(block))
        counts[rows] = block_mask_counts(buf, block, code, True, work)
        allocated[rows] = block.npix > 0
    return counts, allocated


def check_ids(file: FileInfo, ids: np.ndarray) -> None:
    """Rows must belong to an experiment given (when experiments were given)."""
    if not file.experiment_of_id or not ids.size:
        return
    present = np.unique(ids)
    unknown = [int(i) for i in present if i >= 0 and int(i) not in file.experiment_of_id]
    if unknown:
        raise ChunkError(
            f"{file.path}: rows with id {unknown[0]} match none of the experiments given"
        )


def process_batch(
    files: Sequence[FileInfo],
    statistic: Statistic,
    plan: SelectionPlan,
    reader: str,
    skip_errors: bool,
    hint: Any = None,
) -> RunPartial:
    """The merged partial of a batch of files (the task every engine runs), less what
    ``hint`` (``Statistic.prune_hint``) says cannot change the result.

    Small msgpack files are read together (:mod:`.small_files`); every other file, and
    any small file that is not plainly valid, is read on its own.
    """
    from .small_files import is_small, read_small_files

    if isinstance(files, ListedBatch):
        files = files.files()
    if isinstance(statistic, HeaderPass):
        if statistic.rows is not None and reader in ("auto", "fast"):
            found = _headers_with_rows(files, statistic.rows, plan, reader)
            if found is not None:
                return found
        return _headers(files, plan, reader, skip_errors, statistic.rows is not None)
    partials, records = [], []
    alone = list(files)
    if reader in ("auto", "fast"):
        small = [f for f in files if is_small(f)]
        if len(small) > 1:
            try:
                chunks, records, left = read_small_files(small, statistic, plan)
                partials = [statistic.partial(chunk) for chunk in chunks]
            except ReflectionLoadError:
                # a problem found in the files taken together: one by one, so that the
                # first problem in file order is the one named (or skipped), as serially
                chunks, records, left, partials = [], [], small, []
            done = {f.index for f in small} - {f.index for f in left}
            alone = [f for f in files if f.index not in done]
    for file in alone:
        if file.problem:
            records.append(FileRecord(file.index, 0, 0, (), skipped=file.problem))
            continue
        opened = None
        try:
            if isinstance(file, DeferredFileInfo):
                opened = open_file(file.path, file.index, reader, plan.experiments, plan.n_files)
                file = opened.info
            chunk, record = read_chunk(file, statistic, plan, reader)
            partials.append(statistic.partial(chunk))
        except ReflectionLoadError as error:
            if not (skip_errors and error.skippable):
                raise
            record = FileRecord(file.index, max(file.nrows, 0), 0, (), skipped=str(error))
            if isinstance(file, DeferredFileInfo):
                opened = problem_file(file.path, file.index, reader, error)
        records.append(record if opened is None else dataclasses.replace(record, opened=opened))
    partial = statistic.complete(merge_tree(statistic, partials))
    return RunPartial(pruned(statistic, partial, hint), records)


def pruned(statistic: Statistic, partial: Any, hint: Any) -> Any:
    """``partial`` less what the driver's ``hint`` says cannot change the result
    (``Statistic.pruned``; nothing to prune without a hint or a partial)."""
    if hint is None or partial is None:
        return partial
    return statistic.pruned(partial, hint)


def _headers_with_rows(
    files: Sequence[FileInfo], rows: Statistic, plan: SelectionPlan, reader: str
) -> RunPartial | None:
    """The headers of a batch's deferred files with ``rows`` over their rows (a
    :class:`HeaderRows` that is complete), when every file reads plainly: ``None`` at
    the first problem of any kind, which :func:`_headers` then finds as the driver would
    (the run reads the rows again and names a row's problem in file order)."""
    if not all(isinstance(f, DeferredFileInfo) for f in files):
        return None
    try:
        found = process_batch(files, rows, plan, reader, skip_errors=False)
    except ReflectionLoadError:
        return None
    if any(r.opened is None or r.opened.info.problem for r in found.records):
        return None
    records = [FileRecord(r.index, r.n_rows, 0, (), opened=r.opened) for r in found.records]
    return RunPartial(HeaderRows(True, found.partial), records)


def _headers(
    files: Sequence[FileInfo],
    plan: SelectionPlan,
    reader: str,
    skip_errors: bool,
    with_rows: bool = False,
):
    """The headers of a batch's deferred files, read as the driver reads them (no rows:
    a row's problem is the run's to find, in file order; ``with_rows``: an incomplete
    :class:`HeaderRows` says so)."""
    records = []
    for file in files:
        if not isinstance(file, DeferredFileInfo):
            records.append(FileRecord(file.index, max(file.nrows, 0), 0, ()))
            continue
        try:
            opened = open_file(file.path, file.index, reader, plan.experiments, plan.n_files)
        except ReflectionLoadError as error:
            if not (skip_errors and error.skippable):
                raise
            opened = problem_file(file.path, file.index, reader, error)
        records.append(FileRecord(file.index, max(opened.info.nrows, 0), 0, (), opened=opened))
    return RunPartial(HeaderRows(False, None) if with_rows else None, records)


@dataclass(frozen=True)
class HeaderRows:
    """What a :class:`HeaderPass` computed from the rows: ``partial`` of its ``rows``
    statistic over every file when ``complete`` (else some batch read headers only)."""

    complete: bool
    partial: Any


class HeaderPass(Statistic):
    """The files' headers, read by the tasks: a program that needs them before its run
    gets those of 10^5 files from its workers instead of reading them one by one (the
    rows are read by the run itself; :func:`process_batch` reads the headers for this
    statistic, with the driver's errors).

    ``rows``: a statistic the program's run would otherwise compute in a pass of its
    own before the run (strong positions' panel extents), computed with the headers of
    small files whose rows all read plainly (:class:`HeaderRows`); any batch with a
    problem reads headers only, and the program then makes its own pass."""

    name = "headers"
    batchable = True

    def __init__(self, rows: Statistic | None = None):
        self.rows = rows

    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        return ()

    def partial(self, chunk: Chunk) -> None:
        return None

    def merge(self, first: Any, second: Any) -> HeaderRows | None:
        if first is None or second is None:
            return first or second
        if not (first.complete and second.complete):
            return HeaderRows(False, None)
        return HeaderRows(True, self.rows.merge_all([first.partial, second.partial]))

    def finalize(self, partial: Any) -> HeaderRows | None:
        return partial


def merge_tree(statistic: Statistic, partials: Iterable[Any]) -> Any:
    """Merge partials in a balanced tree (``merge`` is associative): n per-file partials
    with their own groups (one still per file) cost O(n log n), where a left fold
    re-merges a growing partial n times. See :class:`MergeStack`."""
    stack = MergeStack(statistic)
    for partial in partials:
        stack.add(partial)
    return stack.result()


class MergeStack:
    """A balanced merge as the partials arrive: :data:`MERGE_FAN_IN` partials that each
    cover ``FAN_IN^k`` inputs are merged at once (``Statistic.merge_all``), so that at
    most ``(FAN_IN - 1) log_FAN_IN(inputs) + 1`` partials are held at once (a task's
    partial may hold up to a few MB: plot samples, exact medians) and sizes stay
    balanced."""

    def __init__(self, statistic: Statistic, fan_in: int = MERGE_FAN_IN):
        self.statistic, self.fan_in = statistic, fan_in
        self.stack: list[tuple[int, Any]] = []  # (log_FAN_IN of the tasks covered, partial)

    def add(self, partial: Any) -> None:
        rank, fan_in = 0, self.fan_in
        self.stack.append((rank, partial))
        while len(self.stack) >= fan_in and self.stack[-fan_in][0] == rank:
            merged = self.statistic.merge_all(p for _, p in self.stack[-fan_in:])
            del self.stack[-fan_in:]
            rank += 1
            self.stack.append((rank, merged))

    def result(self) -> Any:
        return self.statistic.merge_all(p for _, p in self.stack)


class Hints:
    """The prune hints of a run's driver: :meth:`add` each task result as it is merged;
    calling gives the statistic's hint for what is merged so far (``None``: nothing)."""

    def __init__(self, statistic: Statistic):
        self.statistic, self.state = statistic, None

    def add(self, partial: Any) -> None:
        if partial is not None:
            self.state = self.statistic.fold_hint(self.state, partial)

    def __call__(self) -> Any:
        return self.statistic.prune_hint(self.state) if self.state is not None else None


def merge_runs(statistic: Statistic, first: RunPartial, second: RunPartial) -> RunPartial:
    return RunPartial(
        statistic.merge_all([first.partial, second.partial]), first.records + second.records
    )


def make_batches(
    files: Sequence[FileInfo], sizes: Sequence[int], n_workers: int
) -> Sequence[list[FileInfo]]:
    """Consecutive files in batches of about :data:`BATCH_BYTES` (at least one batch per
    worker when there are enough files); by count when sizes are not known (-1: files
    only listed, their headers left to the tasks: each batch made when handed out). On
    several workers, the last files (a batch per worker) go in batches a
    :data:`TAIL_SPLIT`-th that size, so that the workers finish together."""
    if any(size < 0 for size in sizes):
        per_batch = max(1, min(BATCH_FILES, -(-len(files) // max(1, 4 * n_workers))))
        return ListedBatches(files, per_batch, n_workers)
    total = sum(sizes)
    target = max(1, min(BATCH_BYTES, total // max(1, 4 * n_workers) or 1))
    tail_from = total - n_workers * target if _has_tail(total, target, n_workers) else total
    batches, current, current_bytes, done = [], FileBatch(), 0, 0
    for file, size in zip(files, sizes):
        current.append(file)
        current_bytes += size
        limit = target if done < tail_from else max(1, target // TAIL_SPLIT)
        if current_bytes >= limit or len(current) >= BATCH_FILES:
            batches.append(current)
            done += current_bytes
            current, current_bytes = FileBatch(), 0
    if current:
        batches.append(current)
    return batches


#: The last batch per worker is cut into this many smaller ones (see :func:`make_batches`).
TAIL_SPLIT = 4


def _has_tail(total: int, per_batch: int, n_workers: int) -> bool:
    """Whether a run of ``total`` (files or bytes) in batches of ``per_batch`` ends in
    smaller batches: on several workers, with at least 3 batches per worker."""
    return n_workers > 1 and per_batch >= TAIL_SPLIT and total >= 3 * n_workers * per_batch


class ListedBatches(Sequence):
    """Batches of ``per_batch`` consecutive files (the last ``n_workers`` batches' files
    in batches a :data:`TAIL_SPLIT`-th that size, on several workers), each made when it
    is asked for (the files of 10^6 listed stills are not all made before the first task
    starts)."""

    def __init__(self, files: Sequence[FileInfo], per_batch: int, n_workers: int = 1):
        self.files, self.per_batch = files, per_batch
        n = len(files)
        # whole batches, then the rest (a batch per worker or a little more) cut smaller
        self.n_head = -(-n // per_batch)
        self.head, self.tail_batch = n, per_batch
        if _has_tail(n, per_batch, n_workers):
            self.n_head = (n - n_workers * per_batch) // per_batch
            self.head = self.n_head * per_batch
            self.tail_batch = -(-(n - self.head) // (n_workers * TAIL_SPLIT))

    def __len__(self) -> int:
        return self.n_head + -(-(len(self.files) - self.head) // self.tail_batch)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self[k] for k in range(len(self))[item]]
        k = range(len(self))[item]
        if k < self.n_head:
            start = k * self.per_batch
            stop = min(start + self.per_batch, self.head)
        else:
            start = self.head + (k - self.n_head) * self.tail_batch
            stop = min(start + self.tail_batch, len(self.files))
        if isinstance(self.files, DeferredInfos):  # no object per file on the driver
            return ListedBatch(start, self.files.paths[start:stop])
        return FileBatch(self.files[start:stop])


class ListedBatch:
    """A batch of listed files (headers deferred) as its first index and its paths:
    handed out and pickled without an object per file; the task makes the files'
    :class:`~dials_refl_stats.pipeline.inputs.DeferredFileInfo` (:meth:`files`)."""

    __slots__ = ("start", "paths")

    def __init__(self, start: int, paths: Sequence[str]):
        self.start, self.paths = start, list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __reduce__(self):
        return ListedBatch, (self.start, self.paths)

    def files(self) -> list[DeferredFileInfo]:
        indices = range(self.start, self.start + len(self.paths))
        return list(map(deferred_info, indices, self.paths))


class Progress:
    """Progress lines in the log every :data:`PROGRESS_INTERVAL` seconds, and a bar on
    ``stream`` (default stderr) only when it is a terminal: workflows keep stderr empty."""

    def __init__(self, n_files: int, n_rows: int, stream=None):
        self.n_files, self.n_rows = n_files, n_rows
        self.files = self.rows = 0
        self.start = self.last = time.monotonic()
        self.stream = sys.stderr if stream is None else stream
        self.bar = bool(getattr(self.stream, "isatty", lambda: False)()) and n_files > 1

    def draw_bar(self) -> None:
        width = 30
        done = width * self.files // max(1, self.n_files)
        self.stream.write(
            f"\r[{'#' * done}{'.' * (width - done)}] {self.files}/{self.n_files} files"
        )
        if self.files >= self.n_files:
            self.stream.write("\n")
        self.stream.flush()

    def update(self, result: RunPartial) -> None:
        self.files += len(result.records)
        self.rows += sum(r.n_rows for r in result.records)
        if self.bar:
            self.draw_bar()
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL and self.files < self.n_files:
            self.last = now
            rate = self.files / (now - self.start)
            eta = (self.n_files - self.files) / rate if rate else float("nan")
            of_rows = f" of {self.n_rows}" if self.n_rows >= 0 else ""
            logger.info(
                "Progress: %d of %d files, %d%s rows, %.0f files/s, ETA %.0f s",
                self.files,
                self.n_files,
                self.rows,
                of_rows,
                rate,
                eta,
            )


def reduce_files(
    statistic: Statistic,
    plan: SelectionPlan,
    files: Sequence[FileInfo],
    sizes: Sequence[int],
    *,
    reader: str = "auto",
    skip_errors: bool = False,
    engine: Callable[..., Iterable[RunPartial]] | None = None,
    n_workers: int = 1,
) -> RunPartial:
    """Run ``statistic`` over ``files`` with ``engine`` (default: serial, in this process).

    An engine maps ``process_batch`` over batches and yields the results in any order.
    """
    batches = make_batches(files, sizes, n_workers)
    engine = engine or serial_engine
    # deferred headers: rows not known yet
    known = not isinstance(files, DeferredInfos) and all(f.nrows >= 0 for f in files)
    progress = Progress(len(files), sum(f.nrows for f in files) if known else -1)
    merged, records, hints = MergeStack(statistic), [], Hints(statistic)
    # The per-file records pile up (10^5 files: ~10^6 objects); the cyclic garbage
    # collector's full passes over all of them cost 10-20% of a run. They hold no cycles,
    # so what exists after each batch is frozen (left out of collections) until the end.
    gc.freeze()
    # tasks started later leave out what the merge so far makes useless (same result)
    results = engine(batches, statistic, plan, reader, skip_errors, hints)
    try:
        for result in results:
            progress.update(result)
            if result.partial is not None:
                merged.add(result.partial)
                hints.add(result.partial)
            records.extend(result.records)
            gc.freeze()
    finally:
        gc.unfreeze()
        # an engine stops its workers as soon as the run fails or is interrupted here
        getattr(results, "close", lambda: None)()
    records.sort(key=lambda r: r.index)
    return RunPartial(merged.result(), records)


def serial_engine(
    batches, statistic, plan, reader, skip_errors, hints: Callable[[], Any] | None = None
) -> Iterable[RunPartial]:
    """Batches in this process, one after the other (``hints``: the driver's
    :class:`Hints`, asked before each batch)."""
    for batch in batches:
        hint = hints() if hints is not None else None
        yield process_batch(batch, statistic, plan, reader, skip_errors, hint)
