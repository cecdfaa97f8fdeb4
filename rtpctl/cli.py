"""``rtpctl``: look at and clean up rtpengine from a shell.

Thin typer commands over plain functions; every command has ``--json``; every failure is one
``error: ...`` line on stderr and exit code 1, never a traceback.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import Annotated, Any, Callable, Iterable, Optional, Sequence

import typer

from .errors import RtpctlError
from .nodeset import NodeSet
from .results import QueryResult
from .transport import DEFAULT_RETRIES, DEFAULT_TIMEOUT

FALLBACK_NG = ("127.0.0.1", 2223)

app = typer.Typer(help="Talk to rtpengine over its ng control protocol.",
                  no_args_is_help=True, add_completion=False)


class UsageError(Exception):
    """Bad command-line input (e.g. an unparsable --ng)."""


NgOpt = Annotated[Optional[list[str]], typer.Option(
    "--ng", metavar="HOST:PORT",
    help="rtpengine ng address; repeat or comma-separate for several "
         "(default: [rtpengine] ng of the site config, else 127.0.0.1:2223).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.01,
                                           help="Seconds to wait per try.")]
RetriesOpt = Annotated[int, typer.Option("--retries", min=1, help="Tries in all per request.")]


# --- plumbing ----------------------------------------------------------------------------

def default_ng() -> tuple[str, int]:
    """The site config's rtpengine, or the stock address when there is no usable config."""
    try:
        from twinning.config import ConfigError, load
    except ImportError:  # rtpctl installed without the rest of the project
        return FALLBACK_NG
    try:
        hp = load().rtpengine_ng
    except (ConfigError, OSError, ValueError):
        return FALLBACK_NG
    return hp.host, hp.port


def parse_ng(values: Sequence[str] | None) -> list[tuple[str, int]]:
    if not values:
        return [default_ng()]
    out = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            host, sep, port = item.rpartition(":")
            if not sep:
                host, port = item, "2223"
            host = host.strip("[]")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise UsageError(f"--ng wants HOST:PORT, got {item!r}")
            out.append((host, int(port)))
    if not out:
        raise UsageError("--ng is empty")
    return out


def make_set(ng: Sequence[str] | None, timeout: float, retries: int) -> NodeSet:
    return NodeSet.from_addresses(parse_ng(ng), timeout=timeout, retries=retries)


