"""The compact JSON form (docs/json.md): past 1000 reflection files or experiments the
documents stay small (file names as a numbered template, index columns as runs, no
per-experiment labels, rounded floats), decode exactly to what the full form says, and
every reader of our JSON handles both forms."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import data_path, needs_dials

from dials_refl_stats.compact import (
    COMPACT_THRESHOLD,
    compact_column,
    decode,
    decode_names,
    encode_names,
    encode_runs,
    expand,
    intensity_series_full,
    reflection_paths,
    round_significant,
)
from dials_refl_stats.schemas import validate

# --- the codec -------------------------------------------------------------------------------


def test_runs_decode_to_the_values_whatever_they_are():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(1, 80))
        steps = rng.integers(-2, 3, n) * (rng.random(n) < 0.2)
        values = np.cumsum(steps) + int(rng.integers(-5, 5))
        assert decode(encode_runs(values)) == values.tolist()
    for values in (
        [None] * 9,
        ["z_floor"] * 6 + ["still"] * 4,
        [0, None, None, None, None, None, None, None],
        list(range(100_000)),
    ):
        assert decode(encode_runs(values)) == values
    assert encode_runs(np.arange(100_000)) == {"runs": [[0, 100_000, 1]]}
    assert encode_runs([3] * 8) == {"runs": [[3, 8, 0]]}


def test_runs_only_when_they_are_short():
    assert encode_runs([5, 1, 4, 2, 3, 9, 0, 7]) == [5, 1, 4, 2, 3, 9, 0, 7]
    assert encode_runs([1, 1, 1]) == [1, 1, 1]  # fewer than 4 entries: as they are
    assert expand({"a": {"runs": [[2, 3, 2]]}, "b": [1], "c": "x"}) == {
        "a": [2, 4, 6],
        "b": [1],
        "c": "x",
    }


@pytest.mark.parametrize(
    "names, template",
    [
        ([f"still_{k:05d}.refl" for k in range(1500)], "still_#####.refl"),
        ([f"integrated_{k}.refl" for k in [*range(1, 120), *range(200, 260)]], "integrated_#.refl"),
        ([f"run_{k:03d}_v2.refl" for k in range(40)], "run_###_v2.refl"),
    ],
)
def test_numbered_names_as_a_template(names, template):
    encoded = encode_names(names)
    assert encoded["template"] == template
    assert decode_names(encoded) == names


def test_names_without_one_numbered_pattern_stay_a_list():
    for names in (
        [f"run{k % 3}/x_{k}.refl" for k in range(30)],  # two numbers vary
        ["a.refl", "b.refl", "c.refl"],
        [f"x_{k:02d}.refl" for k in range(5)] + ["x_7.refl"],  # padding differs
        [f"x_{k}.refl" for k in np.random.default_rng(1).permutation(40)],  # no order
        [f"x_{10**24 + k}.refl" for k in range(5)],  # numbers past int64
        [f"x_{k:03d}.refl" for k in range(5)] + ["x_\u0664\u0665\u0666.refl"],  # Arabic digits
    ):
        assert encode_names(names) == names
        assert decode_names(names) == names


def test_compact_columns_round_floats_and_write_whole_numbers_as_integers():
    values = np.array([3.0, 3.14159265, 12345.678, np.nan, -0.000123456, 2.5])
    assert compact_column(values) == [3, 3.142, 12350, None, -0.0001235, 2.5]
    assert compact_column(values, None)[1] == 3.14159265
    assert compact_column([np.nan] * 8) == {"runs": [[None, 8, 0]]}
    assert compact_column([None, 1.5, None, 2.0]) == [None, 1.5, None, 2]
    np.testing.assert_allclose(round_significant([1.23456e-9, 9.99951]), [1.235e-9, 10.0])


# --- 1500 single-still files: compact by default ------------------------------------------


@pytest.fixture(scope="module")
def many_stills(tmp_path_factory):
    """1500 single-still files (> COMPACT_THRESHOLD): the 5 stills of strong_5.refl split
    with DIALS (``id`` 0, each its own identifier) and written with ``as_file``, then
    byte copies of those named still_00000.refl ... still_01499.refl."""
    from dials.array_family import flex

    source = flex.reflection_table.from_file(str(data_path("ssx_CuNiR/strong_5.refl")))
    identifiers = dict(source.experiment_identifiers())
    work = tmp_path_factory.mktemp("stills")
    made = work / "made"
    made.mkdir()
    tables = []
    for k in range(5):
        still = source.select(source["id"] == k)
        ids = still.experiment_identifiers()
        for key in list(ids.keys()):
            del ids[key]
        still["id"] = flex.int(still.size(), 0)
        still["imageset_id"] = flex.int(still.size(), 0)
        still.experiment_identifiers()[0] = identifiers[k]
        still.as_file(str(made / f"{k}.refl"))
        tables.append(still)
    directory = work / "stills"
    directory.mkdir()
    n_files = COMPACT_THRESHOLD + 500
    paths = [directory / f"still_{i:05d}.refl" for i in range(n_files)]
    for i, path in enumerate(paths):
        shutil.copyfile(made / f"{i % 5}.refl", path)
    return directory, paths, tables


@needs_dials
def test_1500_stills_are_compact_and_decode_to_the_exact_inputs(many_stills, tmp_path):
    from dials.algorithms.shoebox import MaskCode

    from dials_refl_stats.command_line import spot_size_histogram

    directory, paths, tables = many_stills
    out = tmp_path / "spot.json"
    log = tmp_path / "spot.log"
    spot_size_histogram.run(
        [str(directory), f"output.json={out}", f"output.log={log}", "output.plot=None"]
    )
    document = json.loads(out.read_text())
    validate(document)
    assert document["form"] == "compact"

    reflections = document["inputs"]["reflections"]
    assert reflections["directory"] == str(directory)
    assert reflections["paths"] == {"template": "still_#####.refl", "numbers": [[0, 1499]]}
    assert reflection_paths(reflections) == [str(p) for p in paths]
    assert "size_bytes" not in reflections
    assert reflections["total_bytes"] == sum(p.stat().st_size for p in paths)
    assert decode(reflections["rows"]) == [tables[i % 5].size() for i in range(len(paths))]
    assert reflections["n_identifiers"] == {"runs": [[1, len(paths), 0]]}

    # no row is indexed: every file falls back to 'strong', one entry for all of them
    strong = [t.get_flags(t.flags.strong) for t in tables]
    selection = document["selection"]
    (fallback,) = selection["fallbacks"]
    assert fallback["flags"] == ["strong"] and fallback["n_files"] == len(paths)
    assert fallback["file_index"] == {"runs": [[0, len(paths), 1]]}
    assert decode(selection["files"]["n_selected"]) == [
        strong[i % 5].count(True) for i in range(len(paths))
    ]

    # per experiment: numeric columns only, each decoding to DIALS's own numbers
    groups = document["results"]["per_experiment"]
    assert not {"label", "short_label", "identifier"} & set(groups)
    assert groups["file_index"] == {"runs": [[0, len(paths), 1]]}
    assert groups["id"] == {"runs": [[0, len(paths), 0]]}
    assert groups["experiment_index"] == {"runs": [[None, len(paths), 0]]}
    sizes = [
        np.array(t.select(s)["shoebox"].count_mask_values(MaskCode.Foreground), dtype=float)
        for t, s in zip(tables, strong)
    ]
    columns = expand(groups)
    for name, of in (("n", np.size), ("median", np.median), ("max", np.max)):
        assert columns[name] == [of(sizes[i % 5]) for i in range(len(paths))], name
    np.testing.assert_allclose(
        columns["mean"], [sizes[i % 5].mean() for i in range(len(paths))], rtol=5e-4
    )

    # compact: about 30 bytes per file for everything; the log does not list files
    assert out.stat().st_size < 60 * len(paths)
    assert log.stat().st_size < 5000

    # the report reads it (1500 experiments: no per-experiment histograms, no labels)
    assert _report_status(document) == "ok"


def _report_status(document: dict) -> str:
    """The report section's status: "ok" when its builder read the document."""
    from dials_refl_stats.report.model import Budget
    from dials_refl_stats.report.sections import build_section

    return build_section(document, 0, Budget()).status


