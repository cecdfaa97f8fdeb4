"""A real rtpengine daemon on loopback for rtpctl's integration tests.

ng on the first free port of 22350-22389, media on 42000-42999; RTP probes bind 43000-43499.
The daemon runs in the foreground with a pidfile, its log kept in pytest's temp directory (shown
when a test fails), and is stopped at teardown by its own pid.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from rtpctl import Client, NgTimeout
from rtpctl_rtp_probe import MEDIA_PORTS, PROBE_PORTS, Probe

RTPENGINE = shutil.which("rtpengine") or "/usr/bin/rtpengine"
NG_PORTS = range(22350, 22390)


def _free_udp_port(candidates: range) -> int:
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free UDP port in {candidates}")


@dataclass
class Daemon:
    ng_port: int
    log: Path
    proc: subprocess.Popen

    def client(self, **kw) -> Client:
        return Client("127.0.0.1", self.ng_port, **kw)

    @property
    def ng(self) -> str:
        return f"127.0.0.1:{self.ng_port}"


def start_daemon(workdir: Path, ng_port: int, media: tuple[int, int]) -> Daemon:
    if not os.path.exists(RTPENGINE):
        pytest.skip("rtpengine daemon not installed")
    log = workdir / "rtpengine.log"
    pidfile = workdir / "rtpengine.pid"
    # --config-file=none: the packaged /etc/rtpengine/rtpengine.conf would also open CLI and
    # HTTP ports (2224, 2225) that belong to the main stack.
    cmd = [RTPENGINE, "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
           "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{ng_port}", f"--port-min={media[0]}",
           f"--port-max={media[1]}", "--delete-delay=0", f"--pidfile={pidfile}",
           "--log-level=6", "--num-threads=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
                            start_new_session=True)
    daemon = Daemon(ng_port, log, proc)
    probe = daemon.client(timeout=0.1, retries=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
            break
        except NgTimeout:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_daemon(daemon)
                raise RuntimeError(f"rtpengine did not come up; log:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
    probe.close()
    return daemon


def stop_daemon(daemon: Daemon) -> None:
    if daemon.proc.poll() is None:
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait(timeout=5)


@pytest.fixture(scope="session")
def rtpengine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp("rtpengine"), _free_udp_port(NG_PORTS),
                          MEDIA_PORTS)
    yield daemon
    stop_daemon(daemon)


@pytest.fixture
def rtp(rtpengine: Daemon, request: pytest.FixtureRequest) -> Iterator[Client]:
    client = rtpengine.client(timeout=0.5, retries=3)
    yield client
    client.close()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(f"\n--- rtpengine log ({rtpengine.log}) ---\n"
              + rtpengine.log.read_text(errors="replace")[-4000:])


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def probes() -> Iterator[Callable[[], Probe]]:
    made: list[Probe] = []

    def make() -> Probe:
        # RTP wants an even port with the odd one (RTCP) free beside it.
        for port in range(PROBE_PORTS.start, PROBE_PORTS.stop, 2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            probe = Probe(sock, port, ssrc=0x1000 + port)
            made.append(probe)
            return probe
        raise RuntimeError("no free probe port")

    yield make
    for probe in made:
        probe.sock.close()
