"""Inputs of a run: reflection files (explicit, directories, globs, list files), their
headers, and how their rows map to the experiments given."""

from __future__ import annotations

import collections
import glob
import itertools
import operator
import os
import struct
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from dials_refl_stats.analysis.statistic import PER_FILE, ExperimentInfo, FileInfo
from dials_refl_stats.compact import (
    common_directory,
    compact_column,
    directory_prefix,
    encode_names,
    split_paths,
)
from dials_refl_stats.experiment_groups import identifier_index
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.experiment_models import gc_paused, run_firsts
from dials_refl_stats.reader import msgpack_small, read_layout
from dials_refl_stats.reader.formats import sniff_bytes
from dials_refl_stats.reader.msgpack_layout import ColumnSpan
from dials_refl_stats.reflections import (
    ReflectionLoadError,
    _as_load_error,
    check_regular,
    open_reflection_file,
)

#: Files named by a directory or a glob pattern.
REFLECTION_PATTERN = "*.refl"
#: A file of paths, one per line (for more files than a command line holds).
LIST_SUFFIXES = (".txt", ".lst", ".list")
GLOB_CHARACTERS = "*?["


def is_input_collection(argument: str) -> bool:
    """A directory, a glob pattern or a list file (``@paths.txt`` or ``paths.txt``)."""
    if argument.startswith("@"):
        return True
    if "=" in argument:
        return False
    if os.path.isdir(argument):
        return True
    if any(c in argument for c in GLOB_CHARACTERS) and not os.path.exists(argument):
        return True
    return argument.endswith(LIST_SUFFIXES) and os.path.isfile(argument)


def list_file_path(argument: str) -> str | None:
    """The list file an input collection names (``@paths.txt`` or ``paths.txt``), else
    ``None`` (a directory or a glob pattern)."""
    if argument.startswith("@"):
        return argument[1:]
    return argument if argument.endswith(LIST_SUFFIXES) else None


def list_files(args: Sequence[str]) -> list[str]:
    """The list files among ``args`` (inputs too: never to be overwritten)."""
    paths = (list_file_path(a) for a in args if is_input_collection(a))
    return [p for p in paths if p is not None]


def expand_collection(argument: str) -> list[str]:
    """The reflection files a directory, glob or list file names (sorted; ``Sorry`` if none)."""
    path = list_file_path(argument)
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                lines = [line.strip() for line in handle]
        except (OSError, UnicodeDecodeError) as error:
            raise Sorry(
                f"{path}: cannot read the list of files ({error.__class__.__name__})"
            ) from None
        base = os.path.dirname(path)
        listed = [line for line in lines if line and not line.startswith("#")]
        if len(set(listed)) != len(listed):  # e.g. not a list of paths at all
            counts = collections.Counter(listed)
            twice = next(line for line in listed if counts[line] > 1)
            raise Sorry(
                f"{path}: line {lines.index(twice, lines.index(twice) + 1) + 1} names "
                f"{twice!r} again (a list file holds one reflection file path per line)"
            )
        found = [line if os.path.isabs(line) else os.path.join(base, line) for line in listed]
        what = "list file"
    elif os.path.isdir(argument):
        found = _reflection_files_in(argument)
        what = f"directory (no {REFLECTION_PATTERN} files)"
    else:
        found = sorted(p for p in glob.glob(argument) if os.path.isfile(p))
        what = "pattern (no files match)"
    if not found:
        raise Sorry(f"{argument}: empty {what}")
    return found


def _reflection_files_in(directory: str) -> list[str]:
    """What ``sorted(glob(directory/*.refl))`` gives (names not starting with a dot),
    from one listing: ``glob`` matches and joins each of 10^5 names in Python."""
    suffix = REFLECTION_PATTERN.lstrip("*")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    names = [n for n in names if n.endswith(suffix) and not n.startswith(".")]
    names.sort()  # as the paths would sort: they share the prefix
    return list(map(os.path.join(directory, "").__add__, names))