# --- every program, full and compact, on the same small inputs ------------------------------

CASES = {
    "spot_size_histogram": ["sim_twoexp/indexed.expt", "sim_twoexp/indexed.refl"],
    "per_image_statistics": ["ssx_CuNiR/indexed.expt", "ssx_CuNiR/indexed.refl"],
    "strong_reflection_positions": [
        "ssx_CuNiR/integrated.expt",
        "ssx_CuNiR/integrated.refl",
        "selection.flags=integrated_sum",
        "intensity.min=100",
    ],
    "intensity_per_frame": ["sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"],
}


FRAME_COLUMNS = ("frame_first", "frame_last", "count", "mean", "median", "n_non_positive")


def _run_both(program: str, args: list[str], work) -> tuple[dict, dict]:
    import importlib

    module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
    arguments = [str(data_path(a)) if "=" not in a else a for a in args]
    documents = []
    for form in ("full", "compact"):
        out = work / f"{form}.json"
        module.run(
            [
                *arguments,
                f"output.json_form={form}",
                f"output.json={out}",
                f"output.log={work / form}.log",
                "output.plot=None",
            ]
        )
        document = json.loads(out.read_text())
        validate(document)
        assert document["form"] == form
        documents.append(document)
    return documents[0], documents[1]


def _same_columns(full: dict, compact: dict, names) -> None:
    for name in names:
        a, b = full[name], decode(compact[name])
        assert len(a) == len(b), name
        for x, y in zip(a, b):
            if isinstance(x, float) or isinstance(y, float):
                assert y == pytest.approx(x, rel=5e-4, abs=1e-12), name
            else:
                assert x == y, name


