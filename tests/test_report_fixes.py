"""The dials.refl_stats report says what it shows: rerunnable per-section parameters,
frame axes that name the plotted numbering, scan-limit lines only when drawn, and
per-image counts per bin when the series is binned."""

from __future__ import annotations

import html
import json
import math
import re
import shlex
from pathlib import Path

import pytest
from conftest import data_path, needs_dials
from test_programs_common import run_inprocess

from dials_refl_stats.command_line.refl_stats import MEMBERS
from dials_refl_stats.compact import intensity_series_full
from dials_refl_stats.report import render_report

pytestmark = needs_dials

TWO_EXPERIMENTS = ["sim_twoexp/indexed.expt", "sim_twoexp/indexed.refl"]
STILLS = ["ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl"]
QUARTZ = ["quartz_processed/indexed.expt", "quartz_processed/indexed.refl"]
ONE_SCAN = ["quartz_processed/integrated.expt", "quartz_processed/integrated.refl"]


class Report:
    """A dials.refl_stats run: its JSON document, HTML page and figure specs."""

    def __init__(self, folder: Path) -> None:
        self.document = json.loads((folder / "refl_stats.json").read_text())
        self.html = (folder / "refl_stats.html").read_text()
        found = re.search(
            r'<script type="application/json" id="report-figures">(.*?)</script>', self.html, re.S
        )
        self.figures = json.loads(found.group(1))

    def section(self, program: str) -> str:
        """The HTML of the section of ``dials.<program>``."""
        found = re.search(
            rf'<section id="[^"]*" data-program="dials\.{program}".*?</section>', self.html, re.S
        )
        assert found, program
        return found.group(0)

    def section_figures(self, program: str) -> list[dict]:
        ids = re.findall(r'data-figure="(\d+)"', self.section(program))
        return [self.figures[int(i)] for i in ids]

    def results(self, program: str) -> dict:
        return self.document["results"]["statistics"][program]["results"]


def run_refl_stats(folder: Path, *args) -> Report:
    folder.mkdir(parents=True, exist_ok=True)
    code, _, err = run_inprocess("refl_stats", [*map(str, args)], folder)
    assert code == 0, err
    return Report(folder)


def _text(part: dict) -> str:
    return html.unescape(part["title"]["text"])


@pytest.fixture(scope="module")
def two_experiments(tmp_path_factory) -> Report:
    folder = tmp_path_factory.mktemp("two_experiments")
    inputs = [data_path(p) for p in TWO_EXPERIMENTS]
    return run_refl_stats(folder, *inputs, "spot_size_histogram.histogram.n_slots=37")


@pytest.mark.parametrize("program", MEMBERS)
def test_saved_section_parameters_rerun_the_named_program(two_experiments, tmp_path, program):
    """The instruction's program accepts the shown phil and gives the section's results."""
    section = two_experiments.section(program)
    command = html.unescape(re.search(r"<code>(.*?)</code>", section, re.S).group(1))
    named, *inputs, phil_name = shlex.split(command)
    assert named == f"dials.{program}"
    phil = html.unescape(re.search(r'<pre id="phil-[^"]*">(.*?)</pre>', section, re.S).group(1))
    assert not any(f"{other} {{" in phil for other in MEMBERS), "the whole suite scope shown"
    assert "prefix" not in phil
    (tmp_path / phil_name).write_text(phil)
    code, _, err = run_inprocess(program, [*inputs, phil_name, "output.plot=None"], tmp_path)
    assert code == 0, err
    rerun = json.loads((tmp_path / f"{program}.json").read_text())
    combined = two_experiments.document["results"]["statistics"][program]
    assert rerun["results"] == combined["results"]
    assert rerun["selection"] == combined["selection"]


def test_changed_parameters_are_the_member_programs(two_experiments):
    section = two_experiments.section("spot_size_histogram")
    changed = re.search(r"Changed from the defaults:</p>\s*<pre>(.*?)</pre>", section, re.S)
    assert "histogram {\n  n_slots = 37\n}" in html.unescape(changed.group(1))
    assert "spot_size_histogram {" not in changed.group(1)


def test_unreadable_suite_parameters_name_refl_stats(two_experiments):
    """When the suite phil cannot be made the member's own, the section keeps it and its
    instruction says dials.refl_stats, which accepts the phil shown."""
    from dials_refl_stats.command_line.refl_stats import member_parameters

    suite = {
        "effective_phil": two_experiments.document["parameters"]["effective_phil"]
        + "intensity_per_frame {\n  not_a_parameter = 1\n}\n",
        "diff_phil": "",
    }
    parameters = member_parameters("intensity_per_frame", suite)
    assert parameters["rerun_program"] == "dials.refl_stats"
    document = {
        "program": "dials.intensity_per_frame",
        "results": two_experiments.results("intensity_per_frame"),
        "parameters": parameters,
    }
    page = render_report([document])
    command = html.unescape(re.search(r"<code>(.*?)</code>", page, re.S).group(1))
    assert command.startswith("dials.refl_stats ")
    assert "not_a_parameter = 1" in html.unescape(page)


