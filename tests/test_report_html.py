"""The HTML report in a real browser: real program outputs, headless Chromium, no network.

One report holds every case (single sweep, two experiments, stills, an empty selection,
a hostile file name, oversized binning, an unknown program, a statistic not computed);
Chromium loads it once (DOM dump and screenshot in one run) to keep the test short.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import chromium, load
from conftest import data_path, needs_dials

from dials_refl_stats.compact import reflection_paths
from dials_refl_stats.report import (
    MAX_BYTES,
    ReportTooLarge,
    not_computed,
    render_report,
    write_report,
)
from dials_refl_stats.report.programs.frames import coarse_per_frame

pytestmark = [
    needs_dials,
    pytest.mark.skipif(chromium() is None, reason="Chromium is not installed"),
]

ARTIFACTS = Path(__file__).parent / "artifacts"

#: A file name that is also markup: must show as text, never run.
HOSTILE = (
    "</script><script>document.body.dataset.pwned=1</script>"
    "<img src=x onerror=document.body.dataset.pwned=2>&amp;\"'.refl"
)


def _run(program: str, args: list[str], name: str, cwd: Path) -> dict:
    """Run ``dials.<program>`` in-process in ``cwd``; its JSON document."""
    from importlib import import_module

    run = import_module(f"dials_refl_stats.command_line.{program}").run
    names = ("dials", "dxtbx", "py.warnings")
    before = {n: list(logging.getLogger(n).handlers) for n in names}
    old = os.getcwd()
    os.chdir(cwd)
    try:
        run([*map(str, args), f"output.json={name}.json", "output.plot=None"])
    finally:
        os.chdir(old)
        for n in names:
            for handler in list(logging.getLogger(n).handlers):
                if handler not in before[n]:
                    logging.getLogger(n).removeHandler(handler)
                    handler.close()
    return json.loads((cwd / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """``(documents by case, html text, html path, Page)``."""
    work = tmp_path_factory.mktemp("report")
    small = data_path("sim_small/integrated.refl").parent
    two = data_path("sim_twoexp/integrated.refl").parent
    ssx = data_path("ssx_CuNiR/integrated.refl").parent
    hostile = work.joinpath(*HOSTILE.split("/"))
    hostile.parent.mkdir(parents=True)
    shutil.copy(small / "indexed.refl", hostile)
    cases = {
        "spot": ("spot_size_histogram", [small / "indexed.refl", "n_slots=50"]),
        "frames": (
            "intensity_per_frame",
            [small / "integrated.expt", small / "integrated.refl", "intensity.choice=sum+prf"],
        ),
        "positions": (
            "strong_reflection_positions",
            [small / "integrated.expt", small / "integrated.refl"],
        ),
        "empty": (
            "spot_size_histogram",
            [data_path("sim_small/strong.refl"), "selection.fallback=False"],
        ),
        "two_spot": ("spot_size_histogram", [two / "indexed.refl"]),
        "two_frames": ("intensity_per_frame", [two / "integrated.expt", two / "integrated.refl"]),
        "two_positions": (
            "strong_reflection_positions",
            [two / "integrated.expt", two / "integrated.refl"],
        ),
        "stills_frames": (
            "intensity_per_frame",
            [ssx / "integrated.expt", ssx / "integrated.refl"],
        ),
        "stills_positions": (
            "strong_reflection_positions",
            [ssx / "integrated.expt", ssx / "integrated.refl", "selection.flags=integrated_sum"],
        ),
        "hostile": ("spot_size_histogram", [hostile]),
        # 10^5 histogram slots, overall and per experiment: the document alone is bigger
        # than the whole report may be.
        "huge": (
            "spot_size_histogram",
            [
                two / "indexed.refl",
                "n_slots=100000",
                "data_max=1e6",
                "experiment_histograms=True",
                "selection.flags=strong",
            ],
        ),
        "per_image": (
            "per_image_statistics",
            [small / "integrated.expt", small / "integrated.refl"],
        ),
        "empty_frames": (
            "intensity_per_frame",
            [data_path("sim_small/strong.refl"), "selection.fallback=False", "frame.source=xyzobs"],
        ),
    }
    assert list(cases) == ORDER[: len(cases)]
    documents = {name: _run(program, args, name, work) for name, (program, args) in cases.items()}
    generic = json.loads(json.dumps(documents["two_frames"]))
    generic["program"] = "dials.future_statistic"  # no builder: the generic section
    entries = [
        *documents.values(),
        generic,
        not_computed("dials.per_image_statistics", "no images in the input"),
    ]
    path = work / "report.html"
    write_report(path, entries, "Report test: <all> cases & more")
    text = path.read_text(encoding="utf-8")
    page = load(path, work / "chromium", screenshot=ARTIFACTS / "report.png")
    return documents, text, path, page


#: Report entries in order: the cases of the fixture, then the generic and skipped ones.
ORDER = [
    "spot",
    "frames",
    "positions",
    "empty",
    "two_spot",
    "two_frames",
    "two_positions",
    "stills_frames",
    "stills_positions",
    "hostile",
    "huge",
    "per_image",
    "empty_frames",
    "generic",
    "not_computed",
]


def _section(dom: str, case: str) -> str:
    """The DOM of the section of ``case``."""
    return re.search(rf'<section id="s{ORDER.index(case)}-.*?</section>', dom, re.S).group(0)


def test_every_plot_renders_offline_without_javascript_errors(report):
    _, text, _, page = report
    assert page.js_errors == 0, page.error_text
    expected = len(re.findall(r'<div class="plot" id="plot-\d+"', text))
    assert expected > 15
    assert page.plots_expected == expected
    assert page.plots_rendered == expected
    assert page.attribute("data-report-ready") == "1"
    assert page.dom.count('class="main-svg"') >= expected


class _Links(HTMLParser):
    """Every ``src``/``href``/``action`` attribute of a page (script text is not parsed)."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        names = ("src", "href", "action", "srcset", "data", "poster")
        self.found += [(tag, k, v or "") for k, v in attrs if k in names]


