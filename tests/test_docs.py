"""The documentation stays true to the code.

Every program module has a page whose parameter table is what ``phil_docs`` generates
from its ``phil_scope`` now, the JSON field tables match the schemas, the documented
summary lines are what the programs print on the demo data, README.md names every
program within 200 lines, and every relative link and picture exists.
"""

from __future__ import annotations

import pkgutil
import re
import shutil
from pathlib import Path

import pytest
from conftest import load_script, needs_dials

from dials_refl_stats import command_line, phil_docs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
REGENERATE = "run 'python docs/generate.py' (with the Python that has DIALS) and commit the result"

PROGRAMS = sorted(m.name for m in pkgutil.iter_modules(command_line.__path__))
PAGES = [README, *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("programs/*.md"))]

#: Markdown links and images: [text](target) and ![alt](target).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def outside_code(text: str) -> list[str]:
    """The lines of a Markdown text that are not inside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return lines


def heading_anchors(path: Path) -> set[str]:
    """Anchors from the raw headings (backticks kept as text, as GitHub renders them)."""
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            title = match.group(2).replace("`", "").lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_program_module_is_documented():
    assert PROGRAMS, "no program modules found"
    assert phil_docs.program_names() == PROGRAMS


@pytest.mark.parametrize("program", PROGRAMS)
def test_parameter_table_is_current(program):
    page = DOCS / "programs" / f"{program}.md"
    assert page.exists(), f"{page.relative_to(ROOT)} is missing: {REGENERATE}"
    block = phil_docs.extract_block(page.read_text(encoding="utf-8"))
    assert block is not None, f"{page.relative_to(ROOT)} has no parameter markers: {REGENERATE}"
    assert block == phil_docs.generated_block(program), (
        f"the parameter table of {page.relative_to(ROOT)} differs from dials.{program}'s "
        f"phil_scope: {REGENERATE}"
    )


@pytest.mark.parametrize("program", PROGRAMS)
def test_parameter_table_lists_every_parameter(program):
    """Each leaf parameter of the phil scope has a row with its full path and default."""
    table = phil_docs.program_table(program)
    phil = phil_docs.program_phil(program)
    for definition in phil.all_definitions():
        path = definition.path
        row = next((r for r in table.splitlines() if r.startswith(f"| `{path}` |")), None)
        assert row is not None, f"{path} is not in the table"
        default = phil_docs.describe_default(definition.object)
        assert f"`{default}`" in row or not default


def test_choice_defaults_and_types():
    """Choices show their starred default; multi-choices join several with +."""
    phil = phil_docs.program_phil("intensity_per_frame")
    by_path = {d.path: d.object for d in phil.all_definitions()}
    assert phil_docs.describe_default(by_path["intensity.choice"]) == "sum"
    assert phil_docs.describe_type(by_path["intensity.choice"]).startswith("choices (any of")
    assert phil_docs.describe_default(by_path["frame.source"]) == "xyzcal"
    assert phil_docs.describe_type(by_path["frame.bin_width"]) == (
        "int(value_min=1, value_max=1000000000)"
    )


def test_json_tables_are_current():
    generator = load_script("docs/generate.py", "docs_generate")
    stale = [p.relative_to(ROOT) for p in generator.stale_pages()]
    assert not stale, f"generated parts out of date in {stale}: {REGENERATE}"
    text = (DOCS / "json.md").read_text(encoding="utf-8")
    for name in ["envelope", *generator.schema_names()]:
        begin, end = generator.schema_markers(name)
        assert begin in text and end in text, f"docs/json.md has no table for {name}"


def test_readme_names_every_program_within_200_lines():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for program in PROGRAMS:
        assert f"dials.{program}" in text, f"README.md does not mention dials.{program}"
        assert f"docs/programs/{program}.md" in text


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip().startswith("make ")]
    assert commands, ".ci/run runs no make target"
    readme = README.read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for command in commands:
        assert command in readme, f"README.md does not show '{command}' (what .ci/run runs)"
    for target in re.findall(r"^make (\w+)", readme, re.M):
        assert re.search(rf"^{target}:", makefile, re.M), f"README: no Makefile target {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_exist(page):
    text = "\n".join(outside_code(page.read_text(encoding="utf-8")))
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        assert resolved.exists(), f"{page.relative_to(ROOT)}: link to missing {target}"
        assert ROOT in resolved.parents or resolved == ROOT, f"{target} leaves the repository"
        if anchor and resolved.suffix == ".md":
            assert anchor in heading_anchors(resolved), (
                f"{page.relative_to(ROOT)}: no heading for #{anchor} in {path_part or 'itself'}"
            )


def test_pictures_are_small_pngs_and_all_used():
    images = sorted((DOCS / "images").glob("*"))
    assert images
    used = " ".join(p.read_text(encoding="utf-8") for p in PAGES)
    for image in images:
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{image.name} is not a PNG"
        assert image.stat().st_size < 150_000, f"{image.name} is not < 150 kB"
        assert f"images/{image.name}" in used, f"{image.name} is not shown anywhere"


def documented_summary(program: str) -> list[str]:
    """The lines of the first code block after '## Log summary line' on the page."""
    text = (DOCS / "programs" / f"{program}.md").read_text(encoding="utf-8")
    section = text.split("## Log summary line", 1)[1]
    block = section.split("```", 2)[1]
    return [line for line in block.strip().splitlines() if line]


@needs_dials
@pytest.mark.parametrize("program", PROGRAMS)
def test_documented_summary_line_is_real(program, run_inprocess, tmp_path):
    """The page's summary line is what the README's example prints on the demo data."""
    generator = load_script("docs/generate.py", "docs_generate")
    runs = {name: args for name, args in generator.IMAGE_RUNS.values()}
    assert program in runs, f"docs/generate.py has no example run of dials.{program}"
    for path in generator.DEMO_DATA.iterdir():
        shutil.copy(path, tmp_path)
    extra = [] if program == "refl_stats" else ["output.plot=None"]
    result = run_inprocess(program, *runs[program], *extra, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    log = (tmp_path / f"dials.{program}.log").read_text(encoding="utf-8").splitlines()
    for line in documented_summary(program):
        assert line in log, (
            f"docs/programs/{program}.md shows '{line}', the program logs {log[-3:]}"
        )
    assert log[-1] == documented_summary(program)[-1]


def test_readme_examples_are_the_tested_runs():
    """The README's example command of each program is the run the summary test makes."""
    readme = README.read_text(encoding="utf-8")
    for program, args in load_script("docs/generate.py", "docs_generate").IMAGE_RUNS.values():
        command = " ".join([f"dials.{program}", *args])
        assert command in readme, f"README.md does not show '{command}'"


