"""The local stack: a private PostgreSQL cluster, rtpengine and Kamailio, started in the
background with pid files under the state dir, each waited for until it answers.

`up` is idempotent (what already answers is left alone) and `down` stops exactly what `up`
started: the processes named by our own pid files, nothing found by name.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from rtpctl import Client, RtpctlError
from twinning.config import REPO_ROOT, SiteConfig, cluster_nodes
from twinning.nanp_area_codes import AREA_CODES, COUNTRIES

from . import dbsetup, diagnose, rpc
from . import migrate as migrations
from .diagnose import LogMark, Port
from .errors import TwinctlError

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OPENSSL = "/usr/bin/openssl"
KAMAILIO = "/usr/sbin/kamailio"
RTPENGINE = "/usr/bin/rtpengine"
KAMAILIO_CFG = REPO_ROOT / "kamailio" / "kamailio.cfg"
ROUTING_SCRIPT = REPO_ROOT / "kamailio" / "kemi_entry.py"


@dataclass
class Health:
    name: str
    ok: bool
    endpoint: str
    detail: str


class Paths:
    """Where a stack keeps its files. A cluster node (cfg.node) has its own run, log and etc
    folders below the site's; the database, its passwords and the TLS pair are the site's."""

    def __init__(self, cfg: SiteConfig):
        root = cfg.state_dir
        self.root = root
        self.pgdata = root / "pgdata"
        self.run = cfg.node_dir("run")
        self.pgsock = root / "run" / "pg"
        self.log = cfg.node_dir("log")
        self.etc = cfg.node_dir("etc")
        self.kamailio_cfg = self.etc / "kamailio.cfg"
        self.kamailio_env = self.etc / "kamailio.env"
        self.rtpengine_conf = self.etc / "rtpengine.conf"
        self.kamailio_pid = self.run / "kamailio.pid"
        self.rtpengine_pid = self.run / "rtpengine.pid"
        self.portal_pid = self.run / "portal.pid"

    def make(self) -> None:
        for d in (self.root, self.run, self.log, self.etc):
            d.mkdir(parents=True, exist_ok=True)


# ---- helpers --------------------------------------------------------------------------------

def _pg_user() -> tuple[list[str], int | None, int | None]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise TwinctlError("running as root needs the 'postgres' system user "
                           "(install the postgresql package)") from None
    return ["runuser", "-u", "postgres", "--"], pw.pw_uid, pw.pw_gid


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    except FileNotFoundError:
        raise TwinctlError(f"{what}: {cmd[0]} not found; run scripts/install.sh") from None
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise TwinctlError(f"{what} failed: {' | '.join(tail)}")
    return res


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    try:   # a child of ours that exited is a zombie until reaped: it is not alive
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:
        pass
    return pid


def _await_start(daemon: str, pidfile: Path, ready, timeout: float, ports: list[Port],
                 mark: LogMark) -> None:
    """Wait until a spawned daemon answers; if it exits or stays silent, say why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pidfile):
            pidfile.unlink(missing_ok=True)
            raise TwinctlError(diagnose.explain(daemon, ports, mark.path, mark.new_lines(),
                                                "it exited"))
        if ready():
            return
        time.sleep(0.1)
    raise TwinctlError(diagnose.explain(daemon, ports, mark.path, mark.new_lines(),
                                        f"it did not answer within {timeout:.0f}s"))


def _stop_pid(pidfile: Path, name: str, timeout: float = 10.0) -> bool:
    pid = _pid_alive(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pidfile):
        time.sleep(0.1)
    if _pid_alive(pidfile):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    pidfile.unlink(missing_ok=True)
    return True


def write_if_changed(path: Path, text: str, mode: int = 0o644,
                     owner: str | None = None) -> bool:
    """Write a rendered file only when its text differs (so a second render changes nothing
    and a daemon's handler fires only on a real change); set mode and owner every time."""
    old = path.read_text() if path.exists() else None
    if old != text:
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    os.chmod(path, mode)
    if owner:
        _chown(path, owner)
    return old != text


def _spawn(cmd: list[str], pidfile: Path, logfile: Path, env: dict | None = None) -> int:
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env=env)
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


# ---- probes (also used by `stack health` and the tests) ---------------------------------------

def sql_ping(cfg: SiteConfig) -> str | None:
    try:
        with psycopg.connect(cfg.dsn()) as conn:
            return conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
    except psycopg.Error:
        return None


