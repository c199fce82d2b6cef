"""Parameter tables in Markdown, generated from the programs' ``phil_scope``.

``docs/generate.py`` writes these tables into ``docs/programs/<program>.md`` between
:data:`BEGIN` and :data:`END`; ``tests/test_docs.py`` checks that they are current.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

BEGIN = "<!-- parameters:begin -->"
END = "<!-- parameters:end -->"

#: Package whose modules are the programs (one module per ``dials.<name>``).
PROGRAM_PACKAGE = "dials_refl_stats.command_line"

HEADER = "| parameter | type | default | help |\n|---|---|---|---|"


def program_names() -> list[str]:
    """Names of the program modules (those with ``phil_scope``, ``help_message``, ``run``)."""
    package = importlib.import_module(PROGRAM_PACKAGE)
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        module = program_module(info.name)
        if all(hasattr(module, a) for a in ("phil_scope", "help_message", "run")):
            names.append(info.name)
    return sorted(names)


def program_module(name: str) -> ModuleType:
    return importlib.import_module(f"{PROGRAM_PACKAGE}.{name}")


def program_phil(name: str):
    """The phil scope a user of ``dials.<name>`` sets: the program's plus ``reader``."""
    from dials_refl_stats.pipeline.arguments import with_reader_scope

    return with_reader_scope(program_module(name).phil_scope)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    text = re.sub(r"\s+", " ", text).strip()
    return text.replace("|", "\\|")


def _text(text: str) -> str:
    """Cell text outside code spans: a ``<`` that would open an HTML tag is escaped."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", _cell(text))


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def describe_type(definition) -> str:
    """The phil type as a user writes it, with choices listed (no ``allow_none``)."""
    kind = str(definition.type)
    words = [w.value for w in definition.words]
    if kind.startswith("choice"):
        options = ", ".join(w.lstrip("*") for w in words)
        multi = "multi=True" in kind
        return f"{'choices (any of, joined by +)' if multi else 'choice'}: {options}"
    kind = re.sub(r",?\s*allow_none=True", "", kind).replace("()", "")
    if definition.multiple:
        kind += " (multiple)"
    return kind


def describe_default(definition) -> str:
    """The default value: the starred choices, or the words as written."""
    words = [w.value for w in definition.words]
    if str(definition.type).startswith("choice"):
        starred = [w[1:] for w in words if w.startswith("*")]
        return "+".join(starred) if starred else "None"
    return " ".join(words)


def parameter_rows(phil) -> list[str]:
    """One Markdown row per scope with help and per parameter, in phil order."""
    rows = []

    def visit(objects, prefix: str) -> None:
        for obj in objects:
            path = f"{prefix}{obj.name}"
            expert = f"(expert level {obj.expert_level}) " if obj.expert_level else ""
            if obj.is_scope:
                if obj.help:
                    rows.append(f"| **`{path}`** | scope | | {_text(expert + obj.help)} |")
                visit(obj.objects, f"{path}.")
                continue
            help_text = _text(expert + (obj.help or ""))
            rows.append(
                f"| `{path}` | {_text(describe_type(obj))} | "
                f"{_code(_cell(describe_default(obj)))} | {help_text} |"
            )

    visit(phil.objects, "")
    return rows


def parameter_table(phil) -> str:
    """The Markdown table of every parameter of ``phil`` (full paths)."""
    return "\n".join([HEADER, *parameter_rows(phil)])


def program_table(name: str) -> str:
    """The parameter table of program ``dials.<name>``."""
    return parameter_table(program_phil(name))


def generated_block(name: str) -> str:
    """The text between (and including) the markers for program ``name``."""
    return f"{BEGIN}\n{program_table(name)}\n{END}"


def extract_block(text: str) -> str | None:
    """The marked block of a document (markers included), or ``None`` without markers."""
    start = text.find(BEGIN)
    stop = text.find(END, start + 1)
    if start < 0 or stop < 0:
        return None
    return text[start : stop + len(END)]


def replace_block(text: str, block: str) -> str:
    """``text`` with its marked block replaced by ``block`` (``ValueError`` without markers)."""
    current = extract_block(text)
    if current is None:
        raise ValueError(f"no {BEGIN} ... {END} markers")
    return text.replace(current, block, 1)
