"""twinctl twin: the subscriber's one external number ("My Numbers", label Mobile)."""
from __future__ import annotations

from typing import Optional

import typer

from twinning.service.twins import clear_twin, set_twin, show_twin  # noqa: F401

from .. import context, output
from ..db import connect

app = typer.Typer(no_args_is_help=True, help="The twin (external) number of a subscriber.")


@app.command("set")
def set_cli(ext: str, number: str = typer.Argument(..., help="10-digit number with area code."),
            label: Optional[str] = typer.Option(None, "--label", help='Default "Mobile".'),
            as_json: bool = output.JsonOption) -> None:
    """Set (or replace) the twin number."""
    cfg = context.config()
    with connect(cfg) as conn:
        row = set_twin(conn, ext, number, label, cfg.allowed_nanp_countries)
    if as_json:
        output.record(row, True)
    else:
        output.info(f"twin of {ext}: {row['label']} {row['number']}")


@app.command("clear")
def clear_cli(ext: str) -> None:
    """Remove the twin number."""
    with connect(context.config()) as conn:
        had = clear_twin(conn, ext)
    output.info(f"twin of {ext} cleared" if had else f"{ext} had no twin set")


@app.command("show")
def show_cli(ext: str, as_json: bool = output.JsonOption) -> None:
    """Show the twin number."""
    with connect(context.config()) as conn:
        output.record(show_twin(conn, ext), as_json, empty=f"{ext} has no twin set")
