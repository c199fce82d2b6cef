"""dials.refl_stats reports in a real browser: headless Chromium, network off.

Three real runs (a sweep integrated, stills indexed, a strong table alone); each report is
loaded once (DOM dump), and the stills one is kept as a screenshot in tests/artifacts/.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from browser import FLAGS, Page, _body_attributes, _offline_prefix, chromium
from conftest import data_path, needs_dials

from dials_refl_stats.report import MAX_BYTES

pytestmark = [
    needs_dials,
    pytest.mark.skipif(chromium() is None, reason="Chromium is not installed"),
]

ARTIFACTS = Path(__file__).parent / "artifacts"

CASES = {
    "integrated": ["sim_small/integrated.expt", "sim_small/integrated.refl"],
    "stills": ["ssx_CuNiR/indexed.expt", "ssx_CuNiR/indexed.refl"],
    "strong": ["sim_small/strong.refl"],
}
#: The case kept as a screenshot (the one with every per-image plot).
SCREENSHOT = "stills"


def run_refl_stats(args: list[str], cwd: Path) -> None:
    """``dials.refl_stats args`` in this process, in ``cwd`` (log handlers it adds removed)."""
    from dials_refl_stats.command_line.refl_stats import run

    names = ("dials", "dxtbx", "py.warnings")
    before = {n: list(logging.getLogger(n).handlers) for n in names}
    here = os.getcwd()
    os.chdir(cwd)
    try:
        run(args)
    finally:
        os.chdir(here)
        for n in names:
            for handler in list(logging.getLogger(n).handlers):
                if handler not in before[n]:
                    logging.getLogger(n).removeHandler(handler)
                    handler.close()


def load_once(html: Path, profile: Path, screenshot: Path | None) -> Page:
    """As :func:`browser.load`, but the DOM and the screenshot come from one Chromium run."""
    args = ["--dump-dom"]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        args += [f"--screenshot={screenshot}", "--window-size=1400,3000", "--hide-scrollbars"]
    command = [*_offline_prefix(), chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    env = {**os.environ, "HOME": str(profile)}
    result = subprocess.run(
        [*command, html.resolve().as_uri()], capture_output=True, text=True, timeout=90, env=env
    )
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return Page(result.stdout, _body_attributes(result.stdout))


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, tuple[dict, Path, Page]]:
    """``{case: (refl_stats.json document, html path, Page)}``: the programs run one after
    the other; the browsers (mostly waiting) run side by side to keep the test short."""
    paths = {}
    for name, inputs in CASES.items():
        work = tmp_path_factory.mktemp(name)
        run_refl_stats([str(data_path(p)) for p in inputs], work)
        paths[name] = work

    def open_page(name: str) -> Page:
        shot = ARTIFACTS / f"refl_stats_{name}.png" if name == SCREENSHOT else None
        return load_once(paths[name] / "refl_stats.html", paths[name] / "chromium", shot)

    with ThreadPoolExecutor(len(CASES)) as pool:
        pages = dict(zip(CASES, pool.map(open_page, CASES)))
    return {
        name: (
            json.loads((work / "refl_stats.json").read_text()),
            work / "refl_stats.html",
            pages[name],
        )
        for name, work in paths.items()
    }


@pytest.fixture(params=list(CASES))
def case(request, reports):
    """``(name, document, html path, Page)`` of one case."""
    return (request.param, *reports[request.param])


def sections(dom: str) -> dict[str, tuple[str, str]]:
    """``{program: (status, section DOM)}`` of a report."""
    found = re.findall(
        r'<section id="[^"]*" data-program="([^"]*)" data-status="([^"]*)">(.*?)</section>',
        dom,
        re.S,
    )
    return {program: (status, body) for program, status, body in found}


def plot_divs(section: str) -> list[str]:
    """The DOM of each plot container of a section."""
    return re.split(r'<div class="plot[^"]*" id="plot-\d+"', section)[1:]


def overall(section: str) -> dict[str, str]:
    """The per-image section's "Overall" table as ``{quantity: value}``."""
    table = re.search(r"Overall.*?<table>(.*?)</table>", section, re.S).group(1)
    cells = re.findall(r"<tr>\s*<td[^>]*>(.*?)</td>\s*<td[^>]*>(.*?)</td>", table, re.S)
    return {k.strip(): v.strip() for k, v in cells}


def test_no_javascript_error_and_every_plot_rendered(case):
    _, _, _, page = case
    assert page.js_errors == 0, page.error_text
    assert page.attribute("data-report-ready") == "1"
    assert page.attribute("data-plots-failed") == "0"
    assert page.plots_expected > 0 and page.plots_rendered == page.plots_expected
    for program, (_, body) in sections(page.dom).items():
        for plot in plot_divs(body):
            assert 'class="main-svg"' in plot, program


def test_bounded_and_offline(case):
    _, _, path, page = case
    assert MAX_BYTES <= 6_000_000 and path.stat().st_size <= MAX_BYTES
    assert not re.search(r'<script[^>]+src="https?:', page.dom)


def test_per_image_section_is_the_dedicated_one(case):
    name, document, _, page = case
    status, body = sections(page.dom)["dials.per_image_statistics"]
    assert status == "ok"  # "generic" when shown without its builder or when it failed
    results = document["results"]["statistics"]["per_image_statistics"]["results"]
    titles = ["Spots per image", "Fraction of the selected spots indexed", "I/σ(I) bin"]
    with_expt = "estimated_d_min" in results["per_image"]
    assert with_expt == (name != "strong")
    if with_expt:
        titles.append("d_min per image")
        assert "to 4 Å (DIALS)" in body
    else:
        assert "they need the experiments (.expt)" in body
    if results["stills"]:
        titles += [
            "Stills: hit rate",
            f"Unit cells of the {results['stills']['unit_cells']['n_crystals']}",
        ]
    assert len(plot_divs(body)) == len(titles)
    for title in titles:
        assert title in body, title
    assert 'class="hm"' in body  # the heatmap layer drew an image
    table = overall(body)
    assert table["images"] == str(results["n_images"])
    assert table["strong spots"] == str(results["overall"]["n_strong"])
    assert table["indexed spots"] == str(results["overall"]["n_indexed"])
    if results["stills"]:
        assert table["hit rate"] == f"{100 * results['stills']['hit_rate']:.1f} %"


def test_statistics_not_computed_are_shown(case):
    name, document, _, page = case
    left_out = {f"dials.{e['statistic']}": e["reason"] for e in document["results"]["not_computed"]}
    shown = {p: s for p, (s, _) in sections(page.dom).items() if s == "not computed"}
    assert set(shown) == set(left_out)
    if name == "strong":
        assert "dials.intensity_per_frame" in left_out
        body = sections(page.dom)["dials.intensity_per_frame"][1]
        assert "Not computed:" in body and "xyzcal.px" in body
    if name == SCREENSHOT:
        assert (ARTIFACTS / "refl_stats_stills.png").stat().st_size > 10_000