def ng_ping(cfg: SiteConfig, timeout: float = 0.5) -> bool:
    with Client(cfg.rtpengine_ng.host, cfg.rtpengine_ng.port, timeout=timeout, retries=1) as ng:
        try:
            ng.ping()
            return True
        except RtpctlError:
            return False


def sip_options(cfg: SiteConfig, timeout: float = 0.5) -> str | None:
    """Send OPTIONS to the proxy over UDP; return its status line, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.bind((cfg.proxy_address, 0))
            port = sock.getsockname()[1]
            branch = "z9hG4bK" + uuid.uuid4().hex
            msg = (f"OPTIONS sip:{cfg.proxy_address}:{cfg.proxy_port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {cfg.proxy_address}:{port};branch={branch};rport\r\n"
                   f"Max-Forwards: 70\r\n"
                   f"From: <sip:health@{cfg.proxy_address}>;tag={uuid.uuid4().hex[:8]}\r\n"
                   f"To: <sip:{cfg.proxy_address}>\r\n"
                   f"Call-ID: {uuid.uuid4().hex}@twinctl\r\n"
                   f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            sock.sendto(msg.encode(), (cfg.proxy_address, cfg.proxy_port))
            line = sock.recv(65536).split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError:
            return None
    return line if line.startswith("SIP/2.0 200") else None


def web_ping(cfg: SiteConfig, timeout: float = 1.0) -> str | None:
    """GET the page's /healthz (it asks the database); its answer, or None."""
    context = None
    if cfg.web.tls:          # our own certificate, often self-signed: reachability only
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{cfg.web.url}/healthz", timeout=timeout,
                                    context=context) as reply:
            return f"HTTP {reply.status} {reply.read(64).decode(errors='replace').strip()}"
    except (urllib.error.URLError, OSError, ValueError):
        return None


# ---- PostgreSQL -------------------------------------------------------------------------------

