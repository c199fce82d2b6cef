"""A task's per-file records travel to the driver as columns and arrive unchanged.

Real tasks over real stills (split from a shipped table by DIALS), with the headers the
tasks read (deferred files), fallbacks and a damaged file skipped; after a pickle round
trip the records are equal, field for field and type for type.
"""

from __future__ import annotations

import os
import pickle

import pytest
from conftest import split_stills

from dials_refl_stats.pipeline import execute
from dials_refl_stats.pipeline.combined import CombinedStatistic, Member
from dials_refl_stats.pipeline.execute import FileRecord, RunPartial, SelectionPlan
from dials_refl_stats.pipeline.inputs import DEFER_MIN_FILES, open_files
from dials_refl_stats.pipeline.packed_records import pack, unpack
from dials_refl_stats.selection import FlagSelection
from dials_refl_stats.statistics import registered_statistics


def field_types(record: FileRecord) -> tuple:
    opened = record.opened
    return type(record), type(opened), type(getattr(opened, "info", None))


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    """Enough single-still files for the driver to leave their headers to the tasks,
    one of them cut short (skipped with ``input.on_error=skip``)."""
    copies = -(-DEFER_MIN_FILES // 5)  # the table has 5 stills
    folder = split_stills("ssx_CuNiR/indexed.refl", tmp_path_factory.mktemp("s"), copies)
    paths = sorted(str(p) for p in folder.glob("*.refl"))
    damaged = paths[7]
    os.truncate(damaged, os.path.getsize(damaged) // 2)
    return paths


@pytest.mark.parametrize("defer", [True, False])
def test_task_records_survive_the_trip_to_the_driver(stills, defer):
    files = [o.info for o in open_files(stills, "auto", [], True, defer)]
    statistic = registered_statistics()["spot_size"]()
    # indexed stills have no integrated rows: every file falls back to 'strong'
    plan = SelectionPlan(FlagSelection(names=("integrated_sum",)), fallback=True)
    result = execute.process_batch(files, statistic, plan, "auto", skip_errors=True)
    assert result.__reduce__()[0] is execute._unpacked_run_partial
    records = result.records
    assert len(records) == len(stills)
    assert sum(r.skipped is not None for r in records) == 1
    assert all(r.fallback for r in records if not r.skipped)
    assert (sum(r.opened is not None for r in records) > 0) == defer
    clone = pickle.loads(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    assert clone.records == records
    assert [field_types(r) for r in clone.records] == [field_types(r) for r in records]
    assert pickle.dumps(clone.partial) == pickle.dumps(result.partial)


def test_empty_and_unusual_records_round_trip():
    assert pickle.loads(pickle.dumps(RunPartial(None))).records == []
    assert unpack(pack([], FileRecord), FileRecord) == []

    class Special(FileRecord):
        """Not exactly a FileRecord: pickled as an object."""

    special = RunPartial(None, [Special(1, 2, 3, ("all",))])
    assert special.__reduce__()[1][1] == special.records  # as objects


def test_combined_records_survive_the_trip_to_the_driver(stills):
    """``dials.refl_stats``'s one pass: each member's own records, as columns."""
    files = [o.info for o in open_files(stills, "auto", [], True, True)]
    statistics = registered_statistics()
    members = {
        "sizes": Member(statistics["spot_size"](), SelectionPlan(FlagSelection(names=("strong",)))),
        "rows": Member(
            statistics["selected_rows"](),
            SelectionPlan(FlagSelection(names=("integrated_sum",)), fallback=True),
        ),
    }
    combined = CombinedStatistic(members, members["sizes"].statistic.shoebox_code)
    plan = SelectionPlan(FlagSelection(names=("all",)))
    result = execute.process_batch(files, combined, plan, "auto", skip_errors=True)
    records = result.partial.records
    assert {name: len(r) for name, r in records.items()} == {"sizes": 64, "rows": 64}
    assert all(r.fallback for r in records["rows"] if r.n_rows)
    clone = pickle.loads(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    assert clone.partial.records == records
    assert clone.records == result.records


def test_objects_made_slot_by_slot_equal_those_made_by_their_init():
    """Slotted dataclasses are made without calling ``__init__``; any other class (a
    ``__post_init__``, a ``__dict__``, fields left out of ``__init__``) through it."""
    import dataclasses

    from dials_refl_stats.pipeline.inputs import HeaderFileInfo, OpenedFile
    from dials_refl_stats.pipeline.packed_records import _slot_setters, field_names, make_objects

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self):
            object.__setattr__(self, "value", self.value * 2)

    @dataclasses.dataclass(frozen=True)
    class Plain:
        value: int

    @dataclasses.dataclass(slots=True)
    class Derived:
        value: int
        twice: int = dataclasses.field(init=False, default=0)

    for cls in (FileRecord, HeaderFileInfo, OpenedFile):
        assert _slot_setters(cls, field_names(cls)) is not None
    for cls in (Checked, Plain, Derived):
        assert _slot_setters(cls, field_names(cls)) is None
    assert make_objects(Checked, ("value",), [[1, 2]]) == [Checked(1), Checked(2)]
    assert [c.value for c in make_objects(Checked, ("value",), [[1, 2]])] == [2, 4]
    assert make_objects(Derived, ("value",), [[3]])[0].twice == 0
    columns = [[1, 2], [10, 0], [5, 0], [("strong",), ("all",)], [None, "none"], [None] * 2]
    columns.append([None, "opened"])
    made = make_objects(FileRecord, field_names(FileRecord), columns)
    expected = [FileRecord(*values) for values in zip(*columns)]
    assert made == expected and list(map(hash, made)) == list(map(hash, expected))
    assert all(type(m) is FileRecord for m in made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made[0].index = 3
