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

    def __reduce__(self):
        """Pickled with each member's records as columns (:func:`pack_records`)."""
        packed = {name: pack_records(records) for name, records in self.records.items()}
        return _unpacked_combined, (self.partials, packed)


def _unpacked_combined(partials: dict[str, Any], records: dict) -> CombinedPartial:
    return CombinedPartial(partials, {name: unpack_records(r) for name, r in records.items()})


class CombinedStatistic(Statistic):
    """The members' statistics side by side (their partials merge independently)."""

    name = "combined"
    batchable = True

    def __init__(self, members: dict[str, Member], shoebox_code: int | None = None):
        self.members = members
        self.shoebox_code = shoebox_code

    def columns(self, available: frozenset[str]) -> tuple[str, ...]:
        wanted: dict[str, None] = {}
        for member in self.members.values():
            wanted.update(dict.fromkeys(member.statistic.columns(available)))
        return tuple(wanted)

    def partial(self, chunk: Chunk) -> CombinedPartial:
        """Each member's partial of ``chunk`` with its own selection (file by file in a
        chunk of several files); a member that is not batchable gets a chunk per file."""
        flags = chunk.columns["flags"]
        partials, records = {}, {}
        if not chunk.files:
            for name, member in self.members.items():
                selection, reason = member.plan.for_file(flags)
                selected = selection.apply(flags)
                mine = Chunk(chunk.file, chunk.start, chunk.columns, selected)
                partials[name] = member.statistic.partial(mine)
                records[name] = [
                    FileRecord(
                        chunk.file.index, chunk.n_rows, int(selected.sum()), selection.names, reason
                    )
                ]
            return CombinedPartial(partials, records)
        bounds = np.zeros(len(chunk.files) + 1, dtype=np.int64)
        np.cumsum(chunk.file_rows, out=bounds[1:])
        for name, member in self.members.items():
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
        return CombinedPartial(partials, records)

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
        return CombinedPartial(pruned, partial.records)

    def complete(self, partial: CombinedPartial | None) -> CombinedPartial | None:
        if partial is None:
            return None
        completed = {
            name: self.members[name].statistic.complete(member_partial)
            for name, member_partial in partial.partials.items()
        }
        return CombinedPartial(completed, partial.records)

    def finalize(self, partial: CombinedPartial | None) -> dict[str, tuple[Any, list[FileRecord]]]:
        partial = partial or CombinedPartial({}, {})
        return {
            name: (
                member.statistic.finalize(partial.partials.get(name)),
                sorted(partial.records.get(name, []), key=lambda r: r.index),
            )
            for name, member in self.members.items()
        }