def _intensity_figures(report: Report) -> list[dict]:
    return [
        f
        for f in report.section_figures("intensity_per_frame")
        if "per frame" in _text(f["layout"])
    ]


def test_frame_axis_names_the_plotted_numbering(two_experiments):
    """Unassigned rows (no scan) are plotted at floor(z), image numbers at floor(z) + 1:
    the axis says so, in the words of the JSON's numbering rules."""
    from dials.array_family import flex

    results = intensity_series_full(two_experiments.results("intensity_per_frame"))
    rules = results["numbering_rules"]
    assert "frame = floor(z)" in rules["z_floor"] and "floor(z) + 1" in rules["image_number"]
    figures = _intensity_figures(two_experiments)
    assert len(figures) == 3
    for figure in figures:
        axis = _text(figure["layout"]["xaxis"])
        assert "frame = floor(z) (no scan)" in axis and "image number (floor(z) + 1)" in axis
        assert "floor(z) + 1, no scan" not in axis
    table = flex.reflection_table.from_file(str(data_path("sim_twoexp/indexed.refl")))
    unassigned = table.select(table["id"] == -1)
    z_floor = {math.floor(z) for _, _, z in unassigned["xyzcal.px"]}
    (median,) = [t for t in figures[0]["data"] if t["name"].startswith("median sum, unassigned")]
    assert {x for x in median["x"] if x is not None} == z_floor


def test_stills_frame_axis_is_the_experiment_index(tmp_path):
    report = run_refl_stats(tmp_path, *[data_path(p) for p in STILLS], "output.json_form=full")
    rules = intensity_series_full(report.results("intensity_per_frame"))["numbering_rules"]
    assert "experiment's index" in rules["experiment_index"]
    for figure in _intensity_figures(report):
        assert _text(figure["layout"]["xaxis"]).startswith("experiment index")
    (main,) = [f for f in _intensity_figures(report) if "Median" in _text(f["layout"])]
    assert not main["layout"].get("shapes")
    assert "scan limits" not in _text(main["layout"])


def test_scan_limits_named_only_when_drawn(two_experiments, tmp_path):
    (main,) = [f for f in _intensity_figures(two_experiments) if "Median" in _text(f["layout"])]
    assert not main["layout"].get("shapes") and "scan limits" not in _text(main["layout"])
    one_scan = run_refl_stats(tmp_path, *[data_path(p) for p in ONE_SCAN])
    (main,) = [f for f in _intensity_figures(one_scan) if "Median" in _text(f["layout"])]
    assert main["layout"]["shapes"] and "dashed: scan limits" in _text(main["layout"])


def _spots_figure(report: Report) -> dict:
    (figure,) = [
        f
        for f in report.section_figures("per_image_statistics")
        if _text(f["layout"]).startswith("Spots per") and "I/σ" not in _text(f["layout"])
    ]
    return figure


def test_binned_spots_are_per_bin(tmp_path):
    inputs = [data_path(p) for p in QUARTZ]
    binned = run_refl_stats(
        tmp_path / "binned", *inputs, "per_image_statistics.output.max_images=10"
    )
    results = binned.results("per_image_statistics")
    assert results["binned"]["images_per_bin"] == 10 and results["n_images"] == 100
    layout = _spots_figure(binned)["layout"]
    assert _text(layout).startswith("Spots per bin of 10 images")
    assert _text(layout["yaxis"]) == "spots per bin of 10 images"
    strong = _spots_figure(binned)["data"][0]
    assert sum(strong["y"]) == results["overall"]["n_strong"]
    unbinned = run_refl_stats(tmp_path / "unbinned", *inputs)
    assert unbinned.results("per_image_statistics")["binned"] is None
    layout = _spots_figure(unbinned)["layout"]
    assert _text(layout).startswith("Spots per image") and _text(layout["yaxis"]) == "spots"


def test_images_without_experiments_hover_their_file_and_id(tmp_path):
    """Two stills files given without experiments: the per-image hover text and table
    name each image's file and id (its frame alone repeats from file to file)."""
    inputs = [data_path(p) for p in ("ssx_CuNiR/strong_5.refl", "ssx_CuNiR/indexed.refl")]
    report = run_refl_stats(tmp_path, *inputs)
    table = report.results("per_image_statistics")["per_image"]
    assert set(table["experiment"]) == {-1}
    strong = _spots_figure(report)["data"][0]
    want = [
        f"image {image} (file {f}, id {i})"
        for f, i, image in zip(table["file_index"], table["id"], table["image"])
    ]
    assert strong["text"] == want
    section = html.unescape(report.section("per_image_statistics"))
    assert all(text in section for text in want)
