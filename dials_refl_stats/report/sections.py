"""Report sections: the model, the registry of builders by program name, and the parts
every section shares (inputs, selection, parameters, a bounded JSON view).

A builder turns one document into :class:`Content` (summary, notes, figures, tables); adding
a statistic to the report is one function::

    @builder("dials.new_statistic")
    def new_statistic(document: dict, budget: Budget) -> Content:
        ...

Documents of programs without a builder, or whose builder fails, get :func:`generic`.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable

from dials_refl_stats.compact import decode, iter_decoded, iter_names, name_at
from dials_refl_stats.report.generic import generic
from dials_refl_stats.report.model import Budget, Content, Table, fmt, size_text
from dials_refl_stats.report.thin import bounded_json


@dataclass
class Section:
    """One document (or one statistic not computed) as shown in the report."""

    anchor: str
    title: str
    program: str
    status: str  # "ok", "empty", "generic", "not computed"
    content: Content
    meta: list[tuple[str, str]] = field(default_factory=list)
    selection: list[tuple[str, str]] = field(default_factory=list)
    inputs: Table | None = None
    effective_phil: str | None = None
    diff_phil: str | None = None
    json_view: str | None = None
    rerun_inputs: str = ""
    phil_truncated: bool = False
    #: The program that accepts ``effective_phil`` (the document's ``program``, unless its
    #: parameters name another: ``dials.refl_stats`` for a suite phil)
    rerun_program: str = ""


#: Longest parameter text shown (a rerunnable phil file is far shorter).
PHIL_CHARS = 200_000

Builder = Callable[[dict, Budget], Content]

#: Section builders by ``program`` name.
BUILDERS: dict[str, Builder] = {}


def builder(program: str) -> Callable[[Builder], Builder]:
    """Register the decorated function as the section builder of ``program``."""

    def register(function: Builder) -> Builder:
        BUILDERS[program] = function
        return function

    return register


def not_computed(statistic: str, reason: str) -> dict:
    """A report entry for a statistic that was not computed (shown as a note)."""
    return {"program": statistic, "not_computed": reason}


@dataclass
class InputFiles:
    """A document's inputs, as far as a report shows them: the first reflection files
    (``shown``: path, size_bytes, rows, reader, identifiers), how many there are, their
    totals, and any file's path by index (10^6 listed stills are not all decoded)."""

    shown: list[dict]
    n_files: int
    total_bytes: int
    total_rows: int
    readers: list[str]
    experiments: list[str]
    n_experiments: int
    path_of: Callable[[int], str | None]


def input_files(inputs: dict, limit: int) -> InputFiles:
    """:class:`InputFiles` of ``inputs`` in either layout: column arrays
    (``inputs.reflections.paths``, compact or full) or a list of per-file objects."""
    reflections = inputs.get("reflections") or []
    experiments = inputs.get("experiments") or []
    if isinstance(experiments, dict):
        n_experiments = experiments.get("n_experiments", 0)
        experiments = list(experiments.get("paths") or [])
    else:
        n_experiments = inputs.get("n_experiments", 0)
        experiments = [e.get("path") for e in experiments]
    if not isinstance(reflections, dict):
        rows = [r for r in reflections if isinstance(r, dict)]
        return InputFiles(
            shown=[{**r, "identifiers": len(r.get("identifiers") or {})} for r in rows[:limit]],
            n_files=len(rows),
            total_bytes=sum(int(r.get("size_bytes") or 0) for r in rows),
            total_rows=sum(int(r.get("rows") or 0) for r in rows),
            readers=sorted({str(r["reader"]) for r in rows if r.get("reader")}),
            experiments=experiments,
            n_experiments=n_experiments,
            path_of=lambda i: rows[i].get("path") if 0 <= i < len(rows) else None,
        )
    directory = reflections.get("directory") or ""
    names = reflections.get("paths") or []
    readers = list(reflections.get("reader") or [])
    columns = [
        itertools.islice(iter_names(names), limit),
        itertools.chain(iter_decoded(reflections.get("size_bytes")), itertools.repeat(None)),
        itertools.chain(iter_decoded(reflections.get("rows")), itertools.repeat(None)),
        itertools.chain(iter_decoded(reflections.get("n_identifiers")), itertools.repeat(None)),
    ]
    shown = [
        {
            "path": os.path.join(directory, name),
            "size_bytes": size,
            "rows": n_rows,
            "reader": readers[0] if len(readers) == 1 else None,
            "identifiers": n_identifiers,
        }
        for name, size, n_rows, n_identifiers in zip(*columns)
    ]
    n_files = reflections.get("n_files")
    if not isinstance(n_files, int):
        n_files = sum(1 for _ in iter_names(names))

    def path_of(index: int) -> str | None:
        name = name_at(names, index)
        return None if name is None else os.path.join(directory, name)

    return InputFiles(
        shown=shown,
        n_files=n_files,
        total_bytes=_total(reflections, "total_bytes", "size_bytes"),
        total_rows=_total(reflections, "total_rows", "rows"),
        readers=readers,
        experiments=experiments,
        n_experiments=n_experiments,
        path_of=path_of,
    )


def _total(reflections: dict, total: str, column: str) -> int:
    """``reflections[total]``, or the sum of its per-file ``column``."""
    if total in reflections:
        return int(reflections[total] or 0)
    return sum(int(v or 0) for v in iter_decoded(reflections.get(column)))