class Postgres:
    def __init__(self, cfg: SiteConfig, paths: Paths):
        self.cfg, self.paths = cfg, paths
        self.prefix, self.uid, self.gid = _pg_user()
        self.log = paths.log / "postgres.log"

    def _chown(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)

    def initialised(self) -> bool:
        return (self.paths.pgdata / "PG_VERSION").exists()

    def running(self) -> bool:
        res = subprocess.run(self.prefix + [str(PG_BIN / "pg_ctl"), "status", "-D",
                                            str(self.paths.pgdata)], capture_output=True)
        return res.returncode == 0

    def init(self) -> None:
        self.paths.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._chown(self.paths.pgdata)
        pwfile = self.paths.root / ".initdb-pw"
        password = secrets.token_urlsafe(24)
        pwfile.write_text(password + "\n")
        self._chown(pwfile)
        try:
            _run(self.prefix + [str(PG_BIN / "initdb"), "-D", str(self.paths.pgdata),
                                "-U", "postgres", "--auth-local=peer",
                                "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                                "-E", "UTF8", "--locale=C.UTF-8"], "initdb")
        finally:
            pwfile.unlink(missing_ok=True)
        self.cfg.db_password_file.write_text(password + "\n")
        os.chmod(self.cfg.db_password_file, 0o600)

    def start(self) -> None:
        self.paths.pgsock.mkdir(parents=True, exist_ok=True)
        self._chown(self.paths.pgsock)
        self.log.touch()
        self._chown(self.log)
        opts = (f"-c listen_addresses={self.cfg.db_host} -c port={self.cfg.db_port} "
                f"-c unix_socket_directories={self.paths.pgsock} -c max_connections=200 "
                f"-c fsync=on")
        mark = LogMark(self.log)
        try:
            _run(self.prefix + [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D",
                                str(self.paths.pgdata), "-l", str(self.log), "-o", opts],
                 "starting PostgreSQL")
        except TwinctlError as exc:
            raise TwinctlError(diagnose.explain("PostgreSQL", self.ports(), self.log,
                                                mark.new_lines() or [str(exc)])) from None

    def ports(self) -> list[Port]:
        return [Port("tcp", self.cfg.db_host, self.cfg.db_port, "PostgreSQL")]

    def superuser(self) -> dict:
        """The private cluster's superuser logs in over TCP with the password initdb set (the
        same generated secret as the admin role's)."""
        return dict(host=self.cfg.db_host, port=self.cfg.db_port, dbname="postgres",
                    user="postgres", password=self.cfg.db_password_file.read_text().strip())

    def stop(self) -> bool:
        if not self.initialised() or not self.running():
            return False
        _run(self.prefix + [str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", "fast", "-D",
                            str(self.paths.pgdata)], "stopping PostgreSQL")
        return True


# ---- rtpengine --------------------------------------------------------------------------------

class Rtpengine:
    def __init__(self, cfg: SiteConfig, paths: Paths):
        self.cfg, self.paths = cfg, paths
        self.log = paths.log / "rtpengine.log"

    def options(self) -> dict[str, str]:
        """rtpengine's settings from the site config: the one list both the local stack and
        the systemd unit (Debian's rtpengine-daemon with our config file) run with."""
        c = self.cfg
        return {"table": "-1", "interface": c.proxy_address,
                "listen-ng": str(c.rtpengine_ng), "listen-cli": str(c.rtpengine_cli),
                "port-min": str(c.rtp_port_min), "port-max": str(c.rtp_port_max),
                "delete-delay": str(c.rtp_delete_delay), "log-level": "5",
                "listen-http": str(c.metrics_rtpengine),
                # the DTMF its streams carry (RFC 4733), as JSON: a twin leg's confirmation
                "dtmf-log-dest": str(c.rtpengine_dtmf),
                "num-threads": "2", "timeout": "60", "silent-timeout": "3600"}

    def render(self, owner: str | None = None) -> bool:
        lines = [f"# Rendered by twinctl from {self.cfg.path}; do not edit, edit that file "
                 "instead.", "[rtpengine]"]
        lines += [f"{key} = {value}" for key, value in self.options().items()]
        return write_if_changed(self.paths.rtpengine_conf, "\n".join(lines) + "\n", 0o644,
                                owner)

    def command(self) -> list[str]:
        return [RTPENGINE, f"--config-file={self.paths.rtpengine_conf}",
                "--config-section=rtpengine", "--foreground", "--log-stderr"]

    def ports(self) -> list[Port]:
        c = self.cfg
        return [Port("udp", c.rtpengine_ng.host, c.rtpengine_ng.port, "ng control"),
                Port("tcp", c.rtpengine_cli.host, c.rtpengine_cli.port, "cli"),
                Port("tcp", c.metrics_rtpengine.host, c.metrics_rtpengine.port, "metrics")]

    def start(self) -> None:
        if _pid_alive(self.paths.rtpengine_pid):
            return
        if ng_ping(self.cfg):
            raise TwinctlError(f"something else already answers ng on {self.cfg.rtpengine_ng}"
                               + "".join(f"; {t}" for t in diagnose.taken_ports(self.ports())))
        self.render()
        mark = LogMark(self.log)
        _spawn(self.command(), self.paths.rtpengine_pid, self.log)
        _await_start("rtpengine", self.paths.rtpengine_pid, lambda: ng_ping(self.cfg), 15,
                     self.ports(), mark)

    def stop(self) -> bool:
        return _stop_pid(self.paths.rtpengine_pid, "rtpengine")


# ---- Kamailio ---------------------------------------------------------------------------------

class Kamailio:
    def __init__(self, cfg: SiteConfig, paths: Paths, template: Path = KAMAILIO_CFG):
        self.cfg, self.paths, self.template = cfg, paths, template
        self.log = paths.log / "kamailio.log"

    def render(self, owner: str | None = None) -> bool:
        """kamailio.cfg (the template with a header of site values; it holds the kamailio
        role's database password, hence 0600 for its owner) and kamailio.env (what the systemd
        unit's ExecStart and the routing need). True if either changed."""
        c = self.cfg
        defs = {
            "PROXY_ADDR": c.proxy_address,
            "PROXY_PORT": str(c.proxy_port),
            "CHILDREN": str(c.children),
            "DBURL": c.kamailio_db_url(),
            "RTPENGINE_SOCK": " ".join(e.ng_url for e in c.rtpengines),
            "STATE_DIR": str(self.paths.root),
            "RUN_DIR": str(self.paths.run),
            "ROUTING_SCRIPT": str(ROUTING_SCRIPT),
            "DISPATCHER_SET": str(c.dispatcher_set),
            "TRUSTED_GROUP": str(c.trusted_group),
            "TLS_PORT": str(c.tls_port),
            "TLS_CERT": str(c.tls_pair[0]),
            "TLS_KEY": str(c.tls_pair[1]),
            "METRICS_ADDR": c.metrics_kamailio.host,
            "METRICS_PORT": str(c.metrics_kamailio.port),
        }
        header = [f"# Rendered by twinctl from {c.path}; do not edit, edit that file instead."]
        if c.cluster:
            defs.update(DMQ_PORT=str(c.cluster.dmq_port), DMQ_PEER=c.peers[0],
                        NODE_INDEX=str(c.node_index), NODE_COUNT=str(len(c.cluster.proxies)),
                        HT_REPLICATE="1")
            header.append("#!define WITH_CLUSTER")
            # The peers' addresses (and the cluster's domain) are ours too: an in-dialog
            # request that a phone sends here with a Route of a peer's is routed, not bounced.
            header += [f"alias={a}" for a in (*c.peers, c.sip_domain) if a != c.proxy_address]
        else:
            defs["HT_REPLICATE"] = "0"
        for key, value in defs.items():
            if "!" in value:
                raise TwinctlError(f"site value for {key} may not contain '!'")
            header.append(f'#!substdef "!{key}!{value}!"')
        body = self.template.read_text()
        first, _, rest = body.partition("\n")     # keep #!KAMAILIO as the first line
        changed = write_if_changed(self.paths.kamailio_cfg,
                                   first + "\n" + "\n".join(header) + "\n" + rest, 0o600, owner)
        env = {"CFGFILE": str(self.paths.kamailio_cfg), "SHM_MEMORY": str(c.shm_mb),
               "PKG_MEMORY": str(c.pkg_mb), **self.routing_env()}
        lines = [f"# Rendered by twinctl from {c.path}; do not edit, edit that file instead."]
        lines += [f"{key}={value}" for key, value in env.items()]
        return write_if_changed(self.paths.kamailio_env, "\n".join(lines) + "\n", 0o644) \
            or changed

    def routing_env(self) -> dict[str, str]:
        """What the KEMI routing inside Kamailio needs: the site config, the state dir (its
        database password file), the venv its packages come from."""
        node = {"TWIN_NODE": self.cfg.node} if self.cfg.node else {}   # a cluster's proxy
        return {**node, "TWIN_CONFIG": str(self.cfg.path),
                "TWIN_STATE_DIR": str(self.paths.root),
                "TWIN_VENV": str(REPO_ROOT / ".venv"), "PYTHONDONTWRITEBYTECODE": "1",
                # libpq inside Kamailio (db_postgres, and psycopg in the routing) must not
                # speak TLS: Kamailio's tls module hands OpenSSL its own shared-memory
                # allocator, and a second OpenSSL user in the same processes corrupts it
                # ("freeing already freed pointer ... tls_init.c", then an abort). Debian's
                # PostgreSQL cluster has ssl = on, so libpq would negotiate it by default.
                "PGSSLMODE": "disable"}

    def env(self) -> dict:
        return dict(os.environ, **self.routing_env())

    def command(self) -> list[str]:
        return [KAMAILIO, "-DD", "-E", "-f", str(self.paths.kamailio_cfg),
                "-m", str(self.cfg.shm_mb), "-M", str(self.cfg.pkg_mb),
                "-P", str(self.paths.kamailio_pid)]

    def ports(self) -> list[Port]:
        c = self.cfg
        return [Port("udp", c.proxy_address, c.proxy_port, "SIP"),
                Port("tcp", c.proxy_address, c.proxy_port, "SIP"),
                Port("tcp", c.proxy_address, c.tls_port, "SIP over TLS"),
                Port("tcp", c.metrics_kamailio.host, c.metrics_kamailio.port, "metrics"),
                Port("udp", c.rtpengine_dtmf.host, c.rtpengine_dtmf.port,
                     "rtpengine's DTMF reports")]

    def check(self) -> None:
        """`kamailio -c` on the rendered cfg; its complaints also go to the log."""
        self.render()
        ensure_tls_pair(self.cfg)
        try:
            res = subprocess.run([KAMAILIO, "-c", "-f", str(self.paths.kamailio_cfg)],
                                 capture_output=True, text=True, timeout=60, env=self.env())
        except FileNotFoundError:
            raise TwinctlError(f"{KAMAILIO} not found; run scripts/install.sh") from None
        if res.returncode != 0:
            mark = LogMark(self.log)
            with open(self.log, "a") as log:
                log.write(f"--- twinctl: kamailio -c -f {self.paths.kamailio_cfg}\n")
                log.write(res.stderr + res.stdout)
            raise TwinctlError(diagnose.explain("Kamailio", [], self.log, mark.new_lines(),
                                                "its cfg check failed"))

    def start(self) -> None:
        if _pid_alive(self.paths.kamailio_pid):
            return
        if sip_options(self.cfg):
            raise TwinctlError(f"something else already answers SIP on "
                               f"{self.cfg.proxy_address}:{self.cfg.proxy_port}"
                               + "".join(f"; {t}" for t in diagnose.taken_ports(self.ports())))
        self.check()
        # -DD keeps Kamailio in the foreground: our pid file is the main process.
        cmd = self.command()
        cmd.remove("-P"); cmd.remove(str(self.paths.kamailio_pid))
        mark = LogMark(self.log)
        _spawn(cmd, self.paths.kamailio_pid, self.log, env=self.env())
        _await_start("Kamailio", self.paths.kamailio_pid, lambda: sip_options(self.cfg), 30,
                     self.ports(), mark)

    def stop(self) -> bool:
        return _stop_pid(self.paths.kamailio_pid, "kamailio", timeout=15)


# ---- TLS ------------------------------------------------------------------------------------

def ensure_tls_pair(cfg: SiteConfig, owner: str | None = None) -> tuple[Path, Path]:
    """The certificate and key Kamailio loads: the site config's, which must exist, or a
    self-signed pair for the proxy address generated once into the state dir (owned by
    `owner`, Kamailio's user under systemd, so that it alone reads the key)."""
    cert, key = cfg.tls_pair
    if cfg.tls_certificate:
        for path in (cert, key):
            if not path.is_file():
                raise TwinctlError(f"[tls] file {path} (from {cfg.path}) does not exist")
        return cert, key
    if not (cert.exists() and key.exists()):
        cfg.tls_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.tls_dir, 0o700)
        _run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
              "-subj", f"/CN={cfg.proxy_address}",
              "-addext", f"subjectAltName=IP:{cfg.proxy_address}",
              "-keyout", str(key), "-out", str(cert)], "generating the TLS certificate")
        os.chmod(key, 0o600)
    if owner:
        for path in (cfg.tls_dir, cert, key):
            _chown(path, owner)
    return cert, key