def split_collections(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(reflection files from directories/globs/lists, the other arguments)."""
    expanded, others = [], []
    for argument in args:
        if is_input_collection(argument):
            expanded.extend(expand_collection(argument))
        else:
            others.append(argument)
    return expanded, others


def refuse_duplicates(paths: Sequence[str]) -> None:
    """``Sorry`` when a file is given twice (it would be counted twice).

    Real paths from each directory's real path (resolved once) and the file name; only
    symbolic links are resolved one by one (a directory of many files is listed once to
    find them, instead of one ``lstat`` per file).
    """
    if _distinct_in_one_directory(paths):
        return
    seen: dict[str, str] = {}
    real_dirs: dict[str, str] = {}
    parts = split_paths(paths)
    listed, links = _symbolic_links(parts)
    for path, part in zip(paths, parts):
        directory, name = part
        real_dir = real_dirs.get(directory)
        if real_dir is None:
            real_dir = real_dirs[directory] = os.path.realpath(directory or ".")
        if directory in listed:
            link = part in links
        else:
            link = os.path.islink(path)
        if name in ("", ".", "..") or link:
            real = os.path.realpath(path)
        else:
            real = os.path.join(real_dir, name)
        if real in seen:
            raise Sorry(f"{path}: given twice (also as {seen[real]}); each file counts once")
        seen[real] = path


def _distinct_in_one_directory(paths: Sequence[str]) -> bool:
    """Whether the paths are distinct plain names in one directory that holds no
    symbolic link, so that no file can be given twice (a directory of 10^6 stills: one
    listing, and no real path or split per file)."""
    if len(paths) < _LIST_DIRECTORY_FROM or set(map(type, paths)) != {str}:
        return False
    directory = directory_prefix(paths)
    if directory is None or len(set(paths)) != len(paths):
        return False
    try:
        with os.scandir(directory) as entries:
            return not any(map(os.DirEntry.is_symlink, entries))
    except OSError:
        return False


#: Paths in one directory from which the directory is listed to find symbolic links.
_LIST_DIRECTORY_FROM = 64


def _symbolic_links(parts: list[tuple[str, str]]) -> tuple[set[str], set[tuple[str, str]]]:
    """(directories listed, their (directory, name) entries that are symbolic links):
    one listing for a directory holding many of the paths, where one ``lstat`` per path
    would cost more."""
    per_directory: dict[str, int] = {}
    for directory, _name in parts:
        per_directory[directory] = per_directory.get(directory, 0) + 1
    listed: set[str] = set()
    links: set[tuple[str, str]] = set()
    for directory, count in per_directory.items():
        if count < _LIST_DIRECTORY_FROM:
            continue
        try:
            with os.scandir(directory or ".") as entries:
                names = [e.name for e in entries if e.is_symlink()]
        except OSError:
            continue
        listed.add(directory)
        links.update((directory, n) for n in names)
    return listed, links


#: Shared (column name, type name) tuples of the files' headers (most files share one),
#: and their column name sets.
_SCHEMAS: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
_NAMES: dict[tuple[tuple[str, str], ...], frozenset[str]] = {}


@dataclass(frozen=True)
class ColumnIndex:
    """Where a msgpack file's columns are, as the driver read them from its header.

    Compact (a schema shared by files with the same columns, and one ``bytes`` of
    offsets and lengths), so that 10^5 of them cost little on the driver and in tasks.
    """

    schema: tuple[tuple[str, str], ...]
    #: int64 (offset, nbytes) per column, in schema order; ``None`` for a small file,
    #: which tasks read whole (:mod:`~dials_refl_stats.reader.msgpack_small`)
    offsets: bytes | None

    @property
    def small(self) -> bool:
        return self.offsets is None

    @classmethod
    def from_layout(cls, layout: Any) -> "ColumnIndex":
        spans = list(layout.columns.values())
        key = tuple((s.name, s.type_name) for s in spans)
        schema = _SCHEMAS.setdefault(key, key)
        values = [v for s in spans for v in (s.offset, s.nbytes)]
        return cls(schema, struct.pack(f"<{len(values)}q", *values))

    @property
    def names(self) -> frozenset[str]:
        names = _NAMES.get(self.schema)
        if names is None:
            names = _NAMES.setdefault(self.schema, frozenset(n for n, _t in self.schema))
        return names

    def spans(self, nrows: int) -> dict[str, ColumnSpan]:
        """Every column's :class:`ColumnSpan` (``nrows`` rows each, as checked on reading)."""
        values = struct.unpack(f"<{2 * len(self.schema)}q", self.offsets)
        return {
            name: ColumnSpan(name, type_name, nrows, values[2 * i], values[2 * i + 1])
            for i, (name, type_name) in enumerate(self.schema)
        }


@dataclass(**PER_FILE)
class HeaderFileInfo(FileInfo):
    """A :class:`FileInfo` that also carries what the driver read from the header, so
    that tasks read the columns without walking the header again."""

    #: file size when the header was read (a changed file is read from scratch)
    size_bytes: int = -1
    columns: ColumnIndex | None = None


@dataclass(**PER_FILE)
class OpenedFile:
    """A reflection file's header, as read on the driver."""

    info: FileInfo
    columns: frozenset[str]
    size_bytes: int
    backend: str


def experiment_infos(experiments: Any) -> list[ExperimentInfo]:
    """Plain descriptions of a dxtbx ``ExperimentList`` (or a light one)."""
    experiments = experiments or []
    if _stills_only(experiments):
        identifiers = (e or None for e in map(_IDENTIFIER, experiments))
        with gc_paused():
            return list(map(ExperimentInfo, itertools.count(), identifiers, _NONES, _NONES))
    infos = []
    sweeps: dict[int, int] = {}  # id of a scan model -> its sweep number
    for index, experiment in enumerate(experiments):
        scan = experiment.scan
        image_range = sweep = None
        if scan is not None and scan.get_num_images() >= 1 and not _is_still(experiment):
            first, last = scan.get_image_range()
            image_range = (int(first), int(last))
            # experiments naming one scan entry of a file share its model (dxtbx and the
            # light reader alike); equal scans of different sweeps are different models
            sweep = sweeps.setdefault(id(scan), len(sweeps))
        infos.append(ExperimentInfo(index, experiment.identifier or None, image_range, sweep))
    return infos


#: Images of all the run's scans (each sweep once) that programs with a row per image
#: take: 2 x 10^6 (a 3600° sweep at 0.01° has 360,000; a row costs ~0.4 kB), beyond
#: which a scan is no real one and its table would not fit in memory.
MAX_SCAN_IMAGES = 2_000_000


def check_scan_lengths(infos: Sequence[ExperimentInfo], paths: Sequence[str]) -> None:
    """``Sorry`` naming the experiment files when the scans have more images than
    :data:`MAX_SCAN_IMAGES` (a hand-edited image range of 2^31 images, say)."""
    lengths: dict[int, tuple[int, int]] = {}  # sweep -> (images, experiment)
    for info in infos:
        if info.image_range is not None and info.sweep is not None:
            first, last = info.image_range
            lengths.setdefault(info.sweep, (last - first + 1, info.index))
    if sum(n for n, _ in lengths.values()) <= MAX_SCAN_IMAGES:
        return
    n, index = max(lengths.values())
    first, last = infos[index].image_range
    raise Sorry(
        f"{', '.join(paths)}: the scans have more than {MAX_SCAN_IMAGES:,} images in all "
        f"(experiment {index}: {n:,}, images {first} to {last}), more than a table of "
        "one row per image is made for"
    )


def _is_still(experiment: Any) -> bool:
    scan = experiment.scan
    return scan is None or (scan.get_oscillation()[1] == 0 and scan.get_num_images() == 1)


_IDENTIFIER = operator.attrgetter("identifier")
_NONES = itertools.repeat(None)


def _stills_only(experiments: Any) -> bool:
    """Whether no experiment has a scan (asked of the first of each run of experiments
    with the same models, :func:`~.experiment_models.run_firsts`)."""
    return all(e.scan is None for e in run_firsts(experiments))


class ExperimentMismatchError(ReflectionLoadError):
    """A readable table whose identifiers do not fit the experiments given: the inputs
    disagree, so ``input.on_error=skip`` stops too (found by the driver or by a task
    that reads the header)."""

    skippable = False


def experiment_of_id(
    path: str,
    identifiers: dict[int, str],
    experiments: Sequence[ExperimentInfo],
    n_files: int,
) -> dict[int, int]:
    """Table ``id`` -> experiment index, by identifier (else by position; one file only).

    One rule for every program: with experiments given, every experiment identifier of
    the table must be in the experiment list (:class:`ExperimentMismatchError`).
    """
    if not experiments:
        return {}
    if identifiers:
        index = identifier_index(experiments)
        missing = [(i, s) for i, s in sorted(identifiers.items()) if s not in index]
        if missing:
            i, identifier = missing[0]
            raise ExperimentMismatchError(
                f"{path}: experiment identifier {identifier} (id {i}) is not in the "
                "experiments given; pass the .expt file written with this table"
            )
        return {i: index[s] for i, s in identifiers.items()}
    if n_files > 1:
        raise ExperimentMismatchError(
            f"{path}: the table has no experiment identifiers, so its rows cannot be "
            "matched to experiments when several reflection files are given"
        )
    return {e.index: e.index for e in experiments}


def one_sweep_id(
    identifiers: dict[int, str], mapping: dict[int, int], experiments: Sequence[ExperimentInfo]
) -> int | None:
    """The id whose images unassigned rows (``id`` -1) are on: the file's only experiment,
    or, with experiments, the first of several sharing one scan (multiple lattices of one
    sweep; two sweeps with equal image ranges are not one)."""
    ids = sorted(mapping) if mapping else sorted(identifiers)
    if not ids:
        return None
    if len(ids) == 1:
        return ids[0]
    sweeps = {experiments[mapping[i]].sweep for i in ids} if mapping else set()
    if len(sweeps) == 1 and None not in sweeps:
        return ids[0]
    return None


#: The empty identifiers and experiment mapping of files listed or read without
#: experiments (never changed: one dict for 10^5 files instead of one each).
_NO_MAPPING: dict = {}

#: The column names of a file not read yet.
_NO_COLUMNS: frozenset[str] = frozenset()

#: Runs of at least this many files may leave small files' headers to the tasks.
DEFER_MIN_FILES = 64


@dataclass(**PER_FILE)
class DeferredFileInfo(FileInfo):
    """A file whose header is read by the task that reads its rows (``nrows`` and
    ``size_bytes`` are -1 until then): the driver of a run of 10^5 stills only lists the
    files."""

    size_bytes: int = -1


class DeferredInfos(Sequence):
    """The :class:`DeferredFileInfo` of each listed path, made when asked for (a slice is
    a list): a run of 10^6 stills makes no object per file before its tasks."""

    def __init__(self, paths: Sequence[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item):
        if isinstance(item, slice):
            indices = range(len(self.paths))[item]
            return [deferred_info(i, self.paths[i]) for i in indices]
        index = range(len(self.paths))[item]
        return deferred_info(index, self.paths[index])

    def __iter__(self) -> Iterator[DeferredFileInfo]:
        return map(deferred_info, itertools.count(), self.paths)


def deferred_info(index: int, path: str) -> DeferredFileInfo:
    return DeferredFileInfo(index, path, -1, _NO_MAPPING, _NO_MAPPING)


class ListedFiles(Sequence):
    """The :class:`OpenedFile` of each listed file (:class:`DeferredFileInfo`, size
    unknown), made when asked for: what :func:`open_files` gives when it defers every
    header to the tasks."""

    def __init__(self, paths: Sequence[str]):
        self.paths = paths
        self.infos = DeferredInfos(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [_listed(info) for info in self.infos[item]]
        return _listed(self.infos[item])

    def __iter__(self) -> Iterator[OpenedFile]:
        return map(_listed, self.infos)


def _listed(info: DeferredFileInfo) -> OpenedFile:
    return OpenedFile(info, _NO_COLUMNS, -1, "fast")


def open_files(
    paths: Sequence[str],
    reader: str,
    experiments: Sequence[ExperimentInfo],
    skip_errors: bool = False,
    defer: bool = False,
) -> Sequence[OpenedFile]:
    """Read every file's header once; any problem is a one-line ``Sorry`` (or, with
    ``skip_errors``, recorded as the file's ``problem``).

    ``defer``: in a run of many files, the files are only listed (:class:`ListedFiles`,
    size unknown); the tasks read the headers of small files with their rows, and open
    any other file as the driver would have (with the experiments of the run's
    :class:`~dials_refl_stats.pipeline.execute.SelectionPlan`).
    """
    refuse_duplicates(paths)
    deferring = (
        defer
        and reader in ("auto", "fast")
        and len(paths) >= DEFER_MIN_FILES
        and msgpack_small.available()
    )
    if deferring:  # not even a stat: the task reads the file whole, or refers it on
        return ListedFiles(paths)
    opened = []
    for index, path in enumerate(paths):
        try:
            opened.append(open_file(path, index, reader, experiments, len(paths)))
        except ReflectionLoadError as error:
            if not (skip_errors and error.skippable):
                raise Sorry(str(error)) from None
            opened.append(problem_file(path, index, reader, error))
    return opened


def open_file(
    path: str, index: int, reader: str, experiments: Sequence[ExperimentInfo], n_files: int
) -> OpenedFile:
    """One file's header (``ReflectionLoadError`` when it cannot be read)."""
    check_regular(path)
    if reader in ("auto", "fast"):
        fast = _open_msgpack(path, index, experiments, n_files)
        if fast is not None:
            return fast
    source = open_reflection_file(path, reader)
    info = file_info(FileInfo, index, path, source.nrows, source.identifiers, experiments, n_files)
    return OpenedFile(info, source.column_names, os.path.getsize(path), source.backend)


def file_info(kind, index, path, nrows, identifiers, experiments, n_files, **extra) -> FileInfo:
    """A ``kind`` (:class:`FileInfo` or a subclass) with the file's experiment mapping."""
    identifiers = dict(identifiers)
    mapping = experiment_of_id(path, identifiers, experiments, n_files)
    return kind(
        index=index,
        path=path,
        nrows=nrows,
        identifiers=identifiers,
        experiment_of_id=mapping,
        unassigned_id=one_sweep_id(identifiers, mapping, experiments),
        **extra,
    )


def problem_file(path: str, index: int, reader: str, error: Exception) -> OpenedFile:
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    info = FileInfo(index=index, path=path, nrows=0, problem=str(error))
    return OpenedFile(info, frozenset(), size, reader)


def _open_msgpack(
    path: str, index: int, experiments: Sequence[ExperimentInfo], n_files: int
) -> OpenedFile | None:
    """A msgpack file's header read through one open handle, kept for the tasks (None
    for anything else: other formats and errors take the general path). A small file
    is read whole and decoded in C (:mod:`~dials_refl_stats.reader.msgpack_small`)."""
    small = _open_small(path, index, experiments, n_files)
    if small is not None:
        return small
    try:
        fh = open(path, "rb")
    except OSError:
        return None
    with fh:
        try:
            kind = sniff_bytes(fh.read(512))
            size = os.fstat(fh.fileno()).st_size
        except OSError:
            return None
        if kind != "msgpack":
            return None
        with _as_load_error(path):
            layout = read_layout(path, fh)
    info = file_info(
        HeaderFileInfo,
        index,
        path,
        layout.nrows,
        layout.identifiers,
        experiments,
        n_files,
        size_bytes=size,
        columns=ColumnIndex.from_layout(layout),
    )
    return OpenedFile(info, info.columns.names, size, "fast")


def _open_small(
    path: str, index: int, experiments: Sequence[ExperimentInfo], n_files: int
) -> OpenedFile | None:
    """A small msgpack file's header from one read and one C decode (None otherwise)."""
    if not msgpack_small.available():
        return None
    table, size = msgpack_small.load_small(path)
    if table is None:
        return None
    return small_file(path, index, table, size, experiments, n_files)


#: ColumnIndex of small files by their (names, types): one object for the files that
#: share their columns (for 10^5 stills, usually one).
_SMALL_INDEX: dict[tuple[tuple[str, ...], tuple[str, ...]], ColumnIndex] = {}


def small_column_index(table: msgpack_small.SmallTable) -> ColumnIndex:
    """The shared :class:`ColumnIndex` of a small file's columns."""
    columns = table.columns
    key = (tuple(columns), tuple([column[0] for column in columns.values()]))
    index = _SMALL_INDEX.get(key)
    if index is None:
        schema = tuple(zip(*key))
        index = ColumnIndex(_SCHEMAS.setdefault(schema, schema), None)
        index = _SMALL_INDEX.setdefault(key, index)
    return index


def small_file(
    path: str,
    index: int,
    table: msgpack_small.SmallTable,
    size: int,
    experiments: Sequence[ExperimentInfo],
    n_files: int,
) -> OpenedFile:
    """The :class:`OpenedFile` of a small file decoded whole."""
    columns = small_column_index(table)
    if experiments:
        info = file_info(
            HeaderFileInfo,
            index,
            path,
            table.nrows,
            table.identifiers,
            experiments,
            n_files,
            size_bytes=size,
            columns=columns,
        )
    else:  # no mapping to check: the decoded identifiers are the file's own dict
        identifiers = table.identifiers
        info = HeaderFileInfo(
            index=index,
            path=path,
            nrows=table.nrows,
            identifiers=identifiers,
            experiment_of_id=_NO_MAPPING,
            unassigned_id=one_sweep_id(identifiers, {}, experiments),
            size_bytes=size,
            columns=columns,
        )
    return OpenedFile(info, columns.names, size, "fast")


def describe_inputs(
    opened: Sequence[OpenedFile],
    experiment_paths: Sequence[str],
    n_experiments: int,
    compact: bool = False,
    paths: Sequence[str] | None = None,
) -> dict:
    """The ``inputs`` block of the JSON envelope: file names relative to their common
    directory and one column array per field; in the compact form the names as a
    numbered template, no per-file sizes, columns as runs when regular. ``paths``: the
    files' paths, when known (else read from ``opened``)."""
    directory, names = common_directory(paths or [f.info.path for f in opened])
    sizes = [f.size_bytes for f in opened]
    infos = [f.info for f in opened]
    rows = [info.nrows for info in infos]
    reflections = {
        "n_files": len(opened),
        "directory": directory,
        "paths": encode_names(names) if compact else names,
        "size_bytes": sizes,
        "rows": rows,
        "n_identifiers": [len(info.identifiers) for info in infos],
        "reader": sorted({f.backend for f in opened if not f.info.problem}),
        "total_bytes": sum(sizes),
        "total_rows": sum(rows),
    }
    if compact:
        del reflections["size_bytes"]
        for name in ("rows", "n_identifiers"):
            reflections[name] = compact_column(reflections[name])
    return {
        "reflections": reflections,
        "experiments": {"paths": list(experiment_paths), "n_experiments": n_experiments},
    }
