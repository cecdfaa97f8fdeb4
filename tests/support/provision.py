"""Provisioning tests' helpers (tests/e2e/test_provision*.py): a fresh Debian 12 minbase root
(debootstrap, its tarball cached in /var/cache/twinning-deploy), site.yml applied through
Ansible's chroot connection, and each daemon started inside a root exactly as its merged
systemd unit says (no systemd runs here)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab import calls

REPO = Path(__file__).resolve().parents[2]
CACHE = Path("/var/cache/twinning-deploy/bookworm-minbase.tgz")
MIRROR = "http://deb.debian.org/debian"
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


# ---- the root ---------------------------------------------------------------------------------

def mounts(root: Path) -> list[Path]:
    return [root / "proc", root / "dev", root / "dev/pts"]


def unmount_all(root: Path) -> None:
    for point in reversed(mounts(root)):
        if os.path.ismount(point):
            subprocess.run(["umount", "-l", str(point)], check=False)


def make_root(root: Path) -> float:
    """A fresh minbase root; returns debootstrap's seconds."""
    unmount_all(root)
    shutil.rmtree(root, ignore_errors=True)
    started = time.monotonic()
    if not CACHE.exists():
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase", f"--make-tarball={CACHE}",
                        "bookworm", str(root) + ".mk", MIRROR], check=True,
                       capture_output=True)
        shutil.rmtree(str(root) + ".mk", ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--unpack-tarball={CACHE}",
                    "bookworm", str(root), MIRROR], check=True, capture_output=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    subprocess.run(["mount", "--bind", "/dev", str(root / "dev")], check=True)
    subprocess.run(["mount", "--bind", "/dev/pts", str(root / "dev/pts")], check=True)
    # This machine reaches the package index through a TLS proxy whose CA only the host
    # trusts; a server built elsewhere has its own trust store.
    (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs")
    local = root / "usr/local/share/ca-certificates"    # kept when ca-certificates rebuilds it
    local.mkdir(parents=True, exist_ok=True)
    for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(crt, local)
    return time.monotonic() - started


def playbook(log: Path, inventory: list[str], extra_vars: dict[str, str]) -> tuple[float, dict]:
    """ansible-playbook site.yml on the inventories (the later override the earlier), with
    site values as extra vars; returns its seconds and its recap (summed over the hosts)."""
    extra = []
    for key, value in extra_vars.items():
        extra += ["-e", json.dumps({key: value})]       # JSON: lists stay lists
    started = time.monotonic()
    res = subprocess.run(
        ["ansible-playbook", *(a for i in inventory for a in ("-i", i)), "ansible/site.yml",
         *extra], cwd=REPO, capture_output=True, text=True, timeout=1500,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"))
    seconds = time.monotonic() - started
    log.write_text(res.stdout + res.stderr)
    recap = RECAP.findall(res.stdout)
    assert res.returncode == 0 and recap, f"playbook failed, see {log}:\n{res.stdout[-3000:]}"
    totals = [sum(int(r[i]) for r in recap) for i in range(4)]
    ok, changed, unreachable, failed = totals
    return seconds, {"ok": ok, "changed": changed, "failed": failed + unreachable}


def in_root(root: Path, *argv: str, user: str | None = None, env: dict | None = None,
            **kw) -> subprocess.CompletedProcess:
    spec = ["--userspec", f"{user}:{user}"] if user and user != "root" else []
    environment = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   *(f"{k}={v}" for k, v in (env or {}).items())]
    return subprocess.run(["chroot", *spec, str(root), *environment, *argv], **kw)


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


def unit_files(root: Path, name: str) -> list[Path]:
    base = name
    if "@" in name:
        base = name.split("@")[0] + "@.service"
    found = []
    for d in ("lib/systemd/system", "etc/systemd/system"):
        if (root / d / name).exists():
            found = [root / d / name]
        elif (root / d / base).exists() and not found:
            found = [root / d / base]
    for d in ("lib/systemd/system", "etc/systemd/system"):
        found += sorted((root / d / f"{name}.d").glob("*.conf"))
    assert found, f"no unit {name} in the root"
    return found


def load_unit(root: Path, name: str) -> Unit:
    """The unit and its drop-ins merged as systemd does for the keys we run with: an empty
    ExecStart= resets the list, Environment/EnvironmentFile accumulate, %i is the instance."""
    unit = Unit(name)
    instance = name.split("@", 1)[1].rsplit(".", 1)[0] if "@" in name else ""
    env_files = []
    for path in unit_files(root, name):
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
        for path in sorted(root.glob(spec.lstrip("-").lstrip("/"))):
            for raw in path.read_text().splitlines():
                line = raw.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, _, v = line.partition("=")
                    unit.env[k.strip()] = v.strip().strip("'\"")
        assert optional or list(root.glob(spec.lstrip("/"))), f"{name}: {spec} missing"
    return unit


def argv(unit: Unit, command: str) -> list[str]:
    expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                      lambda m: unit.env.get(m.group(1) or m.group(2), ""), command)
    return shlex.split(expanded)


def start(root: Path, unit: Unit, logdir: Path) -> subprocess.Popen | None:
    """As systemd would: its runtime directories, its user, its environment, its ExecStart."""
    for d in unit.runtime_dirs:
        path = root / "run" / d
        path.mkdir(parents=True, exist_ok=True)
        in_root(root, "chown", f"{unit.user}:{unit.group or unit.user}", f"/run/{d}", check=True)
    assert len(unit.exec_start) == 1, (unit.name, unit.exec_start)
    cmd = argv(unit, unit.exec_start[0])
    log = open(logdir / f"{unit.name}.log", "wb")
    if unit.service_type in ("oneshot", "forking"):
        res = in_root(root, *cmd, user=unit.user, env=unit.env, stdout=log, stderr=log, timeout=180)
        assert res.returncode == 0, f"{unit.name}: {cmd} exited {res.returncode}"
        return None
    return subprocess.Popen(
        ["chroot", *(["--userspec", f"{unit.user}:{unit.group or unit.user}"]
                     if unit.user != "root" else []), str(root), "env", "-i",
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


def owner_of(root: Path, pid: int) -> str:
    """The process's user as the root names it (its uids are not the host's)."""
    return in_root(root, "ps", "-o", "user=", "-p", str(pid), capture_output=True,
                   text=True).stdout.strip()


def twin_ring_call(desk_ip: str, trunk_ip: str, proxy: str, logdir: Path) -> calls.Call:
    """A trunk call to the subscriber's DID through `proxy` (host:port): the registered desk
    at desk_ip answers, the caller and the desk talk (two-way audio asserted), the mobile
    behind the trunk rings with the twin number and is CANCELled "Call completed
    elsewhere". Returns the finished call."""
    call = calls.Call({
        "desk": calls.party("desk", "uas/answer.xml", desk_ip, 5061, listens=True,
                            pause_ms=1000),
        "mobile": calls.party("mobile", "uas/ring_cancel.xml", trunk_ip, 5060, listens=True),
        "caller": calls.party("caller", "uac/call.xml", trunk_ip, 5071, remote=proxy,
                              dial=calls.SUB_DID, caller=calls.CALLER_NUM,
                              caller_name=calls.CALLER_NAME, pause_ms=3000)})
    calls.talk(call, logdir, "caller", "200", "desk", "INVITE")
    assert call["mobile"].agent.received("INVITE")[0].startswith(f"INVITE sip:{calls.SUB_TWIN}@")
    assert "Call completed elsewhere" in call["mobile"].agent.received("CANCEL")[0]
    return call
