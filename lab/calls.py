"""Building blocks for call tests: subscribers in place, desks registered, agents per role,
RTP probes wired to what the SDP says, and the leak checks every call test ends with."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

from twinctl import rpc
from twinctl.commands import status as status_cmd
from twinctl.commands import twin as twin_cmd
from twinctl.errors import TwinctlError

from . import sipp
from .agents import DESK_IPS, LAB_ANSWER_TOO_SOON_MS, TRUNK_IP, VOICEMAIL_IP, add_subscriber
from .residue import assert_no_residue
from .rtp import (RtpProbe, assert_two_way, media_address,  # noqa: F401 (re-exported)
                  wait_for)

SUB_EXT, SUB_DID, SUB_TWIN = "1001", "+12125550101", "+19175550123"
CALLER_NUM, CALLER_NAME = "3125550199", "Carol Caller"
MOBILE_PORT = 5060          # the trunk's address: twin legs arrive here
CALLER_PORT = 5071          # carriers call from other ports of the same address
_probe_ports = itertools.count(49000, 2)


def setup_subscriber(db, cfg, ring: str = "desk,mobile", twin: str | None = SUB_TWIN,
                     license: str = "entry-ucc", ext: str = SUB_EXT, did: str = SUB_DID,
                     status: str = "In Office", send_to: str = "ring-group",
                     ring_timeout: int | None = None,
                     answer_too_soon_ms: int | None = LAB_ANSWER_TOO_SOON_MS):
    """answer_too_soon_ms: None leaves the product's default (see lab.agents)."""
    add_subscriber(db, cfg, ext, did, license=license, ring_timeout=ring_timeout,
                   answer_too_soon_ms=answer_too_soon_ms)
    if twin:
        twin_cmd.set_twin(db, ext, twin, None)
    status_cmd.edit_status(db, ext, status, send_to, ring)
    status_cmd.set_current(db, ext, status)


def register_desk(cfg, logdir: Path, ext: str = SUB_EXT, ip: str = DESK_IPS[0],
                  port: int = 5061, password: str = "secret1") -> None:
    agent = sipp.Agent(f"register-{ext}", "register/register.xml", ip, port,
                       remote=f"{cfg.proxy_address}:{cfg.proxy_port}",
                       keys={"user": ext, "expires": "600"}, extra=["-au", ext, "-ap", password])
    sipp.run([agent], logdir, timeout=15)
    assert agent.received("200"), "desk registration failed"


def forget_registrations(cfg, conn) -> None:
    """Through Kamailio, not behind its back: usrloc writes through to the table, and a row
    deleted under it would make its next UPDATE a silent no-op."""
    for row in conn.execute("SELECT DISTINCT username FROM location").fetchall():
        try:
            rpc.call(cfg, "ul.rm", "location", row["username"])
        except TwinctlError:
            pass
    conn.execute("DELETE FROM location")


@dataclass
class Party:
    """One role in a call: its SIPp agent and its RTP probe."""
    agent: sipp.Agent
    probe: RtpProbe

    def media_from(self, first_line: str, nth: int = 1) -> tuple[str, int]:
        """Media address in the SDP of the nth message (1-based) starting with first_line."""
        msgs = wait_for(lambda: len(self.agent.received(first_line)) >= nth and
                        self.agent.received(first_line), 15,
                        f"{self.agent.name} to receive {first_line} #{nth}")
        return media_address(msgs[nth - 1])


@dataclass
class Call:
    parties: dict[str, Party] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Party:
        return self.parties[name]

    def agents(self) -> list[sipp.Agent]:
        return [p.agent for p in self.parties.values()]

    def close(self) -> None:
        sipp.stop(self.agents())
        for party in self.parties.values():
            party.probe.close()


def party(name: str, scenario: str, ip: str, port: int, remote: str | None = None,
          listens: bool = False, pause_ms: int = 500, **keys) -> Party:
    """pause_ms: the scenario's one <pause/> (ring time of a phone, hold time of a caller)."""
    rtp_port = next(_probe_ports)
    probe = RtpProbe(ip, rtp_port)
    agent = sipp.Agent(name, scenario, ip, port, remote=remote, listens=listens,
                       keys={"rtp_ip": ip, "rtp_port": str(rtp_port),
                             **{k: str(v) for k, v in keys.items()}},
                       extra=["-d", str(pause_ms)])
    return Party(agent, probe)


def desk(scenario: str = "uas/answer.xml", ip: str = DESK_IPS[0], port: int = 5061,
         **keys) -> Party:
    return party("desk", scenario, ip, port, listens=True, **keys)


