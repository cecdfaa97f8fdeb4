"""The routing's records (dataclasses) as compact JSON, for AVPs and htable values.

`dataclasses.asdict` deep-copies every value on the way (a recursive walk with `copy.deepcopy`
on each leaf): on the hot path of every call that was the largest pure-Python cost of the
routing. Here the C JSON encoder walks the record itself and asks for a record's fields only
when it meets one; the output is the same JSON."""
from __future__ import annotations

import json
import secrets
from dataclasses import fields, is_dataclass

_NAMES: dict[type, tuple[str, ...]] = {}


def _fields_of(record) -> dict:
    kind = type(record)
    names = _NAMES.get(kind)
    if names is None:
        if not is_dataclass(record):
            raise TypeError(f"{kind.__name__} is not JSON serializable")
        names = _NAMES[kind] = tuple(f.name for f in fields(record))
    return {name: getattr(record, name) for name in names}


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_fields_of)


def to_json(record) -> str:
    """A dataclass record (nested records, lists, tuples, str enums inside) as JSON."""
    return _ENCODER.encode(record)


def plain(record) -> dict:
    """A record as a dict of JSON values (what `dataclasses.asdict` gave, without the copies)."""
    return json.loads(to_json(record))


def token() -> str:
    """32 random hex digits: a key nobody can guess (what uuid4().hex gave, cheaper)."""
    return secrets.token_hex(16)