def _chown(path: Path, owner: str) -> None:
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        raise TwinctlError(f"no system user {owner!r} to own {path}") from None
    st = path.stat()
    if (st.st_uid, st.st_gid) != (pw.pw_uid, pw.pw_gid):
        os.chown(path, pw.pw_uid, pw.pw_gid)


# ---- the subscriber's web page (portal/) -------------------------------------------------------

class Portal:
    """uvicorn serving portal.app, as `python -m portal` in the project's venv."""

    def __init__(self, cfg: SiteConfig, paths: Paths):
        self.cfg, self.paths = cfg, paths
        self.log = paths.log / "portal.log"

    def command(self) -> list[str]:
        venv_python = REPO_ROOT / ".venv" / "bin" / "python"
        return [str(venv_python if venv_python.exists() else sys.executable), "-m", "portal"]

    def env(self) -> dict:
        return dict(os.environ, TWIN_CONFIG=str(self.cfg.path),
                    TWIN_STATE_DIR=str(self.paths.root), PYTHONDONTWRITEBYTECODE="1")

    def start(self) -> None:
        if _pid_alive(self.paths.portal_pid):
            return
        if web_ping(self.cfg):
            raise TwinctlError(f"something else already answers HTTP on {self.cfg.web.url}")
        mark = LogMark(self.log)
        _spawn(self.command(), self.paths.portal_pid, self.log, env=self.env())
        _await_start("the web page", self.paths.portal_pid, lambda: web_ping(self.cfg), 30,
                     self.ports(), mark)

    def ports(self) -> list[Port]:
        return [Port("tcp", self.cfg.web.address, self.cfg.web.port, "web page")]

    def stop(self) -> bool:
        return _stop_pid(self.paths.portal_pid, "portal")


