"""dials.spot_size_histogram against the seed script's algorithm, run with DIALS's flex.

The program runs in-process (``run_inprocess``); two tests run the console script.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from conftest import data_path, needs_dials, run_handlers, run_program

from dials_refl_stats.compact import reflection_paths
from dials_refl_stats.schemas import validate

pytestmark = needs_dials

PROGRAM = "spot_size_histogram"
OUTPUTS = (f"dials.{PROGRAM}.log", f"{PROGRAM}.json", f"{PROGRAM}.png")

# Files with shoeboxes and indexed reflections: (file, number of experiments).
SHOEBOX_FILES = [
    ("sim_small/indexed.refl", 1),
    ("sim_twoexp/indexed.refl", 2),
    ("centroid_test_data/indexed.refl", 1),
    ("quartz_processed/indexed.refl", 1),
    ("ssx_CuNiR/indexed.refl", 5),
]


@functools.lru_cache(maxsize=None)
def seed_histogram(path, code=None, flag="indexed", n_slots=100, data_max=1000):
    """The DIALS tutorial script, written plainly with DIALS's flex (a row loop).

    Returns the selected table, its spot sizes and the flex histogram (cached: the
    callers only read them).
    """
    from dials.algorithms.shoebox import MaskCode
    from dials.array_family import flex

    code = MaskCode.Foreground if code is None else code
    data = flex.reflection_table.from_file(str(path))
    data = data.select(data.get_flags(getattr(data.flags, flag)))
    pixels = flex.size_t()
    for j in range(data.size()):
        pixels.append(data[j]["shoebox"].count_mask_values(code))
    hist = flex.histogram(pixels.as_double(), data_min=0, data_max=data_max, n_slots=n_slots)
    return data, np.array(pixels), hist


def load_table(path):
    from dials.array_family import flex

    return flex.reflection_table.from_file(str(path))


@pytest.fixture
def run_ok(run_inprocess):
    """Run in-process; exit 0, nothing on stderr; return (document, stdout)."""

    def call(*args, cwd=None):
        result = run_inprocess(PROGRAM, *args, cwd=cwd)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        assert result.document is not None
        return result.document, result.stdout

    return call


@pytest.fixture
def run_sorry(run_inprocess, tmp_path):
    """Run in-process in an empty directory; one ``Sorry:`` line, exit 1, no files."""

    def call(*args):
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        result = run_inprocess(PROGRAM, *args, cwd=work)
        assert result.exit_code == 1, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("Sorry: ")
        assert "Traceback" not in result.stderr + result.stdout
        assert list(work.iterdir()) == []  # no outputs, no temporaries
        return lines[0]

    return call


# --- the seed's numbers --------------------------------------------------------------------


@pytest.mark.parametrize("relative,n_experiments", SHOEBOX_FILES)
def test_counts_equal_the_seed_script(tmp_path, run_ok, relative, n_experiments):
    path = data_path(relative)
    data, pixels, hist = seed_histogram(path)
    document, _ = run_ok(path, "n_slots=100")

    overall = document["results"]["overall"]
    assert overall["histogram"]["counts"] == list(hist.slots())
    assert overall["histogram"]["centres"] == pytest.approx(list(hist.slot_centers()))
    outside = overall["histogram"]["below_range"] + overall["histogram"]["above_range"]
    assert outside == hist.n_out_of_slot_range()
    assert overall["summary"]["n"] == len(pixels)
    assert overall["summary"]["median"] == pytest.approx(np.median(pixels))
    assert overall["summary"]["mean"] == pytest.approx(pixels.mean(), rel=1e-5)
    assert document["selection"]["n_selected"] == data.size()
    assert document["selection"]["files"]["n_selected"] == [data.size()]
    assert document["selection"]["fallbacks"] == []
    assert document["selection"]["skipped"] == []

    # One entry per experiment (no unindexed id -1 rows: indexed only), as columns.
    per_experiment = document["results"]["per_experiment"]
    histograms = document["results"]["per_experiment_histograms"]
    assert len(per_experiment["id"]) == len(histograms) == n_experiments
    assert per_experiment["file_index"] == [0] * n_experiments
    assert per_experiment["experiment_index"] == [None] * n_experiments  # no .expt given
    ids = np.array(data["id"])
    identifiers = dict(data.experiment_identifiers())
    assert sorted(per_experiment["id"]) == sorted(set(ids.tolist()))
    for k, experiment_id in enumerate(per_experiment["id"]):
        sizes = pixels[ids == experiment_id]
        expected = np.bincount(np.minimum(sizes // 10, 99), minlength=100)
        assert histograms[k]["label"] == per_experiment["label"][k]
        assert histograms[k]["counts"] == expected.tolist()
        assert per_experiment["n"][k] == sizes.size
        assert per_experiment["median"][k] == pytest.approx(np.median(sizes))
        assert per_experiment["max"][k] == sizes.max()
        assert per_experiment["n_without_shoebox_pixels"][k] == 0
        assert per_experiment["identifier"][k] == identifiers[experiment_id]

    log = (tmp_path / f"dials.{PROGRAM}.log").read_text()
    assert f"Spot size: n={len(pixels)} " in log
    assert "DIALS" in log
    assert (tmp_path / f"{PROGRAM}.png").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)


def test_valid_foreground_equals_find_spots_signal_pixels(run_ok):
    """find_spots marks signal pixels Valid|Foreground: their count is n_signal."""
    path = data_path("sim_small/strong.refl")
    table = load_table(path)
    n_signal = np.array(table["n_signal"])
    document, _ = run_ok(path, "selection.flags=all", "mask_bits=valid+foreground", "data_max=Auto")
    results = document["results"]
    assert results["mask_code"] == 5
    assert results["mask_bits"] == ["Valid", "Foreground"]
    assert results["overall"]["summary"]["n"] == table.size()
    assert results["overall"]["summary"]["mean"] == pytest.approx(n_signal.mean(), rel=1e-5)
    assert results["overall"]["summary"]["max"] == n_signal.max()
    assert results["overall"]["histogram"]["below_range"] == 0
    assert results["overall"]["histogram"]["above_range"] == 0


def test_num_pixels_source_for_integrated_tables(run_ok):
    from dials.array_family import flex

    path = data_path("quartz_processed/integrated.refl")
    table = load_table(path)
    table = table.select(table.get_flags(table.flags.integrated_sum))
    hist = flex.histogram(
        table["num_pixels.foreground"].as_double(), data_min=0, data_max=1000, n_slots=100
    )
    document, stdout = run_ok(path, "selection.flags=integrated_sum")
    assert document["results"]["size_source"] == ["num_pixels.foreground"]
    assert "mask_code" not in document["results"]
    assert "num_pixels_rule" in document["results"]
    counts = document["results"]["overall"]["histogram"]
    assert counts["counts"] == list(hist.slots())
    assert counts["above_range"] == hist.n_out_of_slot_range()
    assert document["selection"]["n_selected"] == table.size()
    assert f"Spot size: n={table.size()} " in stdout
    assert "source=num_pixels.foreground" in stdout


def test_forcing_num_pixels_on_a_table_with_both(tmp_path, run_ok):
    """centroid integrated.refl has shoeboxes (some rows) and num_pixels.foreground."""
    path = data_path("centroid_test_data/integrated.refl")
    table = load_table(path)
    selected = table.select(table.get_flags(table.flags.indexed))
    allocated = selected["shoebox"].is_allocated()

    auto, stdout = run_ok(path)
    assert auto["results"]["size_source"] == ["shoebox"]
    assert auto["selection"]["n_selected"] == selected.size()
    per_experiment = auto["results"]["per_experiment"]
    assert per_experiment["n_without_shoebox_pixels"] == [allocated.count(False)]
    assert per_experiment["n"] == [allocated.count(True)]
    assert auto["results"]["overall"]["summary"]["n"] == allocated.count(True)
    # No experiment identifiers in this file: grouped by id, identifier null.
    assert per_experiment["identifier"] == [None]
    assert f"{allocated.count(False)} selected reflections have no shoebox pixels" in stdout

    forced, _ = run_ok(path, "source=num_pixels", "data_max=Auto")
    assert forced["results"]["size_source"] == ["num_pixels.foreground"]
    assert forced["results"]["overall"]["summary"]["n"] == selected.size()
    assert forced["results"]["overall"]["summary"]["max"] == max(selected["num_pixels.foreground"])


def test_several_files_and_any_rule(run_ok):
    paths = [data_path("sim_twoexp/indexed.refl"), data_path("sim_small/strong.refl")]
    document, _ = run_ok(*paths, "selection.flags=indexed,strong", "selection.rule=any")
    expected = []
    for path in paths:
        table = load_table(path)
        mask = table.flags.indexed | table.flags.strong
        expected.append(table.get_flags(mask, all=False).count(True))
    assert document["selection"]["n_selected"] == sum(expected)
    assert document["selection"]["files"]["n_selected"] == expected
    assert document["selection"]["dials_equivalent"].endswith("get_flags(mask, all=False)")
    assert document["selection"]["fallbacks"] == []  # explicit flags: never a fallback
    labels = document["results"]["per_experiment"]["label"]
    assert labels[0].startswith("file 0: unassigned (id -1)")
    assert labels[-1].startswith("file 1: experiment 0")
    reflections = document["inputs"]["reflections"]
    assert reflections["n_files"] == 2
    assert reflections["directory"] == os.path.commonpath([str(p) for p in paths])
    assert reflections["paths"] == [os.path.relpath(p, reflections["directory"]) for p in paths]
    assert reflection_paths(reflections) == [str(p) for p in paths]
    assert reflections["size_bytes"] == [p.stat().st_size for p in paths]
    assert reflections["rows"] == [load_table(p).size() for p in paths]
    assert reflections["total_rows"] == sum(reflections["rows"])
    assert reflections["reader"] == ["fast"]


def test_experiments_accepted_and_recorded(run_ok):
    from dxtbx.model.experiment_list import ExperimentListFactory

    expt = data_path("sim_twoexp/indexed.expt")
    document, _ = run_ok(expt, data_path("sim_twoexp/indexed.refl"))
    assert document["inputs"]["experiments"] == {"paths": [str(expt)], "n_experiments": 2}
    experiments = ExperimentListFactory.from_json_file(str(expt), check_format=False)
    order = [e.identifier for e in experiments]
    per_experiment = document["results"]["per_experiment"]
    assert per_experiment["experiment_index"] == [
        order.index(identifier) for identifier in per_experiment["identifier"]
    ]


# --- the shared fallback rule ---------------------------------------------------------------


def test_spot_lists_fall_back_to_strong_visibly(run_ok):
    """strong.refl has no indexed rows: the default selection falls back to 'strong'."""
    path = data_path("sim_small/strong.refl")
    table = load_table(path)
    n_strong = table.get_flags(table.flags.strong).count(True)
    assert table.get_flags(table.flags.indexed).count(True) == 0
    document, stdout = run_ok(path)
    selection = document["selection"]
    assert selection["flags"] == ["indexed"]  # what was asked for
    assert selection["n_selected"] == n_strong > 0
    (fallback,) = selection["fallbacks"]
    assert fallback["file_index"] == [0] and fallback["n_files"] == 1
    assert fallback["flags"] == ["strong"]
    assert "no row has the 'indexed' flag; using 'strong'" in fallback["reason"]
    assert fallback["reason"] in stdout
    assert document["results"]["overall"]["summary"]["n"] == n_strong

    off, stdout = run_ok(path, "selection.fallback=False", "json=off.json")
    assert off["selection"]["n_selected"] == 0 and off["selection"]["fallbacks"] == []
    assert "No reflections selected" in stdout


def test_fallback_only_in_the_files_that_need_it(run_ok):
    paths = [data_path("sim_twoexp/indexed.refl"), data_path("sim_small/strong.refl")]
    tables = [load_table(p) for p in paths]
    document, _ = run_ok(*paths)
    selection = document["selection"]
    assert document["inputs"]["reflections"]["rows"] == [t.size() for t in tables]
    assert "n_rows" not in selection["files"]  # the rows are in inputs
    assert selection["files"]["n_selected"] == [
        tables[0].get_flags(tables[0].flags.indexed).count(True),
        tables[1].get_flags(tables[1].flags.strong).count(True),
    ]
    assert [f["file_index"] for f in selection["fallbacks"]] == [[1]]


def test_legacy_pickle_and_empty_selection(run_ok):
    """DIALS 3.12 reads the legacy pickle; no indexed spots: the fallback, or empty."""
    path = data_path("centroid_test_data/strong.pickle")
    table = load_table(path)
    document, _ = run_ok(path)
    assert document["inputs"]["reflections"]["reader"] == ["dials"]
    assert document["selection"]["n_selected"] == table.get_flags(table.flags.strong).count(True)
    assert [f["flags"] for f in document["selection"]["fallbacks"]] == [["strong"]]

    empty, stdout = run_ok(path, "selection.fallback=False")
    assert empty["selection"]["n_selected"] == 0
    assert sum(empty["results"]["overall"]["histogram"]["counts"]) == 0
    assert empty["results"]["overall"]["summary"]["mean"] is None
    assert "No reflections selected" in stdout

    everything, _ = run_ok(path, "selection.flags=all")
    assert everything["selection"]["n_selected"] == table.size() == 654


# --- histogram limits, per-experiment histograms ---------------------------------------------


def test_out_of_range_values_are_counted(run_ok):
    path = data_path("sim_small/indexed.refl")
    _, pixels, _ = seed_histogram(path)
    document, stdout = run_ok(path, "data_min=10", "data_max=20", "n_slots=5")
    histogram = document["results"]["overall"]["histogram"]
    assert histogram["below_range"] == int((pixels < 10).sum())
    assert histogram["above_range"] == int((pixels > 20).sum())
    assert sum(histogram["counts"]) + histogram["below_range"] + histogram["above_range"] == len(
        pixels
    )
    assert (
        f"outside [10, 20]: {histogram['below_range']} below, {histogram['above_range']} above"
        in stdout
    )


def test_per_experiment_histograms_only_for_a_few_experiments(tmp_path, run_ok):
    """15 experiments (three copies of a 5-still file): summaries always, histograms on
    request only."""
    original = data_path("ssx_CuNiR/indexed.refl")
    copies = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        copies.append(tmp_path / name / "indexed.refl")
        shutil.copy(original, copies[-1])
    data, pixels, _ = seed_histogram(original)
    ids = np.array(data["id"])

    document, _ = run_ok(original, *copies, "plot=None")
    per_experiment = document["results"]["per_experiment"]
    assert document["results"]["per_experiment_histograms"] is None
    assert per_experiment["file_index"] == [f for f in range(3) for _ in range(5)]
    assert per_experiment["n"] == [int((ids == i).sum()) for i in range(5)] * 3
    assert sum(per_experiment["n"]) == document["results"]["overall"]["summary"]["n"]
    assert per_experiment["short_label"][5] == "f1 expt 0"

    forced, _ = run_ok(original, *copies, "plot=None", "experiment_histograms=True")
    histograms = forced["results"]["per_experiment_histograms"]
    assert [h["label"] for h in histograms] == per_experiment["label"]
    for k, histogram in enumerate(histograms):
        expected = np.bincount(np.minimum(pixels[ids == k % 5] // 10, 99), minlength=100)
        assert histogram["counts"] == expected.tolist()


# --- parameters, outputs ----------------------------------------------------------------------


def test_phil_rerun_reproduces_the_results(tmp_path, run_ok):
    path = data_path("sim_twoexp/indexed.refl")
    first, _ = run_ok(
        path,
        "n_slots=37",
        "data_max=Auto",
        "mask_bits=valid+foreground",
        "selection.flags=strong",
        "output.log_y=True",
    )
    assert "n_slots = 37" in first["parameters"]["diff_phil"]
    (tmp_path / "params.phil").write_text(first["parameters"]["effective_phil"])
    (tmp_path / f"{PROGRAM}.json").unlink()
    second, _ = run_ok(path, "params.phil")
    assert second["results"] == first["results"]
    assert second["selection"] == first["selection"]
    assert second["parameters"]["effective_phil"] == first["parameters"]["effective_phil"]


def test_plot_format_by_suffix(tmp_path, run_ok):
    path = data_path("sim_small/indexed.refl")
    run_ok(path, "plot=sizes.svg")
    assert (tmp_path / "sizes.svg").read_text().lstrip().startswith("<?xml")
    run_ok(path, "plot=sizes.pdf", "json=other.json")
    assert (tmp_path / "sizes.pdf").read_bytes().startswith(b"%PDF")
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    run_ok(path, "plot=None", "json=no_plot.json", "log=no_plot.log")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*OUTPUTS[:2], "sizes.svg", "sizes.pdf", "other.json", "no_plot.json", "no_plot.log"]
    )


def test_help_and_show_config(tmp_path, run_inprocess):
    result = run_inprocess(PROGRAM)
    assert result.exit_code == 0 and result.stderr == ""
    assert "usage: dials.spot_size_histogram" in result.stdout
    result = run_inprocess(PROGRAM, "-c", "-a2")
    assert result.exit_code == 0 and result.stderr == ""
    assert "n_slots = 100" in result.stdout and "mask_bits" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_inputs_are_not_modified(run_ok):
    path = data_path("sim_twoexp/indexed.refl")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    run_ok(path, "plot=None")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_failed_run_leaves_the_previous_outputs_untouched(tmp_path, run_ok, run_inprocess):
    """All or nothing: a run that fails while reading data replaces no output."""
    run_ok(data_path("sim_small/indexed.refl"))
    before = {name: (tmp_path / name).read_bytes() for name in OUTPUTS}
    good = data_path("sim_small/indexed.refl").read_bytes()
    (tmp_path / "truncated.refl").write_bytes(good[: len(good) // 3])
    result = run_inprocess(PROGRAM, tmp_path / "truncated.refl")
    assert result.exit_code == 1 and "truncated.refl: truncated file" in result.stderr
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*OUTPUTS, "truncated.refl"])


def test_run_called_directly(tmp_path, monkeypatch):
    """``run(args)`` as a workflow or notebook calls it: no handlers left, Sorry raised."""
    from dials.util import Sorry

    from dials_refl_stats.command_line.spot_size_histogram import run

    monkeypatch.chdir(tmp_path)
    handlers = run_handlers()
    path = data_path("sim_small/indexed.refl")
    _, pixels, hist = seed_histogram(path)
    run([str(path), "output.plot=None"])
    document = json.loads((tmp_path / f"{PROGRAM}.json").read_text())
    validate(document)
    assert document["results"]["overall"]["histogram"]["counts"] == list(hist.slots())
    assert not (tmp_path / f"{PROGRAM}.png").exists()
    assert run_handlers() == handlers

    with pytest.raises(Sorry, match="n_slots"):
        run([str(path), "n_slots=0"])
    # A second run logs only its own lines.
    run([str(path), "output.plot=None", "data_max=Auto"])
    log = (tmp_path / f"dials.{PROGRAM}.log").read_text()
    assert log.count("Spot size: n=") == 1
    assert run_handlers() == handlers


# --- errors: Sorry, exit 1, nothing written ------------------------------------------------------


def broken_files(tmp_path):
    good = data_path("sim_small/indexed.refl").read_bytes()
    truncated = tmp_path / "in" / "truncated.refl"
    truncated.parent.mkdir()
    truncated.write_bytes(good[: len(good) // 3])
    not_refl = tmp_path / "in" / "notes.refl"
    not_refl.write_text("this is not a reflection table\n")
    empty = tmp_path / "in" / "empty.refl"
    empty.write_bytes(b"")
    pickled = data_path("centroid_test_data/strong.pickle").read_bytes()
    bad_pickle = tmp_path / "in" / "broken.pickle"
    bad_pickle.write_bytes(pickled[: len(pickled) // 2])
    copy = tmp_path / "in" / "copy.refl"
    copy.write_bytes(good)
    return truncated, not_refl, empty, bad_pickle, copy


ERROR_CASES = [
    (["missing.refl"], "missing.refl: file not found"),
    (["{notes}"], "notes.refl: not a DIALS reflection file"),
    (["{truncated}"], "truncated.refl: truncated file (column 'shoebox' needs"),
    # reader=dials checks a msgpack file with the fast reader first (no huge allocations).
    (["{truncated}", "reader=dials"], "truncated.refl: truncated file (column 'shoebox' needs"),
    (["{empty}"], "empty.refl: empty file"),
    (["{bad_pickle}"], "broken.pickle: legacy pickle reflection table that this DIALS cannot read"),
    (["{integrated}"], "neither a 'shoebox' nor a 'num_pixels.foreground' column"),
    (["{quartz}", "source=shoebox"], "no 'shoebox' column for source=shoebox"),
    (["{good}", "selection.flags=indexd"], "Unknown reflection flag 'indexd'"),
    (["{good}", "data_min=5", "data_max=5"], "data_max (5) must be greater than"),
    (["{good}", "n_slots=0"], "n_slots"),
    (["{good}", "mask_bits=None"], "mask_bits: choose at least one MaskCode bit"),
    (["{good}", "plot=sizes.gif"], "unsupported plot format 'gif'"),
    (["{good}", "no_such_parameter=3"], "no_such_parameter"),
    (["{good}", "{good_copy}"], "given twice"),
    (["{good}", "json=missing_dir/x.json"], "output.json=missing_dir/x.json: directory"),
    (["{good}", "json=."], "output.json=.: is a directory"),
    (["{good}", "plot=same.png", "json=same.png"], "the same file as output"),
    (["{copy}", "log={copy}"], "would overwrite an input file"),
]


@pytest.mark.parametrize("args,message", ERROR_CASES)
def test_bad_input_is_a_one_line_sorry_with_no_outputs(tmp_path, run_sorry, args, message):
    truncated, not_refl, empty, bad_pickle, copy = broken_files(tmp_path)
    names = {
        "bad_pickle": bad_pickle,
        "truncated": truncated,
        "notes": not_refl,
        "empty": empty,
        "good": data_path("sim_small/indexed.refl"),
        "good_copy": data_path("sim_small/indexed.refl").parent / ".." / "sim_small/indexed.refl",
        "copy": copy,
        "integrated": data_path("ssx_CuNiR/integrated.refl"),
        "quartz": data_path("quartz_processed/integrated.refl"),
    }
    line = run_sorry(*[a.format(**names) for a in args])
    assert message in line


# --- the console script (end to end, in a subprocess) --------------------------------------------


def test_console_script_end_to_end(tmp_path):
    path = data_path("sim_twoexp/indexed.refl")
    data, pixels, hist = seed_histogram(path)
    result = run_program(PROGRAM, path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"Spot size: n={len(pixels)} " in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    document = json.loads((tmp_path / f"{PROGRAM}.json").read_text())
    validate(document)
    assert document["results"]["overall"]["histogram"]["counts"] == list(hist.slots())
    assert document["selection"]["n_selected"] == data.size()


def test_console_script_sorry(tmp_path):
    result = run_program(PROGRAM, data_path("sim_small/indexed.refl"), "n_slots=0", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Sorry: ") and "n_slots" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []
