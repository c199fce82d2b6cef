"""Output: the JSON envelope shared by every program, plain-JSON cleaning, atomic writes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dials_refl_stats import __version__

#: Version of the envelope and of every program's ``results`` layout. Bump on any
#: incompatible change; the schemas in ``dials_refl_stats/schemas`` follow it.
SCHEMA_VERSION = "3.1"

#: Significant digits kept for floats in JSON documents.
FLOAT_DIGITS = 6

#: Plot formats, chosen by the plot file's suffix.
PLOT_FORMATS = ("png", "svg", "pdf")


def plot_format(path: str) -> str:
    """The format implied by ``path``'s suffix; ``ValueError`` when unsupported."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix not in PLOT_FORMATS:
        raise ValueError(f"{path}: unsupported plot format '{suffix}' (use .png, .svg or .pdf)")
    return suffix


def to_plain(value: Any, digits: int = FLOAT_DIGITS) -> Any:
    """Convert ``value`` to plain JSON types: no numpy, no NaN/Infinity, rounded floats."""
    if isinstance(value, dict):
        return {str(k): to_plain(v, digits) for k, v in value.items()}
    if type(value) is RoundedColumn and value.digits <= digits:
        return list(value)  # plain already: rounded to no more digits than asked for
    if isinstance(value, (list, tuple)):
        plain = _plain_scalars(value, digits)
        return plain if plain is not None else [to_plain(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biu":  # whole numbers and booleans: plain already
            return value.tolist()
        if value.dtype.kind == "f" and value.ndim == 1:
            return rounded_floats(value, digits)
        return to_plain(value.tolist(), digits)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value), digits)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _round(float(value), digits)
    if isinstance(value, (str, type(None))):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


class RoundedColumn(list):
    """A list of plain JSON scalars whose floats are rounded to ``digits`` significant
    digits already (a compact column): :func:`to_plain` keeps it as it is."""

    def __init__(self, values: list, digits: int):
        super().__init__(values)
        self.digits = digits


def _round(value: float, digits: int) -> float | None:
    if not math.isfinite(value):
        return None
    if value == 0.0:
        return 0.0
    return float(f"{value:.{digits}g}")


#: Element types a list may hold to be converted in one pass (bool is an int subclass,
#: hence listed: ``type(x) in`` does not look at subclasses).
_PLAIN = frozenset({int, bool, str, type(None)})


def _plain_scalars(values: list | tuple, digits: int) -> list | None:
    """``values`` converted in one pass when they are all plain scalars or floats (the
    long columns of a document); ``None`` for anything else."""
    types = set(map(type, values))
    if types <= _PLAIN:
        return list(values)
    if types <= {float, type(None)}:
        return rounded_floats(np.array(values, dtype=np.float64), digits)
    if types <= _PLAIN | {float}:
        return [_round(v, digits) if type(v) is float else v for v in values]
    return None


#: Powers of ten that are exact doubles (1e0 ... 1e22).
_EXACT_POWERS = np.array([float(f"1e{i}") for i in range(23)])


def rounded_floats(values: np.ndarray, digits: int = FLOAT_DIGITS) -> list:
    """``[_round(v, digits) for v in values]`` (NaN and infinities: ``None``), with numpy.

    Exact: the rounded decimal ``m * 10^-k`` (``m`` of ``digits`` digits) is made as the
    division (or product) of two exact doubles, hence correctly rounded, as the parse of
    the formatted value is. Values whose ``m`` is not certain (within 1e-6 of a tie, or
    beyond 1e+/-22 of the exact powers) are rounded one by one by :func:`_round`.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    rounded = np.where(values == 0, 0.0, np.nan)  # -0.0 -> 0.0, as _round
    usable = np.flatnonzero(np.isfinite(values) & (values != 0))
    x = values[usable]
    with np.errstate(all="ignore"):  # the branch np.where does not take may overflow
        k = digits - 1 - np.floor(np.log10(np.abs(x))).astype(np.int64)
        power = _EXACT_POWERS[np.minimum(np.abs(k), 22)]
        scaled = np.where(k >= 0, x * power, x / power)
        mantissa = np.rint(scaled)
        magnitude = np.abs(scaled)
        certain = (
            (np.abs(k) <= 22)
            & (magnitude >= 10.0 ** (digits - 1))
            & (magnitude < 10.0**digits)
            & (np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) > 1e-6)
        )
        rounded[usable] = np.where(k >= 0, mantissa / power, mantissa * power)
    out = rounded.tolist()
    for i in usable[~certain].tolist():
        out[i] = _round(float(values[i]), digits)
    for i in np.flatnonzero(np.isnan(rounded)).tolist():
        if out[i] != out[i]:  # NaN, infinities and None in: None out
            out[i] = None
    return out


def make_document(
    *,
    program: str,
    form: str = "full",
    dials_version: str | None,
    inputs: dict,
    parameters: dict,
    selection: dict,
    results: Any,
) -> dict:
    """The common JSON envelope of every program's output."""
    return to_plain(
        {
            "schema_version": SCHEMA_VERSION,
            "program": program,
            "form": form,
            "version": __version__,
            "dials_version": dials_version,
            "inputs": inputs,
            "parameters": parameters,
            "selection": selection,
            "results": results,
        }
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it into place on success only."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=directory)
    os.close(fd)
    try:
        yield temporary
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def dumps(document: Any) -> str:
    """``document`` as strictly valid JSON text: objects indented one space per level,
    lists of numbers or strings (and ``{"runs": ...}`` columns) on one line with compact
    separators, so that 10^5-entry column arrays cost only their values; lists of
    objects or lists one item per line."""
    out: list[str] = []
    _dump(document, 0, out)
    out.append("\n")
    return "".join(out)


def _dump(value: Any, level: int, out: list[str]) -> None:
    pad = "\n" + " " * (level + 1)
    if isinstance(value, dict) and value and list(value) != ["runs"]:
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," if i else "") + pad + json.dumps(str(key)) + ":")
            _dump(item, level + 1, out)
        out.append("\n" + " " * level + "}")
    elif isinstance(value, list) and _holds_containers(value):
        out.append("[")
        for i, item in enumerate(value):
            out.append(("," if i else "") + pad)
            _dump(item, level + 1, out)
        out.append("\n" + " " * level + "]")
    else:
        out.append(json.dumps(value, allow_nan=False, separators=(",", ":")))


def _holds_containers(values: list) -> bool:
    """Whether ``values`` holds a dict or a list (its distinct types looked at once: a
    10^5-entry column costs one C pass)."""
    return any(issubclass(kind, (dict, list)) for kind in set(map(type, values)))


def write_json(path: str | os.PathLike, document: dict, atomic: bool = True) -> None:
    """Write ``document`` (:func:`dumps`) atomically unless told otherwise; ``json.tool``
    or ``jq`` pretty-print it."""
    text = dumps(document)
    if not atomic:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
