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

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable

from dials_refl_stats.compact import decode, reflection_paths
from dials_refl_stats.report.generic import generic
from dials_refl_stats.report.model import Budget, Content, Table, fmt, records, size_text
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


def _input_files(inputs: dict) -> tuple[list[dict], list[str], int]:
    """``(reflection file rows, experiment paths, n_experiments)`` from either layout:
    column arrays (``inputs.reflections.paths``...) or a list of per-file objects."""
    reflections = inputs.get("reflections") or []
    experiments = inputs.get("experiments") or []
    if isinstance(reflections, dict):
        paths = reflection_paths(reflections)
        files = records(
            {
                "path": paths,
                "size_bytes": reflections.get("size_bytes") or [None] * len(paths),
                "rows": reflections.get("rows") or [],
                "reader": reflections.get("reader") or [],
                "identifiers": decode(reflections.get("n_identifiers")),
            }
        )
    else:
        files = [{**r, "identifiers": len(r.get("identifiers") or {})} for r in reflections]
    if isinstance(experiments, dict):
        n_experiments = experiments.get("n_experiments", 0)
        experiments = list(experiments.get("paths") or [])
    else:
        n_experiments = inputs.get("n_experiments", 0)
        experiments = [e.get("path") for e in experiments]
    return files, experiments, n_experiments


def _inputs_table(inputs: dict, budget: Budget) -> Table:
    files, experiments, n_experiments = _input_files(inputs)
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
        for r in files[:limit]
    ]
    rows += [["experiments", fmt(path), "", "", "", ""] for path in experiments[:limit]]
    notes = []
    for kind, items in (("reflection files", files), ("experiment files", experiments)):
        if len(items) > limit:
            notes.append(f"first {limit} of {len(items)} {kind} shown")
    reflections = inputs.get("reflections")
    totals = reflections if isinstance(reflections, dict) else {}
    total = totals.get("total_bytes", sum(int(r.get("size_bytes") or 0) for r in files))
    n_rows = totals.get("total_rows", sum(int(r.get("rows") or 0) for r in files))
    notes.append(
        f"{len(files)} reflection file(s), {size_text(total)}, {n_rows} rows; "
        f"{n_experiments} experiment(s)"
    )
    return Table(
        "Inputs",
        ["kind", "path", "size", "rows", "reader", "identifiers"],
        rows,
        "; ".join(notes),
        collapsed=False,
    )


def _selection(selection: dict, limit: int, paths: list[str]) -> list[tuple[str, str]]:
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
            where = item.get("path") or _files_text(index, paths)
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


def _files_text(index, paths: list[str]) -> str:
    """A file index (or a fallback's list or runs of them) as a path or a count."""
    if isinstance(index, int):
        return paths[index] if index < len(paths) else f"file {index}"
    indices = decode(index)
    if len(indices) == 1:
        return _files_text(indices[0], paths)
    return f"{len(indices)} files ({_files_text(indices[0], paths)}, …)" if indices else "no file"


def rerun_inputs(inputs: dict | None, limit: int) -> str:
    """The input paths of a document, shell-quoted, for the rerun hint (at most ``limit``)."""
    if not isinstance(inputs, dict):
        return ""
    files, experiments, _ = _input_files(inputs)
    paths = experiments + [r.get("path", "") for r in files]
    shown = " ".join(shlex.quote(str(p)) for p in paths[:limit])
    return shown + (f" … ({len(paths) - limit} more)" if len(paths) > limit else "")


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
    files, _, _ = _input_files(document.get("inputs") or {})
    phil = parameters.get("effective_phil")
    phil_chars = 0 if budget.compact else PHIL_CHARS
    title = program
    if files:
        more = f" + {len(files) - 1} more" if len(files) > 1 else ""
        title += f" · {os.path.basename(str(files[0].get('path', '')))}{more}"
    return Section(
        anchor=anchor,
        title=title,
        program=program,
        status=status,
        content=content,
        meta=_meta(document),
        selection=_selection(selection, budget.list_items, [str(f.get("path")) for f in files])
        if isinstance(selection, dict)
        else [],
        inputs=_inputs_table(document["inputs"], budget)
        if isinstance(document.get("inputs"), dict)
        else None,
        effective_phil=phil if phil is None else phil[:phil_chars],
        phil_truncated=phil is not None and len(phil) > phil_chars,
        diff_phil=parameters.get("diff_phil"),
        json_view=None
        if budget.compact
        else bounded_json(document.get("results"), budget.list_items, budget.json_chars),
        rerun_inputs=rerun_inputs(document.get("inputs"), budget.list_items),
        rerun_program=rerun_program,
    )
