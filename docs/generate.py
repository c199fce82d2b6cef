"""Regenerate the generated parts of docs/ in place.

    python docs/generate.py            # parameter tables and JSON field tables
    python docs/generate.py --check    # exit 1 if any generated part is out of date
    python docs/generate.py --images   # also rerun the programs for docs/images/*.png

Parameter tables come from each program's ``phil_scope``
(:mod:`dials_refl_stats.phil_docs`) and go between ``<!-- parameters:begin -->`` and
``<!-- parameters:end -->`` in ``docs/programs/<program>.md`` (a page is created, with
the program's help, when a program has none). JSON field tables come from
``dials_refl_stats/schemas/`` and go between ``<!-- schema:<name>:begin -->`` and
``<!-- schema:<name>:end -->`` in ``docs/json.md``. Run it with the Python that has
DIALS (``.venv/bin/python docs/generate.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dials_refl_stats import phil_docs  # noqa: E402

PROGRAMS_DIR = DOCS / "programs"
JSON_DOC = DOCS / "json.md"
IMAGES_DIR = DOCS / "images"
SCHEMA_DIR = ROOT / "dials_refl_stats" / "schemas"
DEMO_DATA = ROOT / "dials_refl_stats" / "data" / "sim_small"

#: Largest picture in docs/images (bytes).
MAX_IMAGE_BYTES = 150_000


# --- parameter tables ----------------------------------------------------------------


def program_doc(name: str) -> Path:
    return PROGRAMS_DIR / f"{name}.md"


def new_program_page(name: str) -> str:
    """A first page for a program without one: its help and the generated table."""
    help_text = phil_docs.program_module(name).help_message.strip()
    return (
        f"# dials.{name}\n\n```\n{help_text}\n```\n\n## Parameters\n\n"
        f"{phil_docs.generated_block(name)}\n"
    )


def program_page(name: str) -> str:
    """The page of program ``name`` with its parameter table regenerated."""
    path = program_doc(name)
    if not path.exists():
        return new_program_page(name)
    return phil_docs.replace_block(
        path.read_text(encoding="utf-8"), phil_docs.generated_block(name)
    )


# --- JSON field tables ---------------------------------------------------------------

SCHEMA_HEADER = "| field | type | required | description |\n|---|---|---|---|"


def load_schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


def schema_names() -> list[str]:
    """Program schemas (every ``*.schema.json`` but the envelope), sorted."""
    names = [p.name[: -len(".schema.json")] for p in SCHEMA_DIR.glob("*.schema.json")]
    return sorted(n for n in names if n != "envelope")


def _ref_name(ref: str) -> str:
    """``envelope.schema.json#/$defs/histogram`` -> ``histogram`` (a readable name)."""
    document, _, pointer = ref.partition("#")
    parts = [p for p in pointer.split("/") if p and p not in ("$defs", "properties")]
    prefix = document.replace(".schema.json", "")
    if not parts:
        return prefix
    name = ".".join(parts)
    return f"{prefix}: {name}" if prefix and prefix != "envelope" else name


def _type_text(node: dict) -> str:
    """A node's type in words (references by name)."""
    if "$ref" in node:
        return f"see `{_ref_name(node['$ref'])}`"
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    for key in ("oneOf", "anyOf"):
        if key in node:
            return " or ".join(_type_text(option) for option in node[key])
    parts = [f"`{_ref_name(r['$ref'])}`" for r in node.get("allOf", []) if "$ref" in r]
    kind = node.get("type")
    if isinstance(kind, list):
        text = " or ".join(kind)
    elif kind == "array":
        text = f"array of {_type_text(node.get('items', {}))}"
    elif kind:
        text = kind
    elif "properties" in node:
        text = "object"
    else:
        text = "any"
    if parts:
        text = " + ".join(parts) + (" with" if "properties" in node else "")
    return text


def _children(node: dict) -> list[tuple[str, dict]]:
    """(suffix, node) of the fields below ``node``: properties, array items, variants."""
    out = []
    for option in node.get("oneOf", []) + node.get("anyOf", []):
        out += _children(option)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        out += [(f"[].{name}", child) for name, child in _item_properties(node["items"])]
    out += [(f".{name}", child) for name, child in _properties(node)]
    return out


def _item_properties(items: dict) -> list[tuple[str, dict]]:
    return _properties(items)


def _properties(node: dict) -> list[tuple[str, dict]]:
    """Named fields of an object node: its properties, then required names without one."""
    properties = dict(node.get("properties", {}))
    for name in node.get("required", []):
        properties.setdefault(name, {})
    return list(properties.items())


def schema_rows(node: dict, path: str, max_depth: int = 4) -> list[str]:
    """Rows for every field below ``node`` (paths from ``path``), depth-first."""
    rows = []

    def visit(current: dict, prefix: str, depth: int) -> None:
        required = set(current.get("required", []))
        for option in current.get("oneOf", []) + current.get("anyOf", []):
            required |= set(option.get("required", []))
        items = current.get("items") if current.get("type") == "array" else None
        if isinstance(items, dict):
            required |= set(items.get("required", []))
        for suffix, child in _children(current):
            name = suffix.rsplit(".", 1)[-1]
            field = f"{prefix}{suffix}"
            description = phil_docs._text(child.get("description", ""))
            mark = "yes" if name in required else ""
            rows.append(f"| `{field}` | {_type_text(child)} | {mark} | {description} |")
            if depth < max_depth:
                visit(child, field, depth + 1)

    visit(node, path, 1)
    return rows