def run(body: Callable[[], int | None]) -> None:
    """Run a command body; turn our errors into one stderr line and exit code 1."""
    quiet = logging.getLogger("rtpctl")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False  # warnings are printed by the commands themselves
    try:
        code = body() or 0
    except (RtpctlError, UsageError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def emit_table(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    rows = list(rows)
    if not rows:
        typer.echo("(none)")
        return
    cells = [["-" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def query_to_dict(node: str, result: QueryResult) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data.pop("raw", None)
    return {"node": node, **data}


def query_rows(result: QueryResult) -> list[dict[str, Any]]:
    rows = []
    for tag in result.tags.values():
        for media in tag.medias:
            for stream in media.streams:
                rows.append({
                    "tag": tag.tag, "peers": ",".join(tag.peers) or None,
                    "branch": tag.via_branch, "media": f"{media.index}:{media.type}",
                    "kind": "rtcp" if stream.is_rtcp else "rtp",
                    "local": stream.local_port, "endpoint": stream.endpoint,
                    "packets": stream.counters.packets, "bytes": stream.counters.bytes,
                    "errors": stream.counters.errors,
                })
    return rows


# --- commands ----------------------------------------------------------------------------

@app.command()
def ping(ng: NgOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
         retries: RetriesOpt = DEFAULT_RETRIES) -> None:
    """Check that each rtpengine answers; exit 1 if any does not."""
    def body() -> int:
        nodes = make_set(ng, timeout, retries)
        health = nodes.check(retries=retries)
        if len(health) == 1 and not health[0].up:
            raise RtpctlError(health[0].error)
        rows = [{"node": h.address, "status": "up" if h.up else "down",
                 "rtt_ms": round(h.rtt * 1000, 3) if h.rtt is not None else None,
                 "error": h.error} for h in health]
        if as_json:
            emit_json(rows)
        else:
            emit_table(rows, ["node", "status", "rtt_ms", "error"])
        for h in health:
            if not h.up:
                typer.echo(f"error: {h.error}", err=True)
        return 0 if all(h.up for h in health) else 1
    run(body)


@app.command("list")
def list_calls(ng: NgOpt = None, as_json: JsonOpt = False,
               limit: Annotated[Optional[int], typer.Option(help="At most this many per node.")]
               = None,
               timeout: TimeoutOpt = DEFAULT_TIMEOUT, retries: RetriesOpt = DEFAULT_RETRIES
               ) -> None:
    """Call-IDs each rtpengine holds."""
    def body() -> None:
        rows = [{"node": node.address, "call_id": call_id}
                for node in make_set(ng, timeout, retries)
                for call_id in node.client.list(limit)]
        if as_json:
            emit_json(rows)
        else:
            emit_table(rows, ["node", "call_id"])
    run(body)


def locate(nodes, call_id: str):
    """The node that holds the call, or a one-line error naming where it was looked for."""
    node = nodes.locate(call_id)
    if node is None:
        raise RtpctlError(f"call {call_id!r} not found on "
                          + ", ".join(n.address for n in nodes))
    return node


@app.command()
def query(call_id: Annotated[str, typer.Argument(metavar="CALL-ID")], ng: NgOpt = None,
          as_json: JsonOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
          retries: RetriesOpt = DEFAULT_RETRIES) -> None:
    """Tags, media endpoints and packet counters of one call."""
    def body() -> None:
        node = locate(make_set(ng, timeout, retries), call_id)
        result = node.client.query(call_id)
        if as_json:
            emit_json(query_to_dict(node.address, result))
            return
        typer.echo(f"call {call_id} on {node.address}: {len(result.tags)} tag(s), "
                   f"rtp {result.rtp.packets} pkts / {result.rtp.bytes} B")
        emit_table(query_rows(result), ["tag", "peers", "branch", "media", "kind", "local",
                                        "endpoint", "packets", "bytes", "errors"])
    run(body)


STAT_KEYS = [("sessions", "current", "sessionsown"), ("sessions_total", "current", "sessionstotal"),
             ("packetrate", "current", "packetrate"), ("byterate", "current", "byterate"),
             ("uptime_s", "total", "uptime"), ("managed", "total", "managedsessions"),
             ("rejected", "total", "rejectedsessions"), ("timeouts", "total", "timeoutsessions")]


@app.command()
def stats(ng: NgOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
          retries: RetriesOpt = DEFAULT_RETRIES) -> None:
    """Key counters of each rtpengine (``--json`` gives every counter)."""
    def body() -> None:
        results = [(node.address, node.client.statistics())
                   for node in make_set(ng, timeout, retries)]
        if as_json:
            emit_json([{"node": addr, "current": s.current, "total": s.total,
                        "interval": s.interval} for addr, s in results])
            return
        rows = []
        for addr, s in results:
            groups = {"current": s.current, "total": s.total}
            rows.append({"node": addr, **{name: groups[g].get(key) for name, g, key in STAT_KEYS}})
        emit_table(rows, ["node"] + [name for name, _, _ in STAT_KEYS])
    run(body)


@app.command()
def delete(call_id: Annotated[str, typer.Argument(metavar="CALL-ID")], ng: NgOpt = None,
           from_tag: Annotated[Optional[str], typer.Option(help="Only this participant.")] = None,
           to_tag: Annotated[Optional[str], typer.Option(help="Only the dialogue with it.")]
           = None,
           via_branch: Annotated[Optional[str], typer.Option(help="Only this branch.")] = None,
           delete_delay: Annotated[Optional[int], typer.Option(
               help="Seconds before the session is freed (0 = now).")] = None,
           as_json: JsonOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
           retries: RetriesOpt = DEFAULT_RETRIES) -> None:
    """Delete a call (or one participant / branch of it) on the rtpengine that holds it."""
    def body() -> None:
        node = locate(make_set(ng, timeout, retries), call_id)
        result = node.client.delete(call_id, from_tag=from_tag, to_tag=to_tag,
                                    via_branch=via_branch, delete_delay=delete_delay)
        if result.warning:
            typer.echo(f"warning: {result.warning}", err=True)
        if as_json:
            emit_json({"node": node.address, "call_id": call_id, "deleted": True,
                       "warning": result.warning})
        else:
            typer.echo(f"deleted {call_id} on {node.address}")
    run(body)


def main() -> None:  # pragma: no cover - console entry alternative
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
