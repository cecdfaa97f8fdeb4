"""`twinctl stack up` says why a daemon did not start (issue 13, item 7): with the port it
needs taken, the one-line error names the port, the process holding it (pid and name, read
with `ss -p`) and the daemon's log with its last relevant lines; with a broken Kamailio cfg it
quotes the cfg line at fault.

These run a second stack of their own (the suite's addresses, other ports, a temporary state
dir) beside the suite's, so its daemons are not disturbed.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_CONFIG
from twinctl import stack as stack_mod
from twinctl.errors import TwinctlError
from twinning import config as site_config

pytestmark = pytest.mark.integration

TWINCTL = str(Path(sys.executable).with_name("twinctl"))    # this checkout's, not $PATH's
SHIFT = 100                     # this stack's ports: the suite's, shifted


def _shifted_config(text: str, state_dir: Path) -> str:
    """The suite's site config with every port moved by SHIFT and its own state dir (the
    media port range is shared: rtpengine skips ports already in use)."""
    out, section = [], ""
    for line in text.splitlines():
        m = re.match(r"^\[(\w+)\]", line)
        if m:
            section = m.group(1)
        if section in ("proxy", "database", "tls") and re.match(r"^port = \d+", line):
            line = re.sub(r"\d+", lambda n: str(int(n.group()) + SHIFT), line, count=1)
        elif (section, line.split(" =")[0]) in {("rtpengine", "ng"), ("rtpengine", "cli"),
                                               ("metrics", "kamailio"),
                                               ("metrics", "rtpengine")}:
            line = re.sub(r":(\d+)\"", lambda n: f":{int(n.group(1)) + SHIFT}\"", line)
        elif section == "state" and line.startswith("dir ="):
            line = f'dir = "{state_dir}"'
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """A site config for a stack of this module's own; torn down at the end."""
    # Beside the suite's state dir: PostgreSQL (run as `postgres`) cannot enter pytest's.
    state = Path(f"{site_config.load(TEST_CONFIG).state_dir}-start-failures")
    shutil.rmtree(state, ignore_errors=True)
    path = tmp_path_factory.mktemp("start-failures") / "site.toml"
    path.write_text(_shifted_config(TEST_CONFIG.read_text(), state))
    cfg = site_config.load(path)
    yield cfg
    stack_mod.down(cfg, log=lambda *_: None)
    shutil.rmtree(state, ignore_errors=True)


def _listener(kind: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:      # past TIME_WAITs; on UDP it would let the daemon share
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock


def _up_fails(cfg, **kw) -> str:
    with pytest.raises(TwinctlError) as failed:
        stack_mod.up(cfg, log=lambda *_: None, **kw)
    return str(failed.value)


def test_given_another_listener_on_the_db_port_when_stack_up_runs_then_its_error_names_it(
        other):
    with _listener(socket.SOCK_STREAM, other.db_host, other.db_port):
        res = subprocess.run([TWINCTL, "stack", "up"], capture_output=True, text=True,
                             timeout=120, env=dict(os.environ, TWIN_CONFIG=str(other.path)))
    assert res.returncode != 0
    [line] = res.stderr.strip().splitlines()               # one line, no traceback
    log = other.state_dir / "log" / "postgres.log"
    assert line.startswith("error: PostgreSQL did not start: ")
    assert f"{other.db_host}:{other.db_port}/tcp (PostgreSQL) is already in use by " \
           f"pid {os.getpid()} (" in line
    assert f"log {log}: " in line and "could not" in line  # PostgreSQL's own words, quoted


def test_given_another_listener_on_the_ng_port_when_stack_up_runs_then_its_error_names_it(
        other):
    ng = other.rtpengine_ng
    with _listener(socket.SOCK_DGRAM, ng.host, ng.port):
        error = _up_fails(other)
    assert error.startswith("rtpengine did not start: ")
    assert f"{ng}/udp (ng control) is already in use by pid {os.getpid()} (" in error
    log = other.state_dir / "log" / "rtpengine.log"
    assert f"log {log}: " in error and "\n" not in error
    assert stack_mod.sql_ping(other)                       # what started before it still runs


def test_given_another_listener_on_the_sip_port_when_stack_up_runs_then_its_error_names_it(
        other):
    with _listener(socket.SOCK_DGRAM, other.proxy_address, other.proxy_port):
        error = _up_fails(other)
    assert error.startswith("Kamailio did not start: ") and "; it exited; " in error
    assert f"{other.proxy_address}:{other.proxy_port}/udp (SIP) is already in use by " \
           f"pid {os.getpid()} (" in error
    log = other.state_dir / "log" / "kamailio.log"
    assert f"log {log}: " in error and "Address already in use" in error


def test_given_a_cfg_with_a_bad_modparam_when_stack_up_runs_then_its_error_quotes_the_line(
        other, tmp_path):
    broken = tmp_path / "kamailio.cfg"
    body = stack_mod.KAMAILIO_CFG.read_text()
    broken.write_text(body.replace('modparam("tm", "fr_timer", 5000)',
                                   'modparam("tm", "no_such_timer", 5000)'))
    error = _up_fails(other, kamailio_cfg=broken)
    assert error.startswith("Kamailio did not start: ") and "its cfg check failed" in error
    rendered = other.state_dir / "etc" / "kamailio.cfg"
    assert f"cfg error at {rendered} line " in error
    assert 'modparam("tm", "no_such_timer", 5000)' in error      # the line at fault, quoted
    assert "no_such_timer" in error.split("log ", 1)[1]          # and Kamailio's own complaint
    assert "\n" not in error


def _why(cfg, *args, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "SERVICE_RESULT")}
    return subprocess.run([TWINCTL, "stack", "why", *args], capture_output=True, text=True,
                          timeout=60, env=dict(clean, TWIN_CONFIG=str(cfg.path), **env))


def test_given_a_unit_that_failed_when_why_runs_after_it_then_it_gives_the_same_line(
        other, tmp_path):
    """`twinctl stack why` is what a systemd unit's ExecStopPost runs (the journal of that
    run stands in for the log here)."""
    log = tmp_path / "kamailio.journal"
    log.write_text(" 0(70) INFO: <core> [core/tcp_main.c:5088]: init_tcp(): using epoll_lt\n"
                   " 0(70) ERROR: <core> [core/tcp_main.c:3158]: tcp_init(): bind(a, 0x7f, 16) "
                   f"on {other.proxy_address}:{other.tls_port} : Address already in use\n")
    with _listener(socket.SOCK_STREAM, other.proxy_address, other.tls_port):
        res = _why(other, "kamailio", "--log", str(log), SERVICE_RESULT="exit-code")
    [line] = res.stdout.strip().splitlines()
    assert res.returncode == 0 and line.startswith("Kamailio did not start: ")
    assert f"{other.proxy_address}:{other.tls_port}/tcp (SIP over TLS) is already in use by " \
           f"pid {os.getpid()} (" in line
    assert f"log {log}: ERROR: <core> [core/tcp_main.c:3158]: tcp_init(): bind" in line
    assert _why(other, "rtpengine", SERVICE_RESULT="success").stdout == ""   # a clean stop


def test_given_an_unknown_daemon_when_why_runs_then_one_line_error(other):
    res = _why(other, "asterisk")
    assert res.returncode != 0
    assert res.stderr.strip() == ("error: unknown daemon 'asterisk': one of postgresql, "
                                  "rtpengine, kamailio")