@needs_dials
@pytest.mark.parametrize("program", list(CASES))
def test_compact_decodes_to_the_full_form(program, tmp_path, clean_logging):
    full, compact = _run_both(program, CASES[program], tmp_path)
    inputs = full["inputs"]["reflections"], compact["inputs"]["reflections"]
    assert reflection_paths(inputs[0]) == reflection_paths(inputs[1])
    assert inputs[0]["rows"] == decode(inputs[1]["rows"])
    assert full["selection"]["files"] == expand(compact["selection"]["files"])
    results, compact_results = full["results"], compact["results"]

    if program in ("spot_size_histogram", "strong_reflection_positions"):
        groups, compact_groups = results["per_experiment"], compact_results["per_experiment"]
        assert "label" in groups and "label" not in compact_groups
        numeric = [k for k in compact_groups if k in groups]
        counts = "n_selected" if program == "strong_reflection_positions" else "n"
        assert {"file_index", "id", "experiment_index", counts} <= set(numeric)
        _same_columns(groups, compact_groups, numeric)
    if program == "strong_reflection_positions":
        centres = {}
        for centre in compact_results["beam_centres"]:
            for experiment in decode(centre["experiments"]):
                centres[experiment] = centre["px"]
        assert {c["experiment"]: c["px"] for c in results["beam_centres"]} == centres
    if program == "per_image_statistics":
        _same_columns(results["per_image"], compact_results["per_image"], results["per_image"])
        assert results["isigma"] == compact_results["isigma"]
    if program == "intensity_per_frame":
        decoded = intensity_series_full(compact_results)
        for a, b in zip(results["series"], decoded["series"]):
            assert (a["numbering"], a["image_range"]) == (b["numbering"], b["image_range"])
            assert [(e["file_index"], e["id"]) for e in a["experiments"]] == [
                (e["file_index"], e["id"]) for e in b["experiments"]
            ]
        for block, decoded_block in zip(results["intensities"], decoded["intensities"]):
            for a, b in zip(block["series"], decoded_block["series"]):
                summaries = {k: [v] for k, v in a["summary"].items()}
                _same_columns(summaries, {k: [v] for k, v in b["summary"].items()}, summaries)
                _same_columns(a["per_frame"], b["per_frame"], FRAME_COLUMNS)

    # the report reads both forms (no section falls back to the generic view)
    assert _report_status(full) == _report_status(compact) == "ok"


def test_names_numbered_past_int64_are_listed_as_they_are(tmp_path):
    """A run named with 25-digit numbers (once a traceback: int64 overflow): compact
    JSON with the names listed plainly."""
    from test_programs_common import run_inprocess

    directory = tmp_path / "runs"
    directory.mkdir()
    names = [f"shot_{10**24 + k}.refl" for k in range(3)]
    for name in names:
        shutil.copyfile(data_path("ssx_CuNiR/strong_5.refl"), directory / name)
    code, _, err = run_inprocess(
        "spot_size_histogram",
        [str(directory), "output.json_form=compact", "output.plot=None"],
        tmp_path,
    )
    assert code == 0, err
    document = json.loads((tmp_path / "spot_size_histogram.json").read_text())
    assert document["form"] == "compact"
    assert document["inputs"]["reflections"]["paths"] == names
    validate(document)


@pytest.mark.parametrize(
    "program, extra",
    [
        ("spot_size_histogram", []),
        ("intensity_per_frame", ["frame.source=xyzobs", "selection.flags=strong"]),
        ("per_image_statistics", []),
    ],
)
def test_the_form_counts_identifiers_of_headers_the_tasks_read(
    tmp_path, monkeypatch, program, extra
):
    """70 files of 5 stills each: with the threshold at 200, the files alone are few but
    their 350 identifiers are many, so the document is compact, though the driver only
    listed the files and the tasks read their headers (once: full)."""
    from test_programs_common import run_inprocess

    from dials_refl_stats import compact
    from dials_refl_stats.pipeline.inputs import DEFER_MIN_FILES

    monkeypatch.setattr(compact, "COMPACT_THRESHOLD", 200)
    directory = tmp_path / "runs"
    directory.mkdir()
    for k in range(max(70, DEFER_MIN_FILES)):
        shutil.copyfile(data_path("ssx_CuNiR/strong_5.refl"), directory / f"run_{k:03d}.refl")
    code, _, err = run_inprocess(program, [str(directory), *extra, "output.plot=None"], tmp_path)
    assert code == 0, err
    document = json.loads((tmp_path / f"{program}.json").read_text())
    assert document["form"] == "compact"
    validate(document)