# ---- the stack --------------------------------------------------------------------------------

def seed_default_trunk(conn: psycopg.Connection, cfg: SiteConfig) -> None:
    conn.execute(
        "INSERT INTO trunk (name, host, port, dispatcher_set, address_group) "
        "VALUES ('default', %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (cfg.default_trunk.host, cfg.default_trunk.port, cfg.dispatcher_set, cfg.trusted_group))


def sync_nanp_countries(conn: psycopg.Connection, cfg: SiteConfig) -> None:
    """The database's copies of the NANP country rule's data (sql/migrations/0014): the area
    codes of twinning/nanp_area_codes.py and the site's [calls] allowed_nanp_countries, which
    the database cannot read itself. Rewritten whole on every migrate: a few hundred rows."""
    conn.execute("DELETE FROM nanp_area_code")
    conn.execute("INSERT INTO nanp_area_code (npa, region, country)"
                 " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])",
                 (list(AREA_CODES), list(AREA_CODES.values()),
                  [COUNTRIES[region] for region in AREA_CODES.values()]))
    conn.execute("DELETE FROM nanp_country_allowed")
    conn.execute("INSERT INTO nanp_country_allowed (region) SELECT unnest(%s::text[])",
                 (list(cfg.allowed_nanp_countries),))


def migrate_database(cfg: SiteConfig) -> list[str]:
    """Apply the migrations not applied yet, then copy the site's data the schema needs."""
    with psycopg.connect(cfg.dsn(), row_factory=dict_row) as conn:
        applied = migrations.migrate(conn)
        if any(m.name == "twinning" for m in applied):
            seed_default_trunk(conn, cfg)
        sync_nanp_countries(conn, cfg)
        conn.commit()
    return [m.path.name for m in applied]


def _database_up(cfg: SiteConfig, paths: Paths, log) -> None:
    """The daemons' programs are installed; the site's PostgreSQL runs with our schema."""
    for tool in (KAMAILIO, RTPENGINE, str(PG_BIN / "initdb")):
        if not Path(tool).exists():
            raise TwinctlError(f"{tool} is not installed; run scripts/install.sh")
    paths.make()
    pg = Postgres(cfg, paths)
    if not pg.initialised():
        log(f"initialising PostgreSQL cluster in {paths.pgdata}")
        pg.init()
    if not pg.running():
        log(f"starting PostgreSQL on {cfg.db_host}:{cfg.db_port}")
        pg.start()
    for change in dbsetup.setup(cfg, pg.superuser()):
        if change.startswith("migration "):
            log(f"applied {change}")


def up(cfg: SiteConfig, log=print, kamailio_cfg: Path = KAMAILIO_CFG) -> list[Health]:
    """Start what is not running. kamailio_cfg: another cfg body (the benchmarks' native-cfg
    baseline); it gets the same rendered header of site values."""
    if cfg.cluster:
        return up_cluster(cfg, log, kamailio_cfg)
    paths = Paths(cfg)
    _database_up(cfg, paths, log)
    rtp = Rtpengine(cfg, paths)
    if not _pid_alive(paths.rtpengine_pid):
        log(f"starting rtpengine (ng {cfg.rtpengine_ng})")
        rtp.start()
    kam = Kamailio(cfg, paths, kamailio_cfg)
    if not _pid_alive(paths.kamailio_pid):
        log(f"starting Kamailio on {cfg.proxy_address}:{cfg.proxy_port} (udp, tcp), "
            f"tls :{cfg.tls_port}, metrics http://{cfg.metrics_kamailio}/metrics")
        kam.start()
    portal = Portal(cfg, paths)
    if not _pid_alive(paths.portal_pid):
        log(f"starting the web page on {cfg.web.url}")
        portal.start()
    return health(cfg)


# What Kamailio reads from the database and can reread over RPC, without a restart.
RELOADS = (("dispatcher.reload",), ("permissions.addressReload",), ("htable.flush", "subs"))


def render(cfg: SiteConfig, what: str, owner: str | None = None,
           kamailio_cfg: Path = KAMAILIO_CFG) -> list[Path]:
    """Render one daemon's files from the site config (what `stack up` runs them with, and
    what the systemd units read); return the files that changed. Kamailio's include the
    self-signed TLS pair when the site config names none (generated once)."""
    paths = Paths(cfg)
    for d in (paths.root, paths.etc):
        d.mkdir(parents=True, exist_ok=True)
    if what == "kamailio":
        kam = Kamailio(cfg, paths, kamailio_cfg)
        files = (paths.kamailio_cfg, paths.kamailio_env, *cfg.tls_pair)
        before = {p: p.read_bytes() if p.exists() else None for p in files}
        kam.render(owner)
        ensure_tls_pair(cfg, owner)
        return [p for p, data in before.items() if p.read_bytes() != data]
    if what == "rtpengine":
        return [paths.rtpengine_conf] if Rtpengine(cfg, paths).render(owner) else []
    raise TwinctlError(f"nothing to render for {what!r} (kamailio or rtpengine)")


def down(cfg: SiteConfig, log=print) -> None:
    if cfg.cluster:
        return down_cluster(cfg, log)
    paths = Paths(cfg)
    if Portal(cfg, paths).stop():
        log("stopped the web page")
    if Kamailio(cfg, paths).stop():
        log("stopped Kamailio")
    if Rtpengine(cfg, paths).stop():
        log("stopped rtpengine")
    if Postgres(cfg, paths).stop():
        log("stopped PostgreSQL")


def restart_kamailio(cfg: SiteConfig, log=print, kamailio_cfg: Path = KAMAILIO_CFG) -> None:
    """Restart the proxy alone: PostgreSQL and rtpengine (and so every call's media) stay up.
    Registrations, dialogs and the handoff state come back from the database."""
    paths = Paths(cfg)
    kam = Kamailio(cfg, paths, kamailio_cfg)
    if kam.stop():
        log("stopped Kamailio")
    kam.start()
    log(f"started Kamailio on {cfg.proxy_address}:{cfg.proxy_port}")


def health(cfg: SiteConfig) -> list[Health]:
    if cfg.cluster:
        return health_cluster(cfg)
    version = sql_ping(cfg)
    options = sip_options(cfg)
    page = web_ping(cfg)
    return [
        Health("postgresql", version is not None, f"{cfg.db_host}:{cfg.db_port}/{cfg.db_name}",
               version or "not answering"),
        Health("rtpengine", ng_ping(cfg), f"ng udp:{cfg.rtpengine_ng}",
               "pong" if ng_ping(cfg) else "no pong"),
        Health("kamailio", options is not None,
               f"sip:{cfg.proxy_address}:{cfg.proxy_port} (udp, tcp)",
               options or "no answer to OPTIONS"),
        Health("portal", page is not None, cfg.web.url, page or "no answer on /healthz"),
    ]


DAEMONS = {"postgresql": "PostgreSQL", "rtpengine": "rtpengine", "kamailio": "Kamailio"}


def why(cfg: SiteConfig, daemon: str, log_file: Path | None = None,
        env: dict | None = None) -> str:
    """Why a daemon is not running, in the one line `stack up` gives: for a daemon systemd
    ran (its ExecStopPost), or after the fact. Its log lines come from `log_file`, else from
    the journal of the unit's run that just ended ($INVOCATION_ID, set by systemd), else from
    the state dir's log `stack up` writes."""
    env = os.environ if env is None else env
    paths = Paths(cfg)
    daemons = {"postgresql": Postgres, "rtpengine": Rtpengine, "kamailio": Kamailio}
    if daemon not in daemons:
        raise TwinctlError(f"unknown daemon {daemon!r}: one of {', '.join(daemons)}")
    if env.get("SERVICE_RESULT") == "success":
        return ""                                   # systemd: it stopped as asked
    probe = {"postgresql": lambda: sql_ping(cfg) is not None, "rtpengine": lambda: ng_ping(cfg),
             "kamailio": lambda: sip_options(cfg) is not None}[daemon]
    if not env.get("INVOCATION_ID") and probe():
        return f"{DAEMONS[daemon]} is running"
    unit = daemons[daemon](cfg, paths)
    if log_file is not None:
        source, lines = str(log_file), _tail(log_file)
    elif env.get("INVOCATION_ID"):
        source = f"the journal of this run (_SYSTEMD_INVOCATION_ID={env['INVOCATION_ID']})"
        lines = _journal(env["INVOCATION_ID"])
    else:
        source, lines = str(unit.log), _tail(unit.log)
    return diagnose.explain(DAEMONS[daemon], unit.ports(), source, lines)


def _tail(path: Path, count: int = 200) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-count:]
    except OSError:
        return []


