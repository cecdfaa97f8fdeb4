"""One way to print: every listing and show offers a readable table or --json."""
from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any, Iterable, Sequence

import typer

JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def table(rows: Iterable[dict], columns: Sequence[str], as_json: bool) -> None:
    rows = list(rows)
    if as_json:
        print(json.dumps([_plain(r) for r in rows], indent=2))
        return
    if not rows:
        print("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def record(data: dict | None, as_json: bool, empty: str = "(none)") -> None:
    if as_json:
        print(json.dumps(_plain(data), indent=2))
        return
    if data is None:
        print(empty)
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        print(f"{key.replace('_', ' ').ljust(width)}  {_cell(value)}")


def info(message: str) -> None:
    print(message)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