def walked_integer_runs(values: np.ndarray, limit: int) -> list[list] | None:
    """The greedy arithmetic runs as first written: one run at a time."""
    n = values.size
    if n == 1:
        return [[int(values[0]), 1, 0]]
    steps = np.diff(values)
    ends = np.append(np.flatnonzero(steps[1:] != steps[:-1]), steps.size - 1)
    if ends.size > 2 * limit:
        return None
    values_, steps_, ends_ = values.tolist(), steps.tolist(), ends.tolist()
    out: list[list] = []
    i = block = 0
    while i < n:
        if len(out) >= limit:
            return None
        if i == n - 1:
            out.append([values_[i], 1, 0])
            break
        while ends_[block] < i:
            block += 1
        out.append([values_[i], ends_[block] - i + 2, steps_[i]])
        i = ends_[block] + 2
    return out


def test_integer_runs_found_at_once_equal_the_runs_walked_one_by_one():
    """Blocks of one step (skipped in pairs), longer blocks, a last value left alone,
    every limit around the number of runs."""
    from dials_refl_stats.compact import _integer_runs

    rng = np.random.default_rng(11)
    for trial in range(4000):
        n = int(rng.integers(1, 60))
        kind = trial % 4
        if kind == 0:
            values = rng.integers(0, 3, n)
        elif kind == 1:
            values = np.cumsum(rng.integers(0, 3, n))
        elif kind == 2:
            values = np.repeat(rng.integers(0, 5, n), rng.integers(1, 4, n))[:n]
        else:
            values = np.cumsum(rng.choice([1, 1, 1, 2, -1], n))
        values = values.astype(np.int64)
        for limit in {1, 2, 3, max(1, n // 4), n, 10 * n}:
            assert _integer_runs(values, limit) == walked_integer_runs(values, limit)
    quads = (np.arange(100_000) // 4 * 5 + np.arange(100_000) % 4).astype(np.int64)
    assert _integer_runs(quads, 25_000) == walked_integer_runs(quads, 25_000)
    assert len(_integer_runs(quads, 25_000)) == 25_000
    assert _integer_runs(quads, 24_999) is None


def listed_compact_floats(values: np.ndarray, digits: int | None) -> list | dict:
    """A float column's compact form as first written: an object list, then its runs."""
    from dials_refl_stats.compact import encode_runs, round_significant
    from dials_refl_stats.output import RoundedColumn

    x = round_significant(values, digits) if digits else values.astype(np.float64)
    finite = np.isfinite(x)
    whole = finite & (np.abs(x) < 2.0**53)
    whole[whole] = x[whole] == np.round(x[whole])
    out = x.astype(object)
    out[~finite] = None
    out[whole] = x[whole].astype(np.int64).tolist()
    encoded = encode_runs(out.tolist())
    return RoundedColumn(encoded, digits) if digits and isinstance(encoded, list) else encoded


@pytest.mark.parametrize("digits", [None, 4])
def test_float_columns_encode_as_their_object_lists_would(digits):
    """Whole numbers only (arithmetic runs), with NaN/inf (runs of equal items), plain
    floats, floats among whole numbers (runs of floats): the same JSON, types included."""
    rng = np.random.default_rng(5 if digits else 6)
    pools = [
        np.array([0.0, 1.0, 2.0, 3.0, 7.0, -0.0]),
        np.array([1.5, 2.25, -3.125]),
        np.array([1.0, 2.5, 3.0]),
        np.array([np.nan, np.inf, -np.inf, 4.0, 4.5]),
        np.array([1e300, 2.0**60, 2.0**53, 0.1]),
    ]
    for trial in range(3000):
        n = int(rng.integers(0, 40))
        pool = pools[trial % len(pools)]
        values = (
            pool[rng.integers(0, pool.size, n)]
            if trial % 3
            else np.repeat(pool[rng.integers(0, pool.size, max(1, n // 4))], 4)[:n]
        )
        if trial % 7 == 0:
            values = np.cumsum(np.abs(values[np.isfinite(values)]) % 3)
        expected = listed_compact_floats(values, digits)
        found = compact_column(values, digits)
        assert json.dumps(found) == json.dumps(expected)
        assert type(found) is type(expected)
