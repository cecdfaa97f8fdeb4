"""Forward-only numbered migrations from sql/migrations, each applied once and recorded.

A file NNNN_name.sql is run as is. A file NNNN_name.kamailio lists Kamailio modules whose shipped
PostgreSQL schema (<kamailio_schema_dir>/<module>-create.sql) is run in that order, so Kamailio's
own tables come from Kamailio itself and match the installed version.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from twinning.config import REPO_ROOT

from .errors import TwinctlError

MIGRATIONS_DIR = REPO_ROOT / "sql" / "migrations"
KAMAILIO_SCHEMA_DIR = Path("/usr/share/kamailio/postgres")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|kamailio)$")
# Any constant would do: it only keeps two concurrent `migrate` runs from interleaving.
_LOCK_KEY = 0x7477696E


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def sql(self, kamailio_dir: Path = KAMAILIO_SCHEMA_DIR) -> str:
        if self.path.suffix == ".sql":
            return self.path.read_text()
        parts = []
        for line in self.path.read_text().splitlines():
            module = line.split("#", 1)[0].strip()
            if module:
                schema = kamailio_dir / f"{module}-create.sql"
                if not schema.exists():
                    raise TwinctlError(f"Kamailio schema {schema} is missing; "
                                       "install kamailio-postgres-modules")
                parts.append(schema.read_text())
        return "\n".join(parts)

    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise TwinctlError(f"two migrations numbered {version:04d} in {directory}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def migrate(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply what is not yet applied, each in its own transaction; return what was applied."""
    migrations = discover() if migrations is None else migrations
    conn.execute("""
        CREATE TABLE IF NOT EXISTS schema_migration (
            version integer PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())""")
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    applied = {row["version"]: row for row in
               conn.execute("SELECT version, name, checksum FROM schema_migration")}
    done = []
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version]["checksum"] != migration.checksum():
                raise TwinctlError(
                    f"migration {migration.path.name} changed after it was applied; "
                    "migrations are forward-only: add a new one instead")
            continue
        try:
            with conn.transaction():
                conn.execute(migration.sql())
                conn.execute(
                    "INSERT INTO schema_migration (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum()))
        except psycopg.Error as exc:
            raise TwinctlError(f"migration {migration.path.name} failed: "
                               f"{str(exc).strip().splitlines()[0]}") from None
        done.append(migration)
    return done