def _links(page: str) -> list[tuple[str, str, str]]:
    parser = _Links()
    parser.feed(page)
    return parser.found


def test_self_contained_and_bounded(report):
    documents, text, path, page = report
    assert path.stat().st_size <= MAX_BYTES
    huge = path.parent / "huge.json"
    assert huge.stat().st_size > MAX_BYTES  # that program output alone is bigger
    assert text.count("plotly.js v") == 1  # inlined once
    for source in (text, page.dom):  # as written, and after the scripts ran
        links = _links(source)
        assert links and all(v.startswith("#") for _, _, v in links), links
        assert not [tag for tag, name, _ in _links(source) if tag == "script" and name == "src"]
    # The 10^5 slots were merged into at most 2000 bars, and the plot says so.
    assert "50 adjacent slots merged per bar" in text


def test_hostile_file_name_is_text(report):
    _, text, _, page = report
    assert "<img src=x" not in text and "<script>document" not in text
    assert "data-pwned" not in page.dom
    section = _section(page.dom, "hostile")
    assert html.escape(HOSTILE.split("/")[-1], quote=False) in section
    assert page.js_errors == 0


def test_empty_selection(report):
    _, _, _, page = report
    section = _section(page.dom, "empty")
    assert 'data-status="empty"' in section
    assert "0 of 1514" in section
    assert "no reflections selected" in section  # the note drawn in the empty plot
    assert section.count('class="main-svg"') >= 1
    frames = _section(page.dom, "empty_frames")
    assert 'data-status="empty"' in frames and "No frames to plot." in frames
    assert 'class="plot"' not in frames


def test_two_experiments_overlaid(report):
    documents, _, _, page = report
    labels = documents["two_spot"]["results"]["per_experiment"]["label"]
    assert len(labels) == 2
    section = _section(page.dom, "two_spot")
    for label in labels:
        assert html.escape(label) in section  # legend entries of the overlay
    frames = _section(page.dom, "two_frames")
    assert frames.count("mean I/σ") >= 1 and "2 rows" in frames


def test_stills(report):
    documents, _, _, page = report
    frames = _section(page.dom, "stills_frames")
    assert "experiment index (stills" in frames  # the x axis: one image per experiment
    n_stills = len(documents["stills_frames"]["results"]["series"][0]["experiments"])
    assert f"{n_stills} experiment(s)" in frames
    positions = _section(page.dom, "stills_positions")
    assert "Strong reflection positions" in positions and 'class="main-svg"' in positions


def test_unknown_program_and_not_computed(report):
    _, _, _, page = report
    per_image = _section(page.dom, "per_image")  # generic until it has a builder
    assert 'class="main-svg"' in per_image and "<table>" in per_image
    generic = _section(page.dom, "generic")
    assert 'data-status="generic"' in generic
    # Its column tables (per_frame, nested in lists) were found, tabulated and plotted.
    assert "results.intensities[0].series[0].per_frame" in generic and "<table>" in generic
    assert 'class="main-svg"' in generic
    skipped = _section(page.dom, "not_computed")
    assert 'data-status="not computed"' in skipped and "no images in the input" in skipped


def test_saved_parameters_rerun_to_the_same_results(report, tmp_path):
    documents, _, _, page = report
    section = _section(page.dom, "spot")
    phil = html.unescape(re.search(r'<pre id="phil-[^"]*">(.*?)</pre>', section, re.S).group(1))
    assert "n_slots = 50" in phil
    (tmp_path / "saved.phil").write_text(phil)
    path = reflection_paths(documents["spot"]["inputs"]["reflections"])[0]
    rerun = _run("spot_size_histogram", [path, tmp_path / "saved.phil"], "rerun", tmp_path)
    assert rerun["results"] == documents["spot"]["results"]


def test_merged_frame_bins_are_exact_for_counts_and_means(report):
    documents, _, _, _ = report
    block = documents["frames"]["results"]["intensities"][0]
    per_frame = block["series"][0]["per_frame"]
    merged, k = coarse_per_frame(per_frame, 5)
    assert k == -(-len(per_frame["count"]) // 5) and len(merged["count"]) <= 5
    assert merged["count"].sum() == block["overall"]["n"]
    overall_mean = (merged["mean"] * merged["count"]).sum() / merged["count"].sum()
    assert overall_mean == pytest.approx(block["overall"]["mean"], rel=1e-5)


def test_write_report_is_atomic(report, tmp_path):
    documents, _, _, _ = report
    target = tmp_path / "one.html"
    write_report(target, [documents["empty"]])
    assert [p.name for p in tmp_path.iterdir()] == ["one.html"]
    assert render_report([documents["empty"]]).count("<section") == 1


def test_many_documents_shrink_to_fit(report):
    documents, _, _, _ = report
    many = [d for name, d in documents.items() if name != "huge"] * 5
    text = render_report(many)
    assert len(text.encode("utf-8")) <= MAX_BYTES
    assert text.count("<section ") == len(many)
    with pytest.raises(ReportTooLarge):
        render_report(many[:1], max_bytes=MAX_BYTES // 2)  # less than plotly.js alone