def example_commands() -> list[tuple[Path, str, list[str]]]:
    """(page, program, arguments) of every ``dials.<program> ...`` line in code blocks."""
    found = []
    for page in PAGES:
        fenced = False
        for line in page.read_text(encoding="utf-8").splitlines():
            if FENCE.match(line):
                fenced = not fenced
                continue
            match = re.match(r"\s*dials\.(\w+)\s(.*)", line) if fenced else None
            if match and match.group(1) in PROGRAMS:
                words = match.group(2).split("#")[0].replace("\\", " ").split()
                found.append((page, match.group(1), words))
    return found


def test_example_parameters_exist():
    """Every name=value in a documented command names a parameter of that program
    (full path, or a unique last part of one, as phil resolves abbreviations)."""
    examples = example_commands()
    assert len(examples) >= 2 * len(PROGRAMS)
    for page, program, words in examples:
        paths = [d.path for d in phil_docs.program_phil(program).all_definitions()]
        for word in words:
            name = word.split("=", 1)[0]
            if "=" not in word or "/" in name or name.startswith("'"):
                continue
            matches = [p for p in paths if p == name or p.endswith(f".{name}")]
            assert matches, f"{page.relative_to(ROOT)}: dials.{program} has no parameter {name}"


def test_help_text_is_not_read_as_html():
    """'<prefix>.json' in a help text would vanish as an HTML tag; 'I <= 0' stays as is."""
    table = phil_docs.program_table("refl_stats")
    assert "<prefix>" not in table and "&lt;prefix>.json" in table
    assert phil_docs._text("I <= 0, x|y") == "I <= 0, x\\|y"
