"""Per-file objects sent between the driver and the tasks as columns, not objects.

A task of 2000 small files returns 2000 records, most with the header the task read
(a record holding an opened file holding its file info). Pickled as objects, each
costs ~10 us to pickle in the worker and as much to unpickle in the driver, while the
driver shares the machine's cores with the workers. As one list per field (ints,
strings, shared objects pickled once) they cost ~2.5 us to pickle and ~4 us to unpickle
(making the objects again, equal field for field). A task's batch of listed files
(:class:`FileBatch`) goes the same way.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Any, Sequence


def field_names(cls: type) -> tuple[str, ...]:
    """The ``__init__`` fields of dataclass ``cls``, in order."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return names


_FIELDS: dict[type, tuple[str, ...]] = {}


#: Fields packed as columns again, by name: (their class, their own nested fields).
Nested = dict[str, tuple[type, "Nested"]]


def pack(objects: Sequence[Any], cls: type, nested: Nested | None = None) -> tuple:
    """``objects`` (every one exactly of dataclass ``cls``) as one list per field; a
    field named in ``nested`` is packed the same way where its value is exactly of the
    given class (``None`` and any other value are kept as they are)."""
    names = field_names(cls)
    columns = [[getattr(o, name) for o in objects] for name in names]
    inner = []
    for name, (inner_cls, inner_nested) in (nested or {}).items():
        column = columns[names.index(name)]
        where = [i for i, value in enumerate(column) if type(value) is inner_cls]
        inner.append((where, pack([column[i] for i in where], inner_cls, inner_nested)))
        for i in where:
            column[i] = None
    return len(objects), columns, inner


def unpack(packed: tuple, cls: type, nested: Nested | None = None) -> list:
    """The ``cls`` objects of :func:`pack` (given the same ``nested``)."""
    n, columns, inner = packed
    if not n:
        return []
    names = field_names(cls)
    for (name, (inner_cls, inner_nested)), (where, values) in zip((nested or {}).items(), inner):
        column = columns[names.index(name)]
        for i, value in zip(where, unpack(values, inner_cls, inner_nested)):
            column[i] = value
    return make_objects(cls, names, columns)


def make_objects(cls: type, names: tuple[str, ...], columns: Sequence[Sequence]) -> list:
    """``[cls(*values) for values in zip(*columns)]``, for a dataclass whose ``__init__``
    only stores its fields in slots (no ``__post_init__``) made by setting each slot
    column by column (~40% less time than calling a frozen dataclass's ``__init__``,
    whose stores go through ``object.__setattr__``)."""
    slots = _slot_setters(cls, names)
    if slots is None:
        return [cls(*values) for values in zip(*columns)]
    objects = list(map(object.__new__, itertools.repeat(cls, len(columns[0]) if columns else 0)))
    for store, column in zip(slots, columns):
        collections.deque(map(store, objects, column), maxlen=0)
    return objects


def _slot_setters(cls: type, names: tuple[str, ...]) -> list | None:
    """The slot descriptors' setters of ``names``, if ``cls.__init__`` does nothing but
    store every field in its slot (else ``None``)."""
    if cls not in _SETTERS:
        descriptors = [getattr(cls, name, None) for name in names]
        plain = (
            dataclasses.is_dataclass(cls)
            and cls.__dataclass_params__.init
            and not hasattr(cls, "__post_init__")
            and "__dict__" not in dir(cls)
            and names == tuple(f.name for f in dataclasses.fields(cls))
            and all(type(d) is _MEMBER_DESCRIPTOR for d in descriptors)
        )
        _SETTERS[cls] = [d.__set__ for d in descriptors] if plain else None
    return _SETTERS[cls]


_MEMBER_DESCRIPTOR = type(type("_Slotted", (), {"__slots__": ("x",)}).x)
_SETTERS: dict[type, list | None] = {}


class FileBatch(list):
    """A task's files (a list), pickled as columns when they are all of one class (a
    batch of 2000 listed files: ~3x less to pickle on the driver and to read in the
    worker); it arrives as a plain list."""

    def __reduce__(self):
        kinds = set(map(type, self))
        if len(kinds) == 1 and dataclasses.is_dataclass(next(iter(kinds))):
            kind = kinds.pop()
            return unpack, (pack(self, kind), kind)
        return list, (list(self),)
