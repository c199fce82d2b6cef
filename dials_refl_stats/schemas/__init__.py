"""JSON Schemas of the programs' outputs (``<program>.schema.json``, plus the envelope)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent


def load_schema(name: str) -> dict:
    """The schema ``<name>.schema.json`` (``name`` like ``spot_size_histogram``)."""
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


def validate(document: dict) -> None:
    """Validate a program's output against its schema (needs ``jsonschema``).

    Raises ``jsonschema.ValidationError`` when the document does not conform.
    """
    _validator(document["program"].split(".", 1)[1]).validate(document)


@functools.lru_cache(maxsize=None)
def _validator(program: str):
    """The checked schema's validator, built once per program and process."""
    import jsonschema

    schema = load_schema(program)
    store = {}
    for path in SCHEMA_DIR.glob("*.schema.json"):
        other = load_schema(path.name[: -len(".schema.json")])
        store[other["$id"]] = other
    resolver = jsonschema.RefResolver.from_schema(schema, store=store)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, resolver=resolver)