def schema_table(name: str) -> str:
    """The field table of schema ``name``: the envelope's fields and shared definitions,
    or a program's ``results``."""
    schema = load_schema(name)
    if name == "envelope":
        rows = schema_rows(schema, "", max_depth=3)
        for def_name, node in schema.get("$defs", {}).items():
            rows.append(f"| **`{def_name}`** (shared) | {_type_text(node)} | | |")
            rows += schema_rows(node, def_name, max_depth=2)
    else:
        rows = schema_rows(
            {"properties": {"results": schema["properties"]["results"]}, "required": ["results"]},
            "",
        )
        for def_name, node in schema.get("$defs", {}).items():
            rows.append(f"| **`{def_name}`** (this schema) | {_type_text(node)} | | |")
            rows += schema_rows(node, def_name, max_depth=2)
    description = schema.get("description")
    lines = [SCHEMA_HEADER, *(r.replace("| `.", "| `") for r in rows)]
    if description:
        lines.insert(0, f"{phil_docs._text(description)}\n")
    return "\n".join(lines)


def schema_markers(name: str) -> tuple[str, str]:
    return f"<!-- schema:{name}:begin -->", f"<!-- schema:{name}:end -->"


def json_page() -> str:
    """docs/json.md with every schema table regenerated (missing blocks are appended)."""
    text = JSON_DOC.read_text(encoding="utf-8")
    for name in ["envelope", *schema_names()]:
        begin, end = schema_markers(name)
        block = f"{begin}\n{schema_table(name)}\n{end}"
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < 0:
            text = text.rstrip("\n") + f"\n\n### `{name}` (generated)\n\n{block}\n"
        else:
            text = text[:start] + block + text[stop + len(end) :]
    return text


# --- all generated pages -------------------------------------------------------------


def generated_pages() -> dict[Path, str]:
    """Every generated page's path and up-to-date text."""
    pages = {program_doc(name): program_page(name) for name in phil_docs.program_names()}
    if JSON_DOC.exists():
        pages[JSON_DOC] = json_page()
    return pages


def stale_pages() -> list[Path]:
    """Pages whose generated parts differ from what the code generates now."""
    return [
        path
        for path, text in generated_pages().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def write_pages() -> list[Path]:
    changed = []
    for path, text in generated_pages().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


# --- pictures ------------------------------------------------------------------------

#: Picture name -> (program, arguments): the README's example commands on the demo data.
IMAGE_RUNS = {
    "spot_size_histogram": ("spot_size_histogram", ["indexed.expt", "indexed.refl"]),
    "intensity_per_frame": (
        "intensity_per_frame",
        ["integrated.expt", "integrated.refl", "intensity.choice=sum+prf"],
    ),
    "strong_reflection_positions": (
        "strong_reflection_positions",
        ["integrated.expt", "integrated.refl"],
    ),
    "per_image_statistics": ("per_image_statistics", ["indexed.expt", "indexed.refl"]),
    "refl_stats": ("refl_stats", ["integrated.expt", "integrated.refl"]),
}


def run_program(name: str, args: list[str], cwd: str) -> None:
    code = f"import sys; from {phil_docs.PROGRAM_PACKAGE}.{name} import run; run(sys.argv[1:])"
    subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, check=True, capture_output=True)


def screenshot(html: str, png: str, width: int = 1280, height: int = 1400) -> None:
    """A headless-Chromium picture of the top of an HTML page (network unreachable)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is needed for the report picture (apt install chromium)")
    subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=8000",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            Path(html).resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def shrink(source: str, target: Path, max_bytes: int = MAX_IMAGE_BYTES) -> int:
    """Save ``source`` as a palette PNG under ``max_bytes`` (narrower or fewer colours)."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    for width, colours in ((1400, 128), (1200, 96), (1100, 64), (1000, 48), (900, 32)):
        scaled = image
        if image.width > width:
            scaled = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        scaled.quantize(colours, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
        size = target.stat().st_size
        if size < max_bytes:
            return size
    raise SystemExit(f"{target}: {size} bytes, more than {max_bytes}")


def make_images() -> dict[str, int]:
    """Run the programs on the bundled demo data; pictures into docs/images/."""
    IMAGES_DIR.mkdir(exist_ok=True)
    sizes = {}
    with tempfile.TemporaryDirectory() as work:
        for path in DEMO_DATA.iterdir():
            shutil.copy(path, work)
        for picture, (program, args) in IMAGE_RUNS.items():
            run_program(program, args, work)
            made = os.path.join(work, f"{program}.png")
            if program == "refl_stats":
                screenshot(os.path.join(work, "refl_stats.html"), made)
            sizes[picture] = shrink(made, IMAGES_DIR / f"{picture}.png")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale pages")
    parser.add_argument("--images", action="store_true", help="also remake docs/images")
    options = parser.parse_args(argv)
    if options.check:
        stale = stale_pages()
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)} (run python docs/generate.py)")
        return 1 if stale else 0
    for path in write_pages():
        print(f"updated {path.relative_to(ROOT)}")
    if options.images:
        for picture, size in make_images().items():
            print(f"docs/images/{picture}.png: {size / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