def _journal(invocation: str) -> list[str]:
    try:
        res = subprocess.run(["journalctl", "--no-pager", "-o", "cat",
                              f"_SYSTEMD_INVOCATION_ID={invocation}"],
                             capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return res.stdout.splitlines()[-200:]


def remove_state(cfg: SiteConfig) -> None:
    """Delete the state dir (used by tests for a clean slate)."""
    down(cfg, log=lambda *_: None)
    shutil.rmtree(cfg.state_dir, ignore_errors=True)


# ---- a cluster on one machine (docs/cluster.md) -----------------------------------------------

DMQ_SETTLE_S = 20.0


def up_cluster(cfg: SiteConfig, log=print, kamailio_cfg: Path = KAMAILIO_CFG) -> list[Health]:
    """The site's PostgreSQL, every rtpengine, every proxy (each with its own run, log and
    etc folders), and the web page beside the first proxy."""
    proxies, engines = cluster_nodes(cfg)
    paths = Paths(cfg)
    _database_up(cfg, paths, log)
    for node in engines:
        node_paths = Paths(node)
        node_paths.make()
        if not _pid_alive(node_paths.rtpengine_pid):
            log(f"starting rtpengine {node.node} (ng {node.rtpengine_ng})")
            Rtpengine(node, node_paths).start()
    for node in proxies:
        node_paths = Paths(node)
        node_paths.make()
        if not _pid_alive(node_paths.kamailio_pid):
            log(f"starting Kamailio {node.node} on {node.proxy_address}:{node.proxy_port} "
                f"(DMQ :{cfg.cluster.dmq_port})")
            Kamailio(node, node_paths, kamailio_cfg).start()
    # Each proxy finds the others through DMQ (its notification peer answers with the list
    # of nodes): wait for that, so what `up` reports is a cluster, not proxies side by side.
    deadline = time.monotonic() + DMQ_SETTLE_S
    while time.monotonic() < deadline and any(
            set(node.peers) - dmq_peers(node) for node in proxies):
        time.sleep(0.5)
    portal = Portal(proxies[0], Paths(proxies[0]))
    if not _pid_alive(Paths(proxies[0]).portal_pid):
        log(f"starting the web page on {cfg.web.url}")
        portal.start()
    return health_cluster(cfg)


def down_cluster(cfg: SiteConfig, log=print) -> None:
    proxies, engines = cluster_nodes(cfg)
    if Portal(proxies[0], Paths(proxies[0])).stop():
        log("stopped the web page")
    for node in proxies:
        if Kamailio(node, Paths(node)).stop():
            log(f"stopped Kamailio {node.node}")
    for node in engines:
        if Rtpengine(node, Paths(node)).stop():
            log(f"stopped rtpengine {node.node}")
    if Postgres(cfg, Paths(cfg)).stop():
        log("stopped PostgreSQL")


def health_cluster(cfg: SiteConfig) -> list[Health]:
    """Every node: the database, each rtpengine (ng ping), each proxy (SIP OPTIONS, and the
    DMQ peers it sees), the web page."""
    proxies, engines = cluster_nodes(cfg)
    version = sql_ping(cfg)
    rows = [Health("postgresql", version is not None,
                   f"{cfg.db_host}:{cfg.db_port}/{cfg.db_name}", version or "not answering")]
    for node in engines:
        ok = ng_ping(node)
        rows.append(Health(f"rtpengine {node.node}", ok, f"ng udp:{node.rtpengine_ng}",
                           "pong" if ok else "no pong"))
    for node in proxies:
        options = sip_options(node)
        detail = options or "no answer to OPTIONS"
        ok = options is not None
        if ok and not rpc.fifo_path(node).exists():
            detail += "; DMQ peers: ask on its own host"      # a provisioned host's peer
        elif ok:
            peers = dmq_peers(node)
            missing = [a for a in node.peers if a not in peers]
            detail += f"; DMQ peers {', '.join(sorted(peers)) or 'none'}"
            if missing:
                ok, detail = False, detail + f" (not seen: {', '.join(missing)})"
        rows.append(Health(f"kamailio {node.node}", ok,
                           f"sip:{node.proxy_address}:{node.proxy_port} (udp, tcp)", detail))
    page = web_ping(cfg)
    rows.append(Health("portal", page is not None, cfg.web.url, page or "no answer on /healthz"))
    return rows


def dmq_peers(node: SiteConfig) -> set[str]:
    """The addresses of the other proxies this node's DMQ has as active peers."""
    try:
        nodes = rpc.call(node, "dmq.list_nodes")
    except TwinctlError:
        return set()
    out = set()
    for entry in nodes if isinstance(nodes, list) else []:
        if isinstance(entry, dict) and not entry.get("local") and \
                str(entry.get("status", "")).lower() == "active":
            out.add(str(entry.get("host", "")))
    return out
