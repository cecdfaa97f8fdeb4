"""twinctl trunk: carrier gateways (twin legs go there; calls from them are trusted)."""
from __future__ import annotations

import ipaddress
import re
import socket

import psycopg
import typer

from twinning.config import ConfigError, HostPort, SiteConfig

from .. import context, output, rpc
from ..db import connect
from ..errors import Conflict, NotFound, TwinctlError

app = typer.Typer(no_args_is_help=True, help="Carrier trunks.")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def resolve(host_port: str) -> HostPort:
    try:
        hp = HostPort.parse(host_port.strip(), 5060)
    except ConfigError:
        raise TwinctlError(f"not a HOST[:PORT]: {host_port!r}") from None
    try:
        ip = ipaddress.ip_address(hp.host)
    except ValueError:
        try:
            ip = ipaddress.ip_address(socket.gethostbyname(hp.host))
        except OSError:
            raise TwinctlError(f"cannot resolve trunk host {hp.host!r}") from None
    if ip.version != 4:
        raise TwinctlError("only IPv4 trunks are supported")
    return HostPort(str(ip), hp.port)


def add_trunk(conn: psycopg.Connection, cfg: SiteConfig, name: str, host_port: str,
              priority: int = 0) -> dict:
    if not _NAME.match(name):
        raise TwinctlError("trunk name: 1-32 of letters, digits, '.', '_', '-'")
    if not 0 <= priority <= 1000:
        raise TwinctlError(f"priority must be 0..1000, got {priority}")
    hp = resolve(host_port)
    if conn.execute("SELECT 1 FROM trunk WHERE name = %s", (name,)).fetchone():
        raise Conflict(f"trunk {name} already exists")
    clash = conn.execute("SELECT name FROM trunk WHERE host = %s AND port = %s",
                         (hp.host, hp.port)).fetchone()
    if clash:
        raise Conflict(f"{hp} is already trunk {clash['name']}")
    return conn.execute(
        "INSERT INTO trunk (name, host, port, priority, dispatcher_set, address_group)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING name, host(host) AS host, port, priority",
        (name, hp.host, hp.port, priority, cfg.dispatcher_set, cfg.trusted_group)).fetchone()


def list_trunks(conn: psycopg.Connection) -> list[dict]:
    return conn.execute("SELECT name, host(host) AS host, port, priority, dispatcher_set,"
                        " address_group FROM trunk ORDER BY priority DESC, name").fetchall()


def remove_trunk(conn: psycopg.Connection, name: str) -> None:
    if conn.execute("DELETE FROM trunk WHERE name = %s", (name,)).rowcount == 0:
        raise NotFound(f"no trunk named {name!r}")


def reload_kamailio(cfg: SiteConfig) -> None:
    """Make each running proxy see the change now; a stopped one reads it at start."""
    for node in rpc.proxies(cfg):
        if not rpc.fifo_path(node).exists():
            continue
        try:
            rpc.call(node, "dispatcher.reload")
            rpc.call(node, "permissions.addressReload")
        except TwinctlError as exc:
            output.warn(f"saved, but the running proxy {node.node or node.proxy_address} "
                        f"did not reload: {exc}")


@app.command("add")
def add_cli(name: str, host: str = typer.Argument(..., metavar="HOST[:PORT]"),
            priority: int = typer.Option(0, "--priority",
                                         help="Higher is tried first; 5xx/408 fail over."),
            as_json: bool = output.JsonOption) -> None:
    """Add a carrier gateway."""
    cfg = context.config()
    with connect(cfg) as conn:
        row = add_trunk(conn, cfg, name, host, priority)
    reload_kamailio(cfg)
    if as_json:
        output.record(row, True)
    else:
        output.info(f"added trunk {row['name']} at {row['host']}:{row['port']}")


@app.command("list")
def list_cli(as_json: bool = output.JsonOption) -> None:
    """List carrier gateways."""
    with connect(context.config()) as conn:
        output.table(list_trunks(conn), ("name", "host", "port", "priority"), as_json)


@app.command("remove")
def remove_cli(name: str) -> None:
    """Remove a carrier gateway."""
    cfg = context.config()
    with connect(cfg) as conn:
        remove_trunk(conn, name)
    reload_kamailio(cfg)
    output.info(f"removed trunk {name}")
