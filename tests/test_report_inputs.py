"""The report's inputs (table, section title, rerun hint, skipped files' paths) from the
JSON's ``inputs`` block in either form, without decoding every file of a large run."""

from __future__ import annotations

import pytest

from dials_refl_stats.compact import (
    compact_column,
    decode,
    decode_names,
    encode_names,
    iter_decoded,
    iter_names,
    name_at,
)
from dials_refl_stats.report.model import Budget
from dials_refl_stats.report.sections import build_section, input_files


def inputs_block(n_files: int, compact: bool, readers=("fast",)) -> dict:
    """An ``inputs`` block as :func:`~dials_refl_stats.pipeline.inputs.describe_inputs`
    writes it for ``n_files`` stills (sizes and rows vary)."""
    names = [f"still_{k:05d}.refl" for k in range(n_files)]
    sizes = [1000 + 7 * k for k in range(n_files)]
    rows = [100 + k % 13 for k in range(n_files)]
    reflections = {
        "n_files": n_files,
        "directory": "/data/run12",
        "paths": encode_names(names) if compact else names,
        "size_bytes": sizes,
        "rows": rows,
        "n_identifiers": [1] * n_files,
        "reader": list(readers),
        "total_bytes": sum(sizes),
        "total_rows": sum(rows),
    }
    if compact:
        del reflections["size_bytes"]
        reflections["rows"] = compact_column(rows)
        reflections["n_identifiers"] = compact_column([1] * n_files)
    return {"reflections": reflections, "experiments": {"paths": [], "n_experiments": 0}}


def document(inputs: dict, skipped_index: int | None = None) -> dict:
    selection = {"n_selected": 5, "n_rows": 10}
    if skipped_index is not None:
        selection["skipped"] = [{"file_index": skipped_index, "reason": "truncated file"}]
    return {"program": "dials.unknown_statistic", "inputs": inputs, "selection": selection}


@pytest.mark.parametrize("names", [[f"a_{k:03d}.refl" for k in range(40)], ["x.refl", "y.refl"]])
def test_names_one_at_a_time_and_by_index_as_decoded(names):
    encoded = encode_names(names)
    assert list(iter_names(encoded)) == decode_names(encoded) == names
    assert [name_at(encoded, k) for k in range(len(names))] == names
    assert name_at(encoded, len(names)) is None and name_at(encoded, -1) is None
    gaps = encode_names([f"a_{k:03d}.refl" for k in (*range(5), *range(9, 20), 33)])
    assert [name_at(gaps, k) for k in range(17)] == decode_names(gaps)


@pytest.mark.parametrize("column", [[3, 4, 5, 6, 6, 6, 9], [1.5] * 9, [None, None, 2], []])
def test_columns_one_at_a_time_as_decoded(column):
    encoded = compact_column(column) if column else {"runs": []}
    assert list(iter_decoded(encoded)) == decode(encoded)
    assert list(iter_decoded(column)) == decode(column) == list(column)


@pytest.mark.parametrize("compact", [False, True])
def test_every_file_of_a_few_is_in_the_inputs_table(compact):
    """Five files: five rows with their own sizes and rows (the table once showed one,
    cut to the length of the run's list of readers)."""
    section = build_section(document(inputs_block(5, compact)), 0, Budget())
    table = section.inputs
    assert [row[1] for row in table.rows] == [f"/data/run12/still_{k:05d}.refl" for k in range(5)]
    assert [row[3] for row in table.rows] == ["100", "101", "102", "103", "104"]
    assert {row[4] for row in table.rows} == {"fast"}
    assert table.note.startswith("5 reflection file(s)")
    assert section.title.endswith("still_00000.refl + 4 more")


@pytest.mark.parametrize("compact", [False, True])
def test_a_large_run_shows_its_first_files_and_counts_them_all(compact):
    n = 3000
    budget = Budget()
    section = build_section(document(inputs_block(n, compact), skipped_index=2718), 0, budget)
    assert len(section.inputs.rows) == budget.list_items
    assert section.inputs.rows[-1][1].endswith(f"still_{budget.list_items - 1:05d}.refl")
    assert f"first {budget.list_items} of {n} reflection files shown" in section.inputs.note
    total = sum(1000 + 7 * k for k in range(n)) / 1000
    assert f"{n} reflection file(s), {total / 1000:.1f} MB" in section.inputs.note
    assert section.title.endswith(f"+ {n - 1} more")
    # a skipped file far past the shown ones is still named by its path
    assert ("skipped", "/data/run12/still_02718.refl: truncated file") in section.selection
    assert section.rerun_inputs.endswith(f"… ({n - budget.list_items} more)")


def test_several_readers_are_named_once_in_the_note():
    files = input_files(inputs_block(3, compact=True, readers=("dials", "fast")), 25)
    assert [f["reader"] for f in files.shown] == [None] * 3
    section = build_section(document(inputs_block(3, True, ("dials", "fast"))), 0, Budget())
    assert "read by dials, fast" in section.inputs.note


def test_only_the_shown_files_are_decoded(monkeypatch):
    """A run of 10^12 listed stills (the names a template with one range of numbers):
    the report reads the first few names and looks one up by index, never listing all."""
    from dials_refl_stats import compact

    def refused(*args):
        raise AssertionError("every name decoded")

    monkeypatch.setattr(compact, "decode_names", refused)
    inputs = inputs_block(1, compact=True)
    n = 10**12
    inputs["reflections"]["paths"] = {"template": "s_#############.refl", "numbers": [[0, n - 1]]}
    inputs["reflections"]["n_files"] = n
    files = input_files(inputs, 25)
    assert files.n_files == n and len(files.shown) == 25
    assert files.shown[24]["path"] == "/data/run12/s_0000000000024.refl"
    assert files.path_of(n - 1) == "/data/run12/s_0999999999999.refl"
    assert files.path_of(n) is None
    section = build_section(document(inputs, skipped_index=n - 2), 0, Budget())
    assert ("skipped", "/data/run12/s_0999999999998.refl: truncated file") in section.selection


def test_the_inlined_plotly_js_is_plotlys_own():
    """Read from the package's data without importing ``plotly.offline``: the same text
    as ``get_plotlyjs``."""
    pytest.importorskip("plotly")
    from plotly.offline import get_plotlyjs

    from dials_refl_stats.report.html import plotly_js

    plotly_js.cache_clear()
    assert plotly_js() == get_plotlyjs()
    assert len(plotly_js()) > 1_000_000
