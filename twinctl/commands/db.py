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


@app.command("setup")
def setup_cli(
        superuser_socket: str = typer.Option(
            None, "--superuser-socket", metavar="DIR",
            help="Log in as the superuser over this Unix socket directory, by peer "
                 "authentication as the postgres system user (Debian's cluster); without it, "
                 "over TCP with the private cluster's password (`stack up`)."),
        kamailio_user: str = typer.Option(None, "--kamailio-user",
                                          help="System user that owns Kamailio's password."),
        web_user: str = typer.Option(None, "--web-user",
                                     help="System user that owns the web page's password."),
        as_json: bool = output.JsonOption) -> None:
    """Generate each role's password (once), create the roles and the database, migrate;
    print what changed (nothing on a second run)."""
    from .. import dbsetup
    from ..stack import Paths, Postgres
    cfg = context.config()
    if superuser_socket:
        superuser = dict(host=superuser_socket, port=cfg.db_port, dbname="postgres",
                         user="postgres")
        changed = dbsetup.setup(cfg, superuser, {"admin": "root", "kamailio": kamailio_user,
                                                 "web": web_user}, superuser_os_user="postgres")
    else:
        changed = dbsetup.setup(cfg, Postgres(cfg, Paths(cfg)).superuser(),
                                {"kamailio": kamailio_user, "web": web_user})
    output.table([{"changed": c} for c in changed], ("changed",), as_json)


@app.command("passwords")
def passwords_cli(
        kamailio_user: str = typer.Option(None, "--kamailio-user",
                                          help="System user that owns Kamailio's password."),
        web_user: str = typer.Option(None, "--web-user",
                                     help="System user that owns the web page's password."),
        as_json: bool = output.JsonOption) -> None:
    """Only generate the password files that are missing (no database needed: a root being
    provisioned offline; `db setup` gives the roles these passwords later)."""
    from .. import dbsetup
    changed = dbsetup.ensure_password_files(
        context.config(), {"admin": "root", "kamailio": kamailio_user, "web": web_user})
    output.table([{"changed": c} for c in changed], ("changed",), as_json)
