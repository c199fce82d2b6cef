"""Several statistics in one pass: each file is read once, every statistic sees its rows.

:class:`CombinedStatistic` is itself a statistic: it reads the union of the columns its
members need, applies each member's own flag selection (with the shared fallback rule)
to each chunk, and keeps one partial, plus per-file selection counts, per member.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dials_refl_stats.analysis.statistic import Chunk, Statistic
from dials_refl_stats.pipeline.execute import (
    FileRecord,
    SelectionPlan,
    merge_tree,
    pack_records,
    unpack_records,
)
from dials_refl_stats.pipeline.small_files import select_per_file


@dataclass
class Member:
    statistic: Statistic
    plan: SelectionPlan


@dataclass
class CombinedPartial:
    partials: dict[str, Any]
    records: dict[str, list[FileRecord]] = field(default_factory=dict)
    #: member -> the first file (index) lacking a column it reads: the member skipped it
    missing: dict[str, int] = field(default_factory=dict)

    def __reduce__(self):
        """Pickled with each member's records as columns (:func:`pack_records`)."""
        packed = {name: pack_records(records) for name, records in self.records.items()}
        return _unpacked_combined, (self.partials, packed, self.missing)


def _unpacked_combined(partials: dict[str, Any], records: dict, missing=None) -> CombinedPartial:
    unpacked = {name: unpack_records(r) for name, r in records.items()}
    return CombinedPartial(partials, unpacked, missing or {})


def _columns_of(chunk: Chunk) -> frozenset[str] | None:
    """The names of the columns of the chunk's file(s) (files in one chunk share them),
    if the reader kept them."""
    index = getattr(chunk.file, "columns", None)
    return getattr(index, "names", None)


class CombinedStatistic(Statistic):
    """The members' statistics side by side (their partials merge independently)."""

    name = "combined"
    batchable = True

    def __init__(self, members: dict[str, Member], shoebox_code: int | None = None):
        self.members = members
        self.shoebox_code = shoebox_code
        self.missing: dict[str, int] = {}

    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        """The columns of the members that can read a file with ``available`` columns
        (with headers read by the tasks, a member that cannot is only found out there)."""
        wanted: dict[str, None] = {}
        for member in self._readers_of(available).values():
            wanted.update(dict.fromkeys(member.statistic.columns(available)))
        return tuple(wanted)

    def _readers(self, chunk: Chunk) -> dict[str, Member]:
        """The members that can read the chunk's columns."""
        available = _columns_of(chunk)
        return self.members if available is None else self._readers_of(available)

    def _readers_of(self, available: frozenset[str]) -> dict[str, Member]:
        """The members that read only columns in ``available``."""
        return {
            name: member
            for name, member in self.members.items()
            if available.issuperset(member.statistic.columns(available))
        }

    def partial(self, chunk: Chunk) -> CombinedPartial:
        """Each member's partial of ``chunk`` with its own selection (file by file in a
        chunk of several files); a member that is not batchable gets a chunk per file.
        A member that cannot read the chunk's columns skips it (noted in ``missing``)."""
        flags = chunk.columns["flags"]
        partials, records = {}, {}
        readers = self._readers(chunk)
        missing = {
            name: min(f.index for f in (chunk.files or (chunk.file,)))
            for name in self.members
            if name not in readers
        }
        if not chunk.files:
            for name, member in readers.items():
                selection, reason = member.plan.for_file(flags)
                selected = selection.apply(flags)
                mine = Chunk(chunk.file, chunk.start, chunk.columns, selected)
                partials[name] = member.statistic.partial(mine)
                records[name] = [
                    FileRecord(
                        chunk.file.index, chunk.n_rows, int(selected.sum()), selection.names, reason
                    )
                ]
            return CombinedPartial(partials, records, missing)
        bounds = np.zeros(len(chunk.files) + 1, dtype=np.int64)
        np.cumsum(chunk.file_rows, out=bounds[1:])
        for name, member in readers.items():
            selected, records[name] = select_per_file(chunk.files, flags, bounds, member.plan)
            statistic = member.statistic
            if statistic.batchable:
                mine = Chunk(chunk.file, 0, chunk.columns, selected, chunk.files, chunk.file_rows)
                partials[name] = statistic.partial(mine)
                continue
            per_file = [
                statistic.partial(
                    Chunk(
                        file,
                        0,
                        {k: v[bounds[i] : bounds[i + 1]] for k, v in chunk.columns.items()},
                        selected[bounds[i] : bounds[i + 1]],
                    )
                )
                for i, file in enumerate(chunk.files)
            ]
            partials[name] = merge_tree(statistic, per_file)
        return CombinedPartial(partials, records, missing)

    def merge(self, first: CombinedPartial, second: CombinedPartial) -> CombinedPartial:
        return self.merge_many([first, second])

    def merge_many(self, parts: list[CombinedPartial]) -> CombinedPartial:
        """Each member's partials merged by its own ``merge_all`` (at once)."""
        return CombinedPartial(
            {
                name: member.statistic.merge_all([p.partials.get(name) for p in parts])
                for name, member in self.members.items()
            },
            {
                name: [record for p in parts for record in p.records.get(name, [])]
                for name in self.members
            },
            _first_missing(parts),
        )

    def fold_hint(self, state: dict | None, partial: CombinedPartial) -> dict:
        """Each member's own hint state."""
        state = state or {}
        return {
            name: member.statistic.fold_hint(state.get(name), partial.partials[name])
            if partial.partials.get(name) is not None
            else state.get(name)
            for name, member in self.members.items()
        }

    def prune_hint(self, state: dict) -> dict | None:
        """Each member's hint (``None``: no member has one)."""
        hints = {
            name: member.statistic.prune_hint(state[name]) if state.get(name) is not None else None
            for name, member in self.members.items()
        }
        return hints if any(h is not None for h in hints.values()) else None

    def pruned(self, partial: CombinedPartial, hint: dict) -> CombinedPartial:
        pruned = {
            name: self.members[name].statistic.pruned(member_partial, hint[name])
            if member_partial is not None and hint.get(name) is not None
            else member_partial
            for name, member_partial in partial.partials.items()
        }
        return CombinedPartial(pruned, partial.records, partial.missing)

    def complete(self, partial: CombinedPartial | None) -> CombinedPartial | None:
        if partial is None:
            return None
        completed = {
            name: self.members[name].statistic.complete(member_partial)
            if member_partial is not None
            else None
            for name, member_partial in partial.partials.items()
        }
        return CombinedPartial(completed, partial.records, partial.missing)

    def finalize(self, partial: CombinedPartial | None) -> dict[str, tuple[Any, list[FileRecord]]]:
        """Each member's final value and records, but for members that skipped a file
        (their first such file in :attr:`missing`: the program says why)."""
        partial = partial or CombinedPartial({}, {})
        self.missing = {n: i for n, i in partial.missing.items() if n in self.members}
        return {
            name: (
                member.statistic.finalize(partial.partials.get(name)),
                sorted(partial.records.get(name, []), key=lambda r: r.index),
            )
            for name, member in self.members.items()
            if name not in self.missing
        }


def _first_missing(parts: list[CombinedPartial]) -> dict[str, int]:
    """Per member, the first file any of ``parts`` found it cannot read."""
    missing: dict[str, int] = {}
    for part in parts:
        for name, index in part.missing.items():
            missing[name] = min(index, missing.get(name, index))
    return missing
