"""Issue 13 item 8: ansible/site.yml provisions a fresh Debian 12 root that then takes calls.

debootstrap makes a minimal root (its tarball cached in /var/cache/twinning-deploy), the
playbook is applied through Ansible's chroot connection, then again with changed=0; systemd
checks the units; then each daemon is started inside the root with exactly its unit's ExecStart
and User (no systemd runs here: the merged unit and drop-ins are parsed): PostgreSQL, the
database set-up, rtpengine, Kamailio and the web page. Each runs as its own user, SIP over TLS
serves the generated pair, both metrics endpoints and the page answer, a desk registers and a
trunk call twin-rings desk and mobile. The root shares the host's network: its daemons use
127.0.9.x and ports of their own. About 2 min with the tarball cached (ansible/README.md).
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from lab import calls
from twinctl import stack as stack_mod
from twinning import config as site_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
ROOT = Path("/var/tmp/twinning-provision-root")
CACHE = Path("/var/cache/twinning-deploy/bookworm-minbase.tgz")
MIRROR = "http://deb.debian.org/debian"
NET = "127.0.9"
SITE = {"twinning_proxy_address": f"{NET}.1", "twinning_db_host": f"{NET}.1",
        "twinning_db_port": "5439", "twinning_rtpengine_ng": f"{NET}.1:2293",
        "twinning_rtpengine_cli": f"{NET}.1:2296", "twinning_rtpengine_port_min": "56000",
        "twinning_rtpengine_port_max": "57999", "twinning_trunk_default": f"{NET}.2:5060",
        "twinning_voicemail_uri": f"sip:{NET}.4:5060", "twinning_default_ring_timeout": "8",
        "twinning_tls_port": "5061", "twinning_metrics_kamailio": f"{NET}.1:9290",
        "twinning_metrics_rtpengine": f"{NET}.1:9291", "twinning_web_address": f"{NET}.1",
        "twinning_web_port": "8290"}
UNITS = ("postgresql@15-main.service", "twinning-db.service", "rtpengine-daemon.service",
         "kamailio.service", "twinning-web.service")
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


# ---- the root ---------------------------------------------------------------------------------

def mounts() -> list[Path]:
    return [ROOT / "proc", ROOT / "dev", ROOT / "dev/pts"]


def unmount_all() -> None:
    for point in reversed(mounts()):
        if os.path.ismount(point):
            subprocess.run(["umount", "-l", str(point)], check=False)


def make_root() -> float:
    """A fresh minbase root; returns debootstrap's seconds."""
    unmount_all()
    shutil.rmtree(ROOT, ignore_errors=True)
    started = time.monotonic()
    if not CACHE.exists():
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase", f"--make-tarball={CACHE}",
                        "bookworm", str(ROOT) + ".mk", MIRROR], check=True,
                       capture_output=True)
        shutil.rmtree(str(ROOT) + ".mk", ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--unpack-tarball={CACHE}",
                    "bookworm", str(ROOT), MIRROR], check=True, capture_output=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(ROOT / "proc")], check=True)
    subprocess.run(["mount", "--bind", "/dev", str(ROOT / "dev")], check=True)
    subprocess.run(["mount", "--bind", "/dev/pts", str(ROOT / "dev/pts")], check=True)
    # This machine reaches the package index through a TLS proxy whose CA only the host
    # trusts; a server built elsewhere has its own trust store.
    (ROOT / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", ROOT / "etc/ssl/certs")
    local = ROOT / "usr/local/share/ca-certificates"    # kept when ca-certificates rebuilds it
    local.mkdir(parents=True, exist_ok=True)
    for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(crt, local)
    return time.monotonic() - started


def playbook(log: Path) -> tuple[float, dict]:
    extra = []
    for key, value in SITE.items():
        extra += ["-e", f"{key}={value}"]
    started = time.monotonic()
    res = subprocess.run(
        ["ansible-playbook", "-i", "ansible/inventories/single/hosts.yml", "ansible/site.yml",
         "-e", "ansible_connection=chroot", "-e", f"ansible_host={ROOT}", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=1500,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"))
    seconds = time.monotonic() - started
    log.write_text(res.stdout + res.stderr)
    recap = RECAP.findall(res.stdout)
    assert res.returncode == 0 and recap, f"playbook failed, see {log}:\n{res.stdout[-3000:]}"
    ok, changed, unreachable, failed = map(int, recap[-1])
    return seconds, {"ok": ok, "changed": changed, "failed": failed + unreachable}


def in_root(*argv: str, user: str | None = None, env: dict | None = None,
            **kw) -> subprocess.CompletedProcess:
    spec = ["--userspec", f"{user}:{user}"] if user and user != "root" else []
    environment = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   *(f"{k}={v}" for k, v in (env or {}).items())]
    return subprocess.run(["chroot", *spec, str(ROOT), *environment, *argv], **kw)


# ---- units ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Unit:
    name: str
    user: str = "root"
    group: str = ""
    env: dict = dataclasses.field(default_factory=dict)
    exec_start: list = dataclasses.field(default_factory=list)
    exec_stop: list = dataclasses.field(default_factory=list)
    runtime_dirs: list = dataclasses.field(default_factory=list)
    service_type: str = "simple"


def unit_files(name: str) -> list[Path]:
    base = name
    if "@" in name:
        base = name.split("@")[0] + "@.service"
    found = []
    for d in ("lib/systemd/system", "etc/systemd/system"):
        if (ROOT / d / name).exists():
            found = [ROOT / d / name]
        elif (ROOT / d / base).exists() and not found:
            found = [ROOT / d / base]
    for d in ("lib/systemd/system", "etc/systemd/system"):
        found += sorted((ROOT / d / f"{name}.d").glob("*.conf"))
    assert found, f"no unit {name} in the root"
    return found


def load_unit(name: str) -> Unit:
    """The unit and its drop-ins merged as systemd does for the keys we run with: an empty
    ExecStart= resets the list, Environment/EnvironmentFile accumulate, %i is the instance."""
    unit = Unit(name)
    instance = name.split("@", 1)[1].rsplit(".", 1)[0] if "@" in name else ""
    env_files = []
    for path in unit_files(name):
        section = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section != "[Service]" or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            value = value.replace("%i", instance).replace("%I", instance.replace("-", "/"))
            if key in ("ExecStart", "ExecStop"):
                target = unit.exec_start if key == "ExecStart" else unit.exec_stop
                if not value:
                    target.clear()
                else:
                    target.append(value.lstrip("-+@!"))
            elif key == "User":
                unit.user = value
            elif key == "Group":
                unit.group = value
            elif key == "Type":
                unit.service_type = value
            elif key == "Environment":
                for item in shlex.split(value):
                    k, _, v = item.partition("=")
                    unit.env[k] = v
            elif key == "EnvironmentFile":
                env_files.append(value)
            elif key == "RuntimeDirectory":
                unit.runtime_dirs += value.split()
    for spec in env_files:
        optional = spec.startswith("-")
        for path in sorted(ROOT.glob(spec.lstrip("-").lstrip("/"))):
            for raw in path.read_text().splitlines():
                line = raw.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, _, v = line.partition("=")
                    unit.env[k.strip()] = v.strip().strip("'\"")
        assert optional or list(ROOT.glob(spec.lstrip("/"))), f"{name}: {spec} missing"
    return unit


def argv(unit: Unit, command: str) -> list[str]:
    expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                      lambda m: unit.env.get(m.group(1) or m.group(2), ""), command)
    return shlex.split(expanded)


def start(unit: Unit, logdir: Path) -> subprocess.Popen | None:
    """As systemd would: its runtime directories, its user, its environment, its ExecStart."""
    for d in unit.runtime_dirs:
        path = ROOT / "run" / d
        path.mkdir(parents=True, exist_ok=True)
        in_root("chown", f"{unit.user}:{unit.group or unit.user}", f"/run/{d}", check=True)
    assert len(unit.exec_start) == 1, (unit.name, unit.exec_start)
    cmd = argv(unit, unit.exec_start[0])
    log = open(logdir / f"{unit.name}.log", "wb")
    if unit.service_type in ("oneshot", "forking"):
        res = in_root(*cmd, user=unit.user, env=unit.env, stdout=log, stderr=log, timeout=180)
        assert res.returncode == 0, f"{unit.name}: {cmd} exited {res.returncode}"
        return None
    return subprocess.Popen(
        ["chroot", *(["--userspec", f"{unit.user}:{unit.group or unit.user}"]
                     if unit.user != "root" else []), str(ROOT), "env", "-i",
         "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *(f"{k}={v}" for k, v in unit.env.items()),
         *cmd], stdout=log, stderr=log, start_new_session=True)


def wait_for(ready, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
    pytest.fail(f"{what} did not answer within {timeout:.0f}s; {log}:\n" + "\n".join(tail))


def owner_of(pid: int) -> str:
    """The process's user as the root names it (its uids are not the host's)."""
    return in_root("ps", "-o", "user=", "-p", str(pid), capture_output=True,
                   text=True).stdout.strip()


# ---- the test ---------------------------------------------------------------------------------

@pytest.fixture
def provisioned_root():
    for tool in ("debootstrap", "ansible-playbook", "systemd-analyze"):
        assert shutil.which(tool), f"{tool} missing: run scripts/install.sh"
    try:
        yield make_root
    finally:
        unmount_all()
        shutil.rmtree(ROOT, ignore_errors=True)


def test_given_a_fresh_debian_root_when_site_yml_is_applied_then_it_takes_calls(
        provisioned_root, logdir):
    boot_s = provisioned_root()
    first_s, first = playbook(logdir / "ansible-first.log")
    second_s, second = playbook(logdir / "ansible-second.log")
    timings = (f"debootstrap {boot_s:.0f}s, fresh provisioning {first_s:.0f}s "
               f"(changed={first['changed']}), second run {second_s:.0f}s")
    (logdir / "timings.txt").write_text(timings + "\n")
    print(timings)
    assert first["failed"] == 0 and first["changed"] > 0
    assert second == {"ok": second["ok"], "changed": 0, "failed": 0}, second

    verify = in_root("systemd-analyze", "verify", "--man=no", *UNITS, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr

    units = {name: load_unit(name) for name in UNITS}
    assert units["kamailio.service"].user == "kamailio"
    assert units["rtpengine-daemon.service"].user == "rtpengine"
    started: dict[str, subprocess.Popen] = {}
    cfg = site_config.load(ROOT / "etc/twinning/twinning.toml")
    cfg = dataclasses.replace(cfg, state_dir=ROOT / "var/lib/twinning")
    try:
        for name in UNITS:
            proc = start(units[name], logdir)
            if proc:
                started[name] = proc
        wait_for(lambda: stack_mod.sip_options(cfg) is not None, 30,
                 "Kamailio", logdir / "kamailio.service.log")
        assert stack_mod.ng_ping(cfg)
        wait_for(lambda: stack_mod.web_ping(cfg) is not None, 30, "the web page",
                 logdir / "twinning-web.service.log")
        # SIP over TLS serves the pair the kamailio role had twinctl generate; both metrics
        # endpoints answer on the site config's [metrics] addresses.
        pem = ssl.get_server_certificate((cfg.proxy_address, cfg.tls_port), timeout=5)
        generated = (cfg.state_dir / "tls/proxy.crt").read_text()
        assert ssl.PEM_cert_to_DER_cert(pem) == ssl.PEM_cert_to_DER_cert(generated)
        assert (cfg.state_dir / "tls/proxy.key").stat().st_mode & 0o077 == 0
        for endpoint, series in ((cfg.metrics_kamailio, "kamailio_"),
                                 (cfg.metrics_rtpengine, "rtpengine_")):
            with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as reply:
                assert series in reply.read().decode(errors="replace"), endpoint
        # Each daemon as its own user; no secret on a command line.
        assert owner_of(started["kamailio.service"].pid) == "kamailio"
        assert owner_of(started["rtpengine-daemon.service"].pid) == "rtpengine"
        assert units["twinning-web.service"].user == "twinning-web"
        assert owner_of(started["twinning-web.service"].pid) == "twinning-web"
        secrets = [p.read_text().strip() for p in cfg.state_dir.glob("db-password*")]
        assert len(secrets) == 3
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert not any(s in ps for s in secrets)
        assert oct((cfg.state_dir / "db-password-kamailio").stat().st_mode & 0o777) == "0o600"

        with psycopg.connect(cfg.dsn(), row_factory=dict_row, autocommit=True) as db:
            calls.setup_subscriber(db, cfg)
        calls.register_desk(cfg, logdir, ip=f"{NET}.3")
        call = calls.Call({
            "desk": calls.party("desk", "uas/answer.xml", f"{NET}.3", 5061, listens=True,
                                pause_ms=1000),
            "mobile": calls.party("mobile", "uas/ring_cancel.xml", f"{NET}.2", 5060,
                                  listens=True),
            "caller": calls.party("caller", "uac/call.xml", f"{NET}.2", 5071,
                                  remote=f"{cfg.proxy_address}:{cfg.proxy_port}",
                                  dial=calls.SUB_DID, caller=calls.CALLER_NUM,
                                  caller_name=calls.CALLER_NAME, pause_ms=3000)})
        calls.talk(call, logdir, "caller", "200", "desk", "INVITE")
        invite = call["mobile"].agent.received("INVITE")[0]
        assert invite.startswith(f"INVITE sip:{calls.SUB_TWIN}@")
        assert "Call completed elsewhere" in call["mobile"].agent.received("CANCEL")[0]
    finally:
        for proc in started.values():
            proc.terminate()
        for proc in started.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg = units["postgresql@15-main.service"]
        in_root(*argv(pg, pg.exec_stop[0]), env=pg.env, capture_output=True)
