"""The database's roles and passwords, created once, least privilege each.

Three roles log in (twinning.config.DB_ROLES): the administration (the site's [database] user:
twinctl and the migrations, owner of every table), Kamailio (its modules and the KEMI routing:
what sql/migrations/0012_roles.sql grants, no more) and the web page (issue 12). Each password
is generated once into its own file in the state dir, readable only by the user of the daemon
that logs in with it. The server is only ever sent a SCRAM verifier, never a password: nothing
in PostgreSQL's log or in `ps` can show one.

`setup()` is what `twinctl db setup` runs (Ansible's twinning role, on a server whose
PostgreSQL is Debian's cluster: superuser by peer authentication as the `postgres` user) and
what `twinctl stack up` runs for the private cluster (superuser over TCP with its password).
"""
from __future__ import annotations

import base64
import grp
import hashlib
import hmac
import json
import os
import pwd
import secrets
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql

from twinning.config import ADMIN, DB_ROLES, KAMAILIO, WEB, SiteConfig

from .errors import TwinctlError

WHO = (ADMIN, KAMAILIO, WEB)


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores (RFC 5802/7677), computed here so that
    ALTER ROLE ... PASSWORD carries no password."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda raw: base64.b64encode(raw).decode()   # noqa: E731
    return (f"SCRAM-SHA-256${iterations}:{b64(salt)}$"
            f"{b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}")


def ensure_password_file(path: Path, owner: str | None = None) -> bool:
    """Generate the password once; (re)set owner and mode 0600. True if it was created."""
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
        created = True
    if owner:
        try:
            uid = pwd.getpwnam(owner).pw_uid
            gid = grp.getgrnam(owner).gr_gid if _has_group(owner) else pwd.getpwnam(owner).pw_gid
        except KeyError:
            raise TwinctlError(f"no system user {owner!r} for {path}") from None
        st = path.stat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
    if path.stat().st_mode & 0o777 != 0o600:
        os.chmod(path, 0o600)
    return created


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _can_log_in(cfg: SiteConfig, role: str, password: str) -> bool:
    try:
        with psycopg.connect(host=cfg.db_host, port=cfg.db_port, dbname=cfg.db_name, user=role,
                             password=password, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def ensure_roles(cfg: SiteConfig, superuser: dict, passwords: dict[str, str]) -> list[str]:
    """Create what is missing (the three roles, the database owned by the admin, CONNECT only
    for our roles) and set a role's verifier only when it cannot log in with its password.
    Returns what changed, for `twinctl db setup --json` and Ansible's changed_when."""
    changed = []
    roles = {who: cfg.db_role(who) for who in WHO}
    try:
        with psycopg.connect(**superuser, autocommit=True, connect_timeout=5) as conn:
            for who, role in roles.items():
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                    (role,)).fetchone():
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(scram_verifier(passwords[who]))))
                    changed.append(f"role {role}")
            db = sql.Identifier(cfg.db_name)
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (cfg.db_name,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    db, sql.Identifier(roles[ADMIN])))
                changed.append(f"database {cfg.db_name}")
            public = conn.execute(
                "SELECT has_database_privilege('public', %s, 'CONNECT')", (cfg.db_name,)
            ).fetchone()[0]
            if public:
                conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                             .format(db))
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    db, sql.SQL(", ").join(sql.Identifier(r) for r in roles.values())))
                changed.append(f"connect on {cfg.db_name}")
            for who, role in roles.items():
                if f"role {role}" not in changed and not _can_log_in(cfg, role, passwords[who]):
                    conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(scram_verifier(passwords[who]))))
                    changed.append(f"password of {role}")
    except psycopg.Error as exc:
        raise TwinctlError(f"preparing the database roles: "
                           f"{str(exc).strip().splitlines()[0]}") from None
    return changed


def as_user(user: str, fn: Callable[[], list[str]]) -> list[str]:
    """Run fn in a child process as `user` (peer authentication: Debian's cluster lets only
    the `postgres` system user in as its superuser); its result or error comes back by pipe."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise TwinctlError(f"no system user {user!r}") from None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: drop to the user, run, report, never return
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os.chdir("/")
            reply = {"ok": fn()}
        except TwinctlError as exc:
            reply = {"error": str(exc)}
        except Exception as exc:   # noqa: BLE001  (anything: the parent prints one line)
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(reply).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    reply = json.loads(data or b'{"error": "the setup process died"}')
    if "error" in reply:
        raise TwinctlError(reply["error"])
    return reply["ok"]


def ensure_password_files(cfg: SiteConfig, owners: dict[str, str | None]) -> list[str]:
    """Each role's password file, and the web page's form-token key beside its password
    (the page's user may not create files in the state dir)."""
    changed = [f"password file {cfg.password_file(who)}" for who in WHO
               if ensure_password_file(cfg.password_file(who), owners.get(who))]
    if ensure_password_file(cfg.web_secret_file, owners.get(WEB)):
        changed.append(f"secret file {cfg.web_secret_file}")
    return changed


def setup(cfg: SiteConfig, superuser: dict, owners: dict[str, str | None] | None = None,
          superuser_os_user: str | None = None) -> list[str]:
    """Password files, roles, database, then the migrations as the admin role."""
    from .stack import migrate_database
    owners = owners or {}
    changed = ensure_password_files(cfg, owners)
    passwords = {who: cfg.password_file(who).read_text().strip() for who in WHO}
    work = lambda: ensure_roles(cfg, superuser, passwords)   # noqa: E731
    changed += as_user(superuser_os_user, work) if superuser_os_user else work()
    changed += [f"migration {name}" for name in migrate_database(cfg)]
    return changed
