"""twinctl stack: the local PostgreSQL + rtpengine + Kamailio."""
from __future__ import annotations

import typer

from .. import context, output, stack

app = typer.Typer(no_args_is_help=True, help="Start, stop and check the local stack.")


def _report(rows: list[stack.Health], as_json: bool) -> bool:
    output.table([{"service": h.name, "ok": h.ok, "endpoint": h.endpoint, "detail": h.detail}
                  for h in rows], ("service", "ok", "endpoint", "detail"), as_json)
    return all(h.ok for h in rows)


@app.command("up")
def up_cli(as_json: bool = output.JsonOption) -> None:
    """Start whatever is not running, wait until each answers, print the endpoints."""
    cfg = context.config()
    rows = stack.up(cfg, log=(lambda *_: None) if as_json else output.info)
    if not _report(rows, as_json):
        raise typer.Exit(1)


@app.command("down")
def down_cli() -> None:
    """Stop exactly what `stack up` started."""
    stack.down(context.config(), log=output.info)


@app.command("health")
def health_cli(as_json: bool = output.JsonOption) -> None:
    """Check that each service answers (SQL, ng ping, SIP OPTIONS); exit 1 if one does not."""
    if not _report(stack.health(context.config()), as_json):
        raise typer.Exit(1)


@app.command("restart")
def restart_cli() -> None:
    """Restart Kamailio only (new routing code or cfg); calls in progress keep their media."""
    stack.restart_kamailio(context.config(), log=output.info)