def _inputs_table(files: InputFiles, budget: Budget) -> Table:
    limit = budget.list_items
    rows = [
        [
            "reflections",
            fmt(r.get("path")),
            size_text(r.get("size_bytes")),
            fmt(r.get("rows")),
            fmt(r.get("reader")),
            fmt(r.get("identifiers")),
        ]
        for r in files.shown[:limit]
    ]
    rows += [["experiments", fmt(path), "", "", "", ""] for path in files.experiments[:limit]]
    notes = []
    for kind, n in (
        ("reflection files", files.n_files),
        ("experiment files", len(files.experiments)),
    ):
        if n > limit:
            notes.append(f"first {limit} of {n} {kind} shown")
    notes.append(
        f"{files.n_files} reflection file(s), {size_text(files.total_bytes)}, "
        f"{files.total_rows} rows; {files.n_experiments} experiment(s)"
    )
    if len(files.readers) > 1:
        notes.append(f"read by {', '.join(files.readers)}")
    return Table(
        "Inputs",
        ["kind", "path", "size", "rows", "reader", "identifiers"],
        rows,
        "; ".join(notes),
        collapsed=False,
    )


def _selection(
    selection: dict, limit: int, path_of: Callable[[int], str | None]
) -> list[tuple[str, str]]:
    out = []
    if "n_selected" in selection and "n_rows" in selection:
        out.append(("selected rows", f"{selection['n_selected']} of {selection['n_rows']}"))
    if selection.get("flags") is not None:
        out.append(("flags", f"{fmt(selection['flags'])} (rule {fmt(selection.get('rule'))})"))
    for key in ("dials_equivalent", "rule_text", "fallback_rule"):
        if selection.get(key):
            out.append((key.replace("_", " "), fmt(selection[key])))
    for key in ("fallbacks", "skipped"):
        items = selection.get(key) or []
        for item in items[:limit] if isinstance(items, list) else []:
            index = item.get("file_index")
            where = item.get("path") or _files_text(index, path_of)
            flags = f" (uses {fmt(item['flags'])})" if item.get("flags") else ""
            out.append(
                (
                    key[:-1] if key.endswith("s") else key,
                    f"{where}{flags}: {fmt(item.get('reason'))}",
                )
            )
        if isinstance(items, list) and len(items) > limit:
            out.append((key, f"… {len(items) - limit} more files"))
    return out


def _files_text(index, path_of: Callable[[int], str | None]) -> str:
    """A file index (or a fallback's list or runs of them) as a path or a count."""
    if isinstance(index, int):
        path = path_of(index)
        return f"file {index}" if path is None else str(path)
    indices = decode(index)
    if len(indices) == 1:
        return _files_text(indices[0], path_of)
    return f"{len(indices)} files ({_files_text(indices[0], path_of)}, …)" if indices else "no file"


def rerun_inputs(files: InputFiles | None, limit: int) -> str:
    """The input paths of a document, shell-quoted, for the rerun hint (at most ``limit``)."""
    if files is None:
        return ""
    paths = files.experiments + [r.get("path", "") for r in files.shown]
    shown = " ".join(shlex.quote(str(p)) for p in paths[:limit])
    n_paths = len(files.experiments) + files.n_files
    return shown + (f" … ({n_paths - limit} more)" if n_paths > limit else "")


def _meta(document: dict) -> list[tuple[str, str]]:
    keys = ("program", "version", "dials_version", "schema_version")
    return [(k.replace("_", " "), fmt(document.get(k))) for k in keys if k in document]


def anchor_for(index: int, program: str) -> str:
    return f"s{index}-" + re.sub(r"[^a-z0-9]+", "-", program.lower()).strip("-")


def build_section(document: dict, index: int, budget: Budget) -> Section:
    """The section of one document: its builder's content plus the shared parts."""
    program = str(document.get("program") or "unknown program")
    anchor = anchor_for(index, program)
    if "not_computed" in document:
        content = Content(notes=[f"Not computed: {fmt(document['not_computed'])}"])
        return Section(anchor, program, program, "not computed", content)
    status = "ok"
    function = BUILDERS.get(program)
    content = None
    if function is not None:
        try:
            content = function(document, budget)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            content = generic(document, budget)
            content.notes.insert(
                0, f"The {program} section could not be built ({error!r}); shown generically."
            )
            status = "generic"
    if content is None:
        content = generic(document, budget)
        status = "generic"
    selection = document.get("selection") or {}
    if status == "ok" and selection.get("n_selected") == 0:
        status = "empty"
    parameters = document.get("parameters") or {}
    rerun_program = parameters.get("rerun_program") or program
    inputs = document.get("inputs")
    files = input_files(inputs, budget.list_items) if isinstance(inputs, dict) else None
    phil = parameters.get("effective_phil")
    phil_chars = 0 if budget.compact else PHIL_CHARS
    title = program
    if files is not None and files.shown:
        more = f" + {files.n_files - 1} more" if files.n_files > 1 else ""
        title += f" · {os.path.basename(str(files.shown[0].get('path', '')))}{more}"
    return Section(
        anchor=anchor,
        title=title,
        program=program,
        status=status,
        content=content,
        meta=_meta(document),
        selection=_selection(
            selection, budget.list_items, files.path_of if files else lambda i: None
        )
        if isinstance(selection, dict)
        else [],
        inputs=_inputs_table(files, budget) if files is not None else None,
        effective_phil=phil if phil is None else phil[:phil_chars],
        phil_truncated=phil is not None and len(phil) > phil_chars,
        diff_phil=parameters.get("diff_phil"),
        json_view=None
        if budget.compact
        else bounded_json(document.get("results"), budget.list_items, budget.json_chars),
        rerun_inputs=rerun_inputs(files, budget.list_items),
        rerun_program=rerun_program,
    )