def mobile(scenario: str = "uas/ring_cancel.xml", **keys) -> Party:
    return party("mobile", scenario, TRUNK_IP, MOBILE_PORT, listens=True, **keys)


def voicemail(scenario: str = "uas/answer.xml", **keys) -> Party:
    return party("voicemail", scenario, VOICEMAIL_IP, 5060, listens=True, **keys)


def trunk_caller(cfg, service: str = SUB_DID, hold_ms: int = 3000,
                 scenario: str = "uac/call.xml", **keys) -> Party:
    """A caller on the carrier side, calling the DID (scenario: how it behaves)."""
    return party("caller", scenario, TRUNK_IP, CALLER_PORT,
                 remote=f"{cfg.proxy_address}:{cfg.proxy_port}", dial=service,
                 caller=CALLER_NUM, caller_name=CALLER_NAME, pause_ms=hold_ms, **keys)


def connect_media(a: Party, a_msg: str, b: Party, b_msg: str) -> float:
    """Point each probe at the rtpengine address its own SIP peer was given; return when."""
    a.probe.talk_to(*a.media_from(a_msg))
    b.probe.talk_to(*b.media_from(b_msg))
    return time.monotonic()


def talk(call: Call, logdir: Path, a: str, a_msg: str, b: str, b_msg: str,
         minimum: int = 25, timeout: float = 40) -> None:
    """Run a call to its end with the probes of parties a and b talking (each to the media
    address in the SDP of the message named), then assert two-way audio between them."""
    try:
        start(call, logdir)
        since = connect_media(call[a], a_msg, call[b], b_msg)
        run(call, logdir, timeout)
        assert_two_way(call[a].probe, call[b].probe, since, minimum)
    finally:
        call.close()


def run_watching(call: Call, logdir: Path, *addresses: tuple[str, int]) -> list[str]:
    """Run a call to its end while SipSinks listen on addresses that must not be rung;
    return the INVITEs that reached them."""
    sinks = [SipSink(ip, port) for ip, port in addresses]
    try:
        start(call, logdir)
        run(call, logdir)
    finally:
        call.close()
        rung = [m for sink in sinks for m in sink.messages() if m.startswith("INVITE")]
        for sink in sinks:
            sink.close()
    return rung


def run(call: Call, logdir: Path, timeout: float = 40) -> None:
    sipp.wait(call.agents(), timeout)


def start(call: Call, logdir: Path) -> Call:
    sipp.start(call.agents(), logdir)
    return call


def db_settled(db, query: str, params: tuple = (), until=bool, timeout: float = 5.0):
    """Rows of a query once `until(rows)` holds: the call log is written by a background
    process a few tens of milliseconds after the fact."""
    rows = []

    def check():
        nonlocal rows
        rows = db.execute(query, params).fetchall()
        return until(rows)

    try:
        wait_for(check, timeout, f"the database to show {query!r}", poll=0.05)
    except AssertionError:
        raise AssertionError(f"{query!r} never settled; last rows: {rows}") from None
    return rows


def assert_nothing_left(cfg, timeout: float = 8.0) -> None:
    """No state of any call remains once the calls have ended (see residue.assert_no_residue:
    dialogs, twin_legs profile, htable call, rtpengine, PostgreSQL call state, open tm
    transactions)."""
    assert_no_residue(cfg, timeout)


class SipSink:
    """A bare UDP socket on a role's address: records whatever SIP reaches it, answers nothing.
    Used where a test asserts that a device is *not* rung."""

    def __init__(self, ip: str, port: int):
        import socket
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.setblocking(False)

    def messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536).decode(errors="replace"))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


def desk_caller(cfg, dial: str, ext: str = "1002", ip: str = DESK_IPS[1], port: int = 5062,
                hold_ms: int = 3000, password: str = "secret1") -> Party:
    p = party("caller", "uac/desk_call.xml", ip, port,
              remote=f"{cfg.proxy_address}:{cfg.proxy_port}", dial=dial, caller=ext,
              caller_name=f"User {ext}", pause_ms=hold_ms)
    p.agent.extra += ["-au", ext, "-ap", password]
    return p


def send_raw(cfg, text: str, ip: str = TRUNK_IP, timeout: float = 2.0) -> str:
    """Send one raw SIP datagram to the proxy; return the first line of its answer ('' if none)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ip, 0))
        sock.settimeout(timeout)
        port = sock.getsockname()[1]
        sock.sendto(text.replace("{port}", str(port)).replace("\n", "\r\n").encode(),
                    (cfg.proxy_address, cfg.proxy_port))
        try:
            return sock.recv(65536).decode(errors="replace").split("\r\n", 1)[0]
        except socket.timeout:
            return ""
