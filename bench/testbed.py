"""The benchmark's private stack (bench/site-bench.toml, 127.0.3.x): bring it up with the Python
or the native Kamailio cfg, seed the benchmark subscribers, register their desks, and read what
the leak and memory figures need (rtpengine sessions and RSS, dialogs, shared memory)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from rtpctl import Client
from twinctl import rpc
from twinctl import stack as stack_mod
from twinctl.commands import status as status_cmd
from twinctl.commands import subscriber as subscriber_cmd
from twinctl.commands import twin as twin_cmd
from twinctl.errors import TwinctlError
from twinning import config as site_config
from twinning.config import SiteConfig

BENCH = Path(__file__).resolve().parent
SITE = BENCH / "site-bench.toml"
NATIVE_CFG = BENCH / "kamailio-native.cfg"

# Roles on loopback (see site-bench.toml).
TRUNK_IP = "127.0.3.2"
DESK_IP = "127.0.3.3"
DESK_PORT = 5061            # one SIPp UAS answers for every benchmark desk
MOBILE_PORT = 5060          # the trunk's address: twin legs arrive here
CALLER_PORT = 5071          # carriers call from other ports of the trunk's address
DIRECT_PORT = 5081          # figure 1c: the answering agent the caller calls directly

# Benchmark subscribers: extension 2000+i, DID +1212556iiii, twin +1917556iiii, ringing desk and
# mobile ("In Office" with Mobile ticked), licence entry-ucc.
SUBSCRIBERS = 600
FIRST_EXT = 2000
PASSWORD = "bench-secret-1"


def did(i: int) -> str:
    return f"+1212556{i:04d}"


def twin(i: int) -> str:
    return f"+1917556{i:04d}"


def ext(i: int) -> str:
    return str(FIRST_EXT + i)


def load_config() -> SiteConfig:
    return site_config.load(SITE)


def with_ceiling(cfg: SiteConfig, max_cps: int) -> SiteConfig:
    """The bench config with the overload control's ceiling at max_cps: a copy of the site
    file with [overload] max_cps replaced, in the state dir (Kamailio's routing reads its
    config from the file, so the file is what changes)."""
    import re
    text = SITE.read_text()
    section = f"[overload]\nmax_cps = {int(max_cps)}\n"
    if re.search(r"^max_cps\s*=", text, re.M):
        text = re.sub(r"^max_cps\s*=.*$", f"max_cps = {int(max_cps)}", text, flags=re.M)
    else:
        text += "\n" + section
    out = cfg.state_dir / "etc" / f"site-bench-{int(max_cps)}cps.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return site_config.load(out)


# ---- the stack -----------------------------------------------------------------------------

ROUTINGS = ("python", "native")


def native_body(cfg: SiteConfig) -> Path:
    """bench/kamailio-native.cfg with the two values of its own (see its head) defined."""
    body = NATIVE_CFG.read_text()
    first, _, rest = body.partition("\n")
    vm = cfg.voicemail_uri.split(":", 1)[1] if ":" in cfg.voicemail_uri else cfg.voicemail_uri
    defs = [f'#!substdef "!MAX_TWIN_LEGS!{cfg.max_twin_legs}!"',
            f'#!substdef "!VOICEMAIL_HOSTPORT!{vm.split("@")[-1]}!"',
            f'#!substdef "!VOICEMAIL_ADDR!{vm.split("@")[-1].split(":")[0]}!"',
            f'#!substdef "!OVERLOAD_MAX_CPS!{cfg.overload_max_cps}!"',
            f'#!substdef "!OVERLOAD_RXQ_BYTES!{cfg.overload_rx_queue_bytes}!"',
            f'#!substdef "!RETRY_AFTER_S!{cfg.overload_retry_after_s}!"',
            f'#!substdef "!RETRY_AFTER_MAX_S!{2 * cfg.overload_retry_after_s}!"']
    out = cfg.state_dir / "etc" / "kamailio-native.body.cfg"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(first + "\n" + "\n".join(defs) + "\n" + rest)
    return out


def kamailio_body(cfg: SiteConfig, routing: str) -> Path:
    if routing == "python":
        return stack_mod.KAMAILIO_CFG
    if routing == "native":
        return native_body(cfg)
    raise ValueError(f"unknown routing {routing!r}")


def up(cfg: SiteConfig, routing: str, log=print) -> None:
    """The stack up with the given Kamailio cfg; a running Kamailio with another cfg is
    restarted (PostgreSQL and rtpengine stay)."""
    paths = stack_mod.Paths(cfg)
    marker = paths.run / "bench-routing"
    if stack_mod._pid_alive(paths.kamailio_pid) and \
            (not marker.exists() or marker.read_text().strip() != routing):
        restart_kamailio(cfg, routing, log)
        return
    rows = stack_mod.up(cfg, log=log, kamailio_cfg=kamailio_body(cfg, routing))
    marker.write_text(routing + "\n")
    bad = [h for h in rows if not h.ok]
    if bad:
        raise TwinctlError(f"bench stack not healthy: {bad}")


def restart_kamailio(cfg: SiteConfig, routing: str, log=print) -> None:
    paths = stack_mod.Paths(cfg)
    stack_mod.Kamailio(cfg, paths).stop()
    log(f"starting Kamailio with the {routing} routing")
    kam = stack_mod.Kamailio(cfg, paths, kamailio_body(cfg, routing))
    kam.start()
    (paths.run / "bench-routing").write_text(routing + "\n")


def down(cfg: SiteConfig, log=print) -> None:
    stack_mod.down(cfg, log=log)


def connect(cfg: SiteConfig) -> psycopg.Connection:
    return psycopg.connect(cfg.dsn(), row_factory=dict_row, autocommit=True)


def seed(cfg: SiteConfig, count: int = SUBSCRIBERS, log=print) -> None:
    """Benchmark subscribers in place (idempotent): desk + mobile ring, a twin each."""
    with connect(cfg) as conn:
        have = {r["extension"] for r in conn.execute(
            "SELECT extension FROM subscriber WHERE extension >= %s", (ext(0),))}
        missing = [i for i in range(count) if ext(i) not in have]
        if missing:
            log(f"adding {len(missing)} benchmark subscribers")
        with conn.transaction():
            for i in missing:
                subscriber_cmd.add_subscriber(conn, cfg, ext(i), did(i), f"User {ext(i)}",
                                              PASSWORD)
                # SIPp mobiles answer in milliseconds: not the carrier's voicemail here.
                subscriber_cmd.set_twin_leg(conn, ext(i), answer_too_soon_ms=0)
                twin_cmd.set_twin(conn, ext(i), twin(i), None)
                status_cmd.edit_status(conn, ext(i), "In Office", "ring-group", "desk,mobile")


def register_desks(cfg: SiteConfig, count: int = SUBSCRIBERS, desk_ip: str = DESK_IP,
                   desk_port: int = DESK_PORT) -> None:
    """Every benchmark desk registered once at the desk agent's address (through Kamailio's
    usrloc RPC, as a REGISTER would; digest auth is not on the benchmarked path). Idempotent:
    ul.add makes a new contact each time, and a desk with two contacts would ring twice."""
    with connect(cfg) as conn:
        have = {r["username"]: r["n"] for r in conn.execute(
            "SELECT username, count(*) AS n FROM location WHERE username >= %s"
            " AND contact = 'sip:' || username || %s GROUP BY username",
            (ext(0), f"@{desk_ip}:{desk_port}"))}
        extra = {r["username"] for r in conn.execute(
            "SELECT DISTINCT username FROM location WHERE username >= %s"
            " AND contact <> 'sip:' || username || %s", (ext(0), f"@{desk_ip}:{desk_port}"))}
    for i in range(count):
        if have.get(ext(i)) == 1 and ext(i) not in extra:
            continue
        if ext(i) in have or ext(i) in extra:
            rpc.call(cfg, "ul.rm", "location", ext(i))
        rpc.call(cfg, "ul.add", "location", ext(i), f"sip:{ext(i)}@{desk_ip}:{desk_port}",
                 86400, 1.0, "", 0, 0, 0xFFFFFFFF)


def registered_count(cfg: SiteConfig) -> int:
    with connect(cfg) as conn:
        return conn.execute("SELECT count(*) AS n FROM location WHERE username >= %s",
                            (ext(0),)).fetchone()["n"]


# ---- what the figures read ------------------------------------------------------------------

def rtpengine_sessions(cfg: SiteConfig) -> list[str]:
    """Every call-id rtpengine holds (its `list` returns 32 unless given a limit)."""
    with Client(cfg.rtpengine_ng.host, cfg.rtpengine_ng.port) as client:
        return client.list(limit=1_000_000)


def dialogs(cfg: SiteConfig) -> int:
    return len(rpc.call(cfg, "dlg.list") or [])


def dialog_stats(cfg: SiteConfig) -> dict[str, int]:
    """dialog:active_dialogs, early_dialogs, processed_dialogs … as numbers."""
    out = {}
    for item in rpc.call(cfg, "stats.get_statistics", "dialog:") or []:
        name, _, value = item.partition("=")
        out[name.strip().split(":")[-1]] = int(value.strip() or 0)
    return out


def shm_used(cfg: SiteConfig) -> int:
    return int(rpc.call(cfg, "core.shmmem")["real_used"])


def rtpengine_rss_kb(cfg: SiteConfig) -> int:
    pid = int((stack_mod.Paths(cfg).rtpengine_pid).read_text().split()[0])
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS for rtpengine")


def kamailio_pids(cfg: SiteConfig) -> list[int]:
    """The main process and its children (the workers)."""
    main = int(stack_mod.Paths(cfg).kamailio_pid.read_text().split()[0])
    kids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == main:
                kids.append(int(status.parent.name))
    return [main] + sorted(kids)


@dataclass
class Leftovers:
    sessions: int
    dialogs: int
    shm_bytes: int
    waited_s: float

    @property
    def clean(self) -> bool:
        return self.sessions == 0 and self.dialogs == 0


def wait_clean(cfg: SiteConfig, timeout: float = 10.0) -> Leftovers:
    """Wait (bounded) until rtpengine and the dialog table are empty; report what remains."""
    start = time.monotonic()
    while True:
        sessions, dlgs = len(rtpengine_sessions(cfg)), dialogs(cfg)
        waited = time.monotonic() - start
        if (sessions == 0 and dlgs == 0) or waited > timeout:
            return Leftovers(sessions, dlgs, shm_used(cfg), round(waited, 2))
        time.sleep(0.25)


def force_clean(cfg: SiteConfig, routing: str, log=print) -> Leftovers:
    """After an overloaded step: what is left (calls the caller gave up on, still ringing
    towards the ring timeout and voicemail) is recorded by the caller of this, then cleared so
    the next step starts from nothing: Kamailio restarted (the quickest way to drop early
    dialogs and their transactions), rtpengine's sessions deleted."""
    paths = stack_mod.Paths(cfg)
    stack_mod.Kamailio(cfg, paths).stop()
    # dialog (db_mode 2) and htable (dbmode 1) write their state at shutdown and load it at
    # start: without this, the abandoned calls would come back with the restart.
    with connect(cfg) as conn:
        for table in ("dialog_vars", "dialog", "htable"):
            conn.execute(f"DELETE FROM {table}")
    restart_kamailio(cfg, routing, log)
    register_desks(cfg)
    with Client(cfg.rtpengine_ng.host, cfg.rtpengine_ng.port) as client:
        for call_id in client.list(limit=1_000_000):
            try:
                client.delete(call_id, delete_delay=0)
            except Exception:       # already gone: fine
                pass
    return wait_clean(cfg, 5)
