"""Figure 5: database round trips per twinned INVITE, counted by PostgreSQL itself.

pg_stat_statements (shipped with Debian's postgresql-15) counts every statement by normalised
text; it needs shared_preload_libraries, which twinctl does not set. The benchmark sets it in
its own cluster only, as the cluster's superuser (ALTER SYSTEM writes postgresql.auto.conf in
the bench state dir), and restarts that PostgreSQL once, before Kamailio starts. Without it, the
fallback is pg_stat_database.xact_commit (every autocommit statement is one transaction; that
total cannot tell the routing's lookups from the dialog module's writes)."""
from __future__ import annotations

import subprocess

import psycopg
from psycopg.rows import dict_row

from twinctl import stack as stack_mod

EXTENSION = "pg_stat_statements"


def superuser_dsn(cfg) -> str:
    password = cfg.db_password_file.read_text().strip()
    return (f"host={cfg.db_host} port={cfg.db_port} dbname={cfg.db_name} user=postgres "
            f"password={password} connect_timeout=3")


def _superuser(cfg) -> psycopg.Connection:
    return psycopg.connect(superuser_dsn(cfg), autocommit=True, row_factory=dict_row)


def preload_configured(cfg) -> bool:
    with _superuser(cfg) as conn:
        value = conn.execute("SHOW shared_preload_libraries").fetchone()
    return EXTENSION in (value["shared_preload_libraries"] or "")


def enable(cfg, log=print) -> bool:
    """pg_stat_statements on in the bench cluster; True when it is usable. Restarts the bench
    PostgreSQL (only) when the preload is not yet in force; call it before Kamailio starts."""
    if not preload_configured(cfg):
        log("enabling pg_stat_statements in the bench cluster (restarting its PostgreSQL)")
        with _superuser(cfg) as conn:
            conn.execute(f"ALTER SYSTEM SET shared_preload_libraries = '{EXTENSION}'")
        paths = stack_mod.Paths(cfg)
        prefix, _, _ = stack_mod._pg_user()
        subprocess.run(prefix + [str(stack_mod.PG_BIN / "pg_ctl"), "restart", "-w", "-m",
                                 "fast", "-D", str(paths.pgdata), "-l",
                                 str(paths.log / "postgres.log")],
                       check=True, capture_output=True, timeout=60)
    try:
        with _superuser(cfg) as conn:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
            conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
        return True
    except psycopg.Error as exc:
        log(f"pg_stat_statements unavailable ({str(exc).strip().splitlines()[0]}); "
            "falling back to xact_commit")
        return False


def reset(cfg) -> None:
    with _superuser(cfg) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def xact_commits(cfg) -> int:
    with _superuser(cfg) as conn:
        return conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                            (cfg.db_name,)).fetchone()["xact_commit"]


def classify(query: str) -> str:
    q = " ".join(query.split()).lower()
    if "from subscriber s" in q and "join status" in q:
        return "subscriber lookup (routing)"
    if "from location" in q and "split_part" in q:
        return "phone-address check (routing)"
    if "select twinning_" in q or q.startswith(("insert into call ", "update call ",
                                                    "insert into handoff", "update handoff")):
        return "call log / call state writes (routing)"
    if " dialog" in q and q.split()[0] in ("insert", "update", "delete"):
        return "dialog writes (dialog db_mode=2 timer)"
    if " dialog_vars" in q:
        return "dialog writes (dialog db_mode=2 timer)"
    if "location" in q:
        return "usrloc"
    if q.startswith(("set ", "listen", "begin", "commit", "rollback", "show ")):
        return "session setup"
    return "other"


def statements(cfg, user: str) -> dict[str, dict]:
    """Statement calls since the last reset by the application role, grouped by kind."""
    with _superuser(cfg) as conn:
        rows = conn.execute(
            "SELECT s.query, s.calls FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid"
            " WHERE r.rolname = %s", (user,)).fetchall()
    out: dict[str, dict] = {}
    for row in rows:
        kind = classify(row["query"])
        entry = out.setdefault(kind, {"calls": 0, "queries": []})
        entry["calls"] += row["calls"]
        entry["queries"].append(" ".join(row["query"].split())[:120])
    return out
