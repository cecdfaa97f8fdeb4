"""twinctl db: schema migrations."""
from __future__ import annotations

import typer

from .. import context, output
from ..stack import migrate_database

app = typer.Typer(no_args_is_help=True, help="Database schema.")


@app.command("migrate")
def migrate_cli() -> None:
    """Apply the migrations not applied yet (a second run changes nothing)."""
    from ..stack import sql_ping
    cfg = context.config()
    if sql_ping(cfg) is None:
        from ..db import connect
        with connect(cfg):   # raises the readable "cannot reach the database" error
            pass
    applied = migrate_database(cfg)
    for name in applied:
        output.info(f"applied {name}")
    if not applied:
        output.info("database is up to date")
