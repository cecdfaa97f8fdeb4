"""Why a daemon did not start, in one line: the port it wanted and who holds it, the log it
wrote and the lines of it that say what went wrong.

`twinctl stack up` starts each daemon and, when one fails, asks this module to explain: the
daemons' own messages ("could not create any TCP/IP sockets", "bind failed") name no holder
and sit in a log the user has to find.
"""
from __future__ import annotations

import errno
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

# What in a daemon's log says why it stopped (PostgreSQL's severities, Kamailio's and
# rtpengine's log levels), as opposed to the chatter around it.
RELEVANT = re.compile(r"\b(FATAL|PANIC|ERROR|CRITICAL|ALERT|EMERG|CRIT|ERR)\b|HINT:|"
                      r"could not|[Ff]ailed|[Aa]ddress already in use|cannot|can't", re.I)
CFG_LINE = re.compile(r"config file (\S+?),? line (\d+)")
_USERS = re.compile(r'\("([^"]+)",pid=(\d+)')


@dataclass(frozen=True)
class Port:
    proto: str                  # tcp | udp
    host: str
    port: int
    what: str = ""              # e.g. "SIP", "ng control"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.proto}" + (f" ({self.what})" if self.what else "")


def in_use(port: Port) -> bool:
    """Whether binding the address fails because something else has it."""
    kind = socket.SOCK_STREAM if port.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        if port.proto == "tcp":       # a TIME_WAIT left by our own last run is not a holder
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((port.host, port.port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def holder(port: Port) -> str:
    """Who listens on the port, as `ss -p` shows it ("pid 123 (postgres)"), or "" when it
    cannot be read (not root, no iproute2, the holder gone meanwhile)."""
    flag = "-t" if port.proto == "tcp" else "-u"
    try:
        out = subprocess.run(["ss", "-Hlnp", flag, f"sport = :{port.port}"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in out.splitlines():
        fields = line.split()
        local = next((f for f in fields if f.endswith(f":{port.port}")), "")
        address = local.rsplit(":", 1)[0].strip("[]")
        if address not in (port.host, "0.0.0.0", "*", "::"):
            continue
        found = _USERS.findall(line)
        if found:
            return ", ".join(f"pid {pid} ({name})" for name, pid in dict.fromkeys(found))
    return ""


def taken_ports(ports: list[Port]) -> list[str]:
    """Each port of the list something else holds, with its holder where it can be read."""
    out = []
    for port in ports:
        if in_use(port):
            who = holder(port)
            out.append(f"{port} is already in use" + (f" by {who}" if who else ""))
    return out


class LogMark:
    """Where a log ended before a start, so only what that start wrote is quoted."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.offset = path.stat().st_size
        except OSError:
            self.offset = 0

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return []
        return [line.strip() for line in text.splitlines() if line.strip()]


def relevant(lines: list[str], keep: int = 3) -> list[str]:
    """The last `keep` lines that say what went wrong (the last lines at all, if none do)."""
    picked = [line for line in lines if RELEVANT.search(line)] or lines
    return [_shorten(line) for line in picked[-keep:]]


def cfg_error_line(lines: list[str]) -> str:
    """For a Kamailio cfg error: the text of the line of the (rendered) cfg it names."""
    for line in reversed(lines):
        m = CFG_LINE.search(line)
        if m:
            try:
                text = Path(m.group(1)).read_text(errors="replace").splitlines()
                return f"{m.group(1)} line {m.group(2)}: {text[int(m.group(2)) - 1].strip()}"
            except (OSError, IndexError):
                return ""
    return ""


def explain(daemon: str, ports: list[Port], log: Path | None, lines: list[str],
            extra: str = "") -> str:
    """The one-line reason: `<daemon> did not start: <taken ports>; <cfg line>; log <path>:
    <its relevant lines>`."""
    parts = taken_ports(ports)
    cfg_line = cfg_error_line(lines)
    if cfg_line:
        parts.append(f"cfg error at {cfg_line}")
    if extra:
        parts.append(extra)
    quoted = " | ".join(relevant(lines))
    if log is not None:
        parts.append(f"log {log}" + (f": {quoted}" if quoted else " (empty)"))
    elif quoted:
        parts.append(quoted)
    return f"{daemon} did not start: " + "; ".join(parts)


_PREFIX = re.compile(r"^(\[\d+\.\d+\]\s*|\d{4}-\d\d-\d\d [\d:.]+ \w+ \[\d+\]\s*|"
                     r"\s*\d+\(\d+\)\s*|\{[^}]*\}\s*)+")


def _shorten(line: str, width: int = 240) -> str:
    """A log line without its timestamp/pid prefix, cut to a readable width."""
    line = _PREFIX.sub("", line).strip()
    return line if len(line) <= width else line[:width - 3] + "..."
