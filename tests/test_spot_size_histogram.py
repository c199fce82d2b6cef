"""dials.spot_size_histogram against the seed script's algorithm, run with DIALS's flex."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import data_path, needs_dials, run_program

from dials_refl_stats.schemas import validate

pytestmark = needs_dials

PROGRAM = "spot_size_histogram"

# Files with shoeboxes and indexed reflections: (file, number of experiments).
SHOEBOX_FILES = [
    ("sim_small/indexed.refl", 1),
    ("sim_twoexp/indexed.refl", 2),
    ("centroid_test_data/indexed.refl", 1),
    ("quartz_processed/indexed.refl", 1),
    ("ssx_CuNiR/indexed.refl", 5),
]


def seed_histogram(path, code=None, flag="indexed", n_slots=100, data_max=1000):
    """The DIALS tutorial script, written plainly with DIALS's flex (a row loop)."""
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


def run_ok(tmp_path, *args):
    result = run_program(PROGRAM, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    document = json.loads((tmp_path / f"{PROGRAM}.json").read_text())
    validate(document)
    return document, result


@pytest.mark.parametrize("relative,n_experiments", SHOEBOX_FILES)
def test_counts_equal_the_seed_script(tmp_path, relative, n_experiments):
    path = data_path(relative)
    data, pixels, hist = seed_histogram(path)
    document, result = run_ok(tmp_path, path, "n_slots=100")

    overall = document["results"]["overall"]
    assert overall["histogram"]["counts"] == list(hist.slots())
    assert overall["histogram"]["centres"] == pytest.approx(list(hist.slot_centers()))
    outside = overall["histogram"]["below_range"] + overall["histogram"]["above_range"]
    assert outside == hist.n_out_of_slot_range()
    assert overall["summary"]["n"] == len(pixels)
    assert overall["summary"]["median"] == pytest.approx(np.median(pixels))
    assert overall["summary"]["mean"] == pytest.approx(pixels.mean(), rel=1e-5)
    assert document["selection"]["n_selected"] == data.size()

    # One histogram per experiment (plus unindexed id -1 rows, none here: indexed only).
    per_experiment = document["results"]["per_experiment"]
    assert len(per_experiment) == n_experiments
    ids = np.array(data["id"])
    for entry in per_experiment:
        expected = np.bincount(
            np.minimum(pixels[ids == entry["experiment"]["id"]] // 10, 99), minlength=100
        )
        assert entry["histogram"]["counts"] == expected.tolist()
        identifiers = dict(data.experiment_identifiers())
        assert entry["experiment"]["identifier"] == identifiers[entry["experiment"]["id"]]

    log = (tmp_path / f"dials.{PROGRAM}.log").read_text()
    assert f"Spot size: n={len(pixels)} " in log
    assert "DIALS" in log
    assert (tmp_path / f"{PROGRAM}.png").stat().st_size > 1000


def test_valid_foreground_equals_find_spots_signal_pixels(tmp_path):
    """find_spots marks signal pixels Valid|Foreground: their count is n_signal."""
    from dials.array_family import flex

    path = data_path("sim_small/strong.refl")
    table = flex.reflection_table.from_file(str(path))
    n_signal = np.array(table["n_signal"])
    document, _ = run_ok(
        tmp_path, path, "selection.flags=all", "mask_bits=valid+foreground", "data_max=Auto"
    )
    results = document["results"]
    assert results["mask_code"] == 5
    assert results["overall"]["summary"]["n"] == table.size()
    assert results["overall"]["summary"]["mean"] == pytest.approx(n_signal.mean(), rel=1e-5)
    assert results["overall"]["summary"]["max"] == n_signal.max()
    assert results["overall"]["histogram"]["below_range"] == 0
    assert results["overall"]["histogram"]["above_range"] == 0


def test_num_pixels_source_for_integrated_tables(tmp_path):
    from dials.array_family import flex

    path = data_path("quartz_processed/integrated.refl")
    table = flex.reflection_table.from_file(str(path))
    table = table.select(table.get_flags(table.flags.integrated_sum))
    hist = flex.histogram(
        table["num_pixels.foreground"].as_double(), data_min=0, data_max=1000, n_slots=100
    )
    document, result = run_ok(tmp_path, path, "selection.flags=integrated_sum")
    assert document["results"]["size_source"] == ["num_pixels.foreground"]
    assert document["selection"]["files"][0]["size_source"] == "num_pixels.foreground"
    counts = document["results"]["overall"]["histogram"]
    assert counts["counts"] == list(hist.slots())
    assert counts["above_range"] == hist.n_out_of_slot_range()
    assert "spot sizes from num_pixels.foreground" in result.stdout


def test_forcing_num_pixels_on_a_table_with_both(tmp_path):
    """centroid integrated.refl has shoeboxes (some rows) and num_pixels.foreground."""
    from dials.array_family import flex

    path = data_path("centroid_test_data/integrated.refl")
    table = flex.reflection_table.from_file(str(path))
    selected = table.select(table.get_flags(table.flags.indexed))
    allocated = selected["shoebox"].is_allocated()

    auto, _ = run_ok(tmp_path, path)
    assert auto["results"]["size_source"] == ["shoebox"]
    files = auto["selection"]["files"][0]
    assert files["n_flag_selected"] == selected.size()
    assert files["n_without_shoebox_pixels"] == allocated.count(False)
    assert auto["selection"]["n_selected"] == allocated.count(True)
    # No experiment identifiers in this file: groups by id, identifier null.
    assert [e["experiment"]["identifier"] for e in auto["results"]["per_experiment"]] == [None]

    forced, _ = run_ok(tmp_path, path, "source=num_pixels", "data_max=Auto")
    assert forced["results"]["overall"]["summary"]["n"] == selected.size()
    assert forced["results"]["overall"]["summary"]["max"] == max(selected["num_pixels.foreground"])


def test_several_files_and_any_rule(tmp_path):
    from dials.array_family import flex

    paths = [data_path("sim_twoexp/indexed.refl"), data_path("sim_small/strong.refl")]
    document, _ = run_ok(tmp_path, *paths, "selection.flags=indexed,strong", "selection.rule=any")
    expected = 0
    for path in paths:
        table = flex.reflection_table.from_file(str(path))
        mask = table.flags.indexed | table.flags.strong
        expected += table.get_flags(mask, all=False).count(True)
    assert document["selection"]["n_selected"] == expected
    assert document["selection"]["dials_equivalent"].endswith("get_flags(mask, all=False)")
    labels = [e["experiment"]["label"] for e in document["results"]["per_experiment"]]
    assert labels[0].startswith("file 0: unassigned (id -1)")
    assert labels[-1].startswith("file 1: experiment 0")
    assert len(document["inputs"]["reflections"]) == 2


def test_experiments_accepted_and_recorded(tmp_path):
    expt = data_path("sim_twoexp/indexed.expt")
    document, _ = run_ok(tmp_path, expt, data_path("sim_twoexp/indexed.refl"))
    assert document["inputs"]["n_experiments"] == 2
    assert document["inputs"]["experiments"][0]["path"] == str(expt)


def test_legacy_pickle_and_empty_selection(tmp_path):
    """DIALS 3.12 reads the legacy pickle; it has no indexed spots: empty, not a crash."""
    document, result = run_ok(tmp_path, data_path("centroid_test_data/strong.pickle"))
    assert document["selection"]["n_selected"] == 0
    assert sum(document["results"]["overall"]["histogram"]["counts"]) == 0
    assert document["results"]["overall"]["summary"]["mean"] is None
    assert "No reflections selected" in result.stdout

    document, _ = run_ok(
        tmp_path, data_path("centroid_test_data/strong.pickle"), "selection.flags=all"
    )
    assert document["selection"]["n_selected"] == 654


def test_out_of_range_values_are_counted(tmp_path):
    path = data_path("sim_small/indexed.refl")
    _, pixels, _ = seed_histogram(path)
    document, result = run_ok(tmp_path, path, "data_min=10", "data_max=20", "n_slots=5")
    histogram = document["results"]["overall"]["histogram"]
    assert histogram["below_range"] == int((pixels < 10).sum())
    assert histogram["above_range"] == int((pixels > 20).sum())
    assert sum(histogram["counts"]) + histogram["below_range"] + histogram["above_range"] == len(
        pixels
    )
    assert "below" in result.stdout


def test_phil_rerun_reproduces_the_results(tmp_path):
    path = data_path("sim_twoexp/indexed.refl")
    first, _ = run_ok(
        tmp_path,
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
    second, _ = run_ok(tmp_path, path, "params.phil")
    assert second["results"] == first["results"]
    assert second["selection"] == first["selection"]
    assert second["parameters"]["effective_phil"] == first["parameters"]["effective_phil"]


def test_plot_format_by_suffix(tmp_path):
    path = data_path("sim_small/indexed.refl")
    run_ok(tmp_path, path, "plot=sizes.svg")
    assert (tmp_path / "sizes.svg").read_text().lstrip().startswith("<?xml")
    run_ok(tmp_path, path, "plot=sizes.pdf", "json=other.json")
    assert (tmp_path / "sizes.pdf").read_bytes().startswith(b"%PDF")
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_help_and_show_config(tmp_path):
    result = run_program(PROGRAM, cwd=tmp_path)
    assert result.returncode == 0
    assert "usage: dials.spot_size_histogram" in result.stdout
    result = run_program(PROGRAM, "-c", "-a2", cwd=tmp_path)
    assert result.returncode == 0
    assert "n_slots = 100" in result.stdout and "mask_bits" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_inputs_are_not_modified(tmp_path):
    path = data_path("sim_twoexp/indexed.refl")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    run_ok(tmp_path, path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


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
    return truncated, not_refl, empty, bad_pickle


ERROR_CASES = [
    (["missing.refl"], "missing.refl: file not found"),
    (["{notes}"], "notes.refl: not a DIALS reflection file"),
    (["{truncated}"], "truncated.refl: truncated file (column 'shoebox' needs"),
    (["{truncated}", "reader=dials"], "truncated.refl: truncated or corrupt reflection file"),
    (["{empty}"], "empty.refl: empty file"),
    (["{bad_pickle}"], "broken.pickle: legacy pickle reflection table that this DIALS cannot read"),
    (["{integrated}"], "neither a 'shoebox' nor a 'num_pixels.foreground' column"),
    (["{quartz}", "source=shoebox"], "no 'shoebox' column for source=shoebox"),
    (["{good}", "selection.flags=indexd"], "Unknown reflection flag 'indexd'"),
    (["{good}", "data_min=5", "data_max=5"], "data_max (5) must be greater than"),
    (["{good}", "n_slots=0"], "n_slots must be at least 1"),
    (["{good}", "plot=sizes.gif"], "unsupported plot format 'gif'"),
    (["{good}", "no_such_parameter=3"], "no_such_parameter=3"),
]


@pytest.mark.parametrize("args,message", ERROR_CASES)
def test_bad_input_is_a_one_line_sorry_with_no_outputs(tmp_path, args, message):
    truncated, not_refl, empty, bad_pickle = broken_files(tmp_path)
    names = {
        "bad_pickle": bad_pickle,
        "truncated": truncated,
        "notes": not_refl,
        "empty": empty,
        "good": data_path("sim_small/indexed.refl"),
        "integrated": data_path("ssx_CuNiR/integrated.refl"),
        "quartz": data_path("quartz_processed/integrated.refl"),
    }
    work = tmp_path / "work"
    work.mkdir()
    result = run_program(PROGRAM, *[a.format(**names) for a in args], cwd=work)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Sorry: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert list(work.iterdir()) == []


def test_run_called_directly(tmp_path, monkeypatch, clean_logging):
    """``run(args)`` in-process, as a workflow or notebook would call it."""
    from dials_refl_stats.command_line.spot_size_histogram import run

    monkeypatch.chdir(tmp_path)
    path = data_path("sim_small/indexed.refl")
    _, pixels, hist = seed_histogram(path)
    run([str(path), "output.plot=None"])
    document = json.loads((tmp_path / f"{PROGRAM}.json").read_text())
    validate(document)
    assert document["results"]["overall"]["histogram"]["counts"] == list(hist.slots())
    assert not (tmp_path / f"{PROGRAM}.png").exists()
    from dials.util import Sorry

    with pytest.raises(Sorry, match="n_slots must be at least 1"):
        run([str(path), "n_slots=0"])
