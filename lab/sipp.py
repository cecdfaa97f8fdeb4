"""A small SIPp launcher: several agents at once, each on its own loopback address.

Agents start in the order given; an agent that listens (a UAS) is waited for until its port is
bound, so the callers that follow never race it. When one agent fails, the others are stopped
at once; every agent has a deadline; every agent keeps its log and message trace in a folder,
so a failing test shows what was on the wire.
"""
from __future__ import annotations

import datetime
import errno
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SIPP = "/usr/bin/sipp"
# Scenario files live beside the e2e tests, one folder per case; benchmarks name them too.
SCENARIOS = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "scenarios"


@dataclass
class Agent:
    name: str
    scenario: str                       # path relative to tests/e2e/scenarios, or absolute
    ip: str
    port: int
    remote: str | None = None           # host:port the agent sends to (None for a pure UAS)
    calls: int = 1
    keys: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    listens: bool = False               # a UAS: wait until it is bound before going on
    rate: float | None = None
    rtp_port: int | None = None
    expect_failure: bool = False        # True when the test wants SIPp to report failed calls
    proc: subprocess.Popen | None = None
    logdir: Path | None = None
    started: float = 0.0

    def command(self, logdir: Path) -> list[str]:
        scenario = Path(self.scenario)
        if not scenario.is_absolute():
            scenario = SCENARIOS / scenario
        cmd = [SIPP, "-sf", str(scenario), "-i", self.ip, "-p", str(self.port), "-m",
               str(self.calls), "-nostdin", "-trace_msg", "-trace_err", "-trace_screen",
               "-message_file", str(logdir / f"{self.name}.msg"),
               "-error_file", str(logdir / f"{self.name}.err"),
               "-screen_file", str(logdir / f"{self.name}.screen"),
               "-timeout_error", "-max_recv_loops", "1000"]
        if self.rtp_port:
            cmd += ["-mp", str(self.rtp_port), "-min_rtp_port", str(self.rtp_port),
                    "-max_rtp_port", str(self.rtp_port + 10)]
        if self.rate is not None:
            cmd += ["-r", str(self.rate)]
        for key, value in self.keys.items():
            cmd += ["-key", key, str(value)]
        cmd += self.extra
        if self.remote:
            cmd.append(self.remote)
        return cmd

    @property
    def messages(self) -> str:
        path = self.logdir / f"{self.name}.msg" if self.logdir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def sent_at(self, method_or_code: str, direction: str = "sent") -> list[float]:
        """Epoch times (from the trace's own timestamps) of the messages this agent sent (or
        received) whose first line starts with the given method or status code."""
        out = []
        for block in re.split(r"\n(?=-{20,} \d{4}-)", "\n" + self.messages):
            head, _, body = block.partition("\n\n")
            stamp = re.search(r"-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", head)
            if not stamp or f"message {direction}" not in head:
                continue
            first = body.lstrip("\n").split("\n", 1)[0]
            if first.startswith(method_or_code + " ") or \
                    first.startswith("SIP/2.0 " + method_or_code):
                when = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f")
                out.append(when.timestamp())
        return out

    def received(self, method_or_code: str) -> list[str]:
        """The SIP messages this agent received whose first line starts with the given text
        (a method such as "INVITE", or a status code such as "180")."""
        out = []
        for block in re.split(r"\n-{20,}[^\n]*\n", "\n" + self.messages):
            head, _, body = block.partition("\n\n")
            if "message received" not in head:
                continue
            body = body.lstrip("\n")
            first = body.split("\n", 1)[0]
            if first.startswith(method_or_code + " ") or \
                    first.startswith("SIP/2.0 " + method_or_code):
                out.append(body)
        return out


class AgentFailed(AssertionError):
    pass


def _bound(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((ip, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _stop(agent: Agent) -> None:
    if agent.proc and agent.proc.poll() is None:
        try:
            os.killpg(agent.proc.pid, signal.SIGTERM)
            agent.proc.wait(timeout=3)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(agent.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            agent.proc.wait()


def start(agents: list[Agent], logdir: Path) -> None:
    logdir.mkdir(parents=True, exist_ok=True)
    for agent in agents:
        agent.logdir = logdir
        for suffix in ("msg", "err", "screen"):     # SIPp appends: never read an old run's
            (logdir / f"{agent.name}.{suffix}").unlink(missing_ok=True)
        with open(logdir / f"{agent.name}.log", "wb") as log:
            agent.proc = subprocess.Popen(agent.command(logdir), stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, cwd=logdir)
        agent.started = time.monotonic()
        if agent.listens:
            deadline = time.monotonic() + 5
            while not _bound(agent.ip, agent.port):
                if agent.proc.poll() is not None or time.monotonic() > deadline:
                    stop(agents)
                    raise AgentFailed(f"{agent.name} did not start: {describe(agent)}")
                time.sleep(0.02)


def wait(agents: list[Agent], timeout: float, only: list[Agent] | None = None) -> None:
    """Wait until every agent in `only` (default: all) has exited; stop everything on failure."""
    pending = list(only or agents)
    deadline = time.monotonic() + timeout
    while pending:
        for agent in list(pending):
            rc = agent.proc.poll()
            if rc is None:
                continue
            pending.remove(agent)
            if (rc != 0) != agent.expect_failure:
                stop(agents)
                raise AgentFailed(f"{agent.name} exited {rc}: {describe(agent)}")
        for agent in agents:   # an agent outside `only` failing also ends the run
            if agent not in pending and agent.proc.poll() not in (None, 0) \
                    and not agent.expect_failure and (only and agent not in only):
                stop(agents)
                raise AgentFailed(f"{agent.name} exited {agent.proc.returncode}: "
                                  f"{describe(agent)}")
        if time.monotonic() > deadline:
            stop(agents)
            raise AgentFailed(f"timeout after {timeout}s waiting for "
                              f"{', '.join(a.name for a in pending)}")
        time.sleep(0.05)


def stop(agents: list[Agent]) -> None:
    for agent in agents:
        _stop(agent)


def run(agents: list[Agent], logdir: Path, timeout: float = 60) -> list[Agent]:
    """Start all agents, wait for all, stop the rest as soon as one fails."""
    start(agents, logdir)
    try:
        wait(agents, timeout)
    finally:
        stop(agents)
    return agents


def describe(agent: Agent) -> str:
    parts = []
    for suffix in ("err", "log"):
        path = agent.logdir / f"{agent.name}.{suffix}" if agent.logdir else None
        if path and path.exists():
            text = path.read_text(errors="replace").strip()
            if text:
                parts.append(f"[{suffix}] " + " | ".join(text.splitlines()[-6:]))
    return "; ".join(parts) or "(no output)"
