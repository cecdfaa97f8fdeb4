"""Overload control on the wire (routing/overload.py): a burst of new calls beyond the
proxy's ceiling ([overload] max_cps, 60 in the test config) is refused at once with 503 and
Retry-After, statelessly, before any database or rtpengine work; the calls under the ceiling
are served; nothing is left behind. A plain UDP client plays the carrier: it sends the burst
as fast as it can and reads every final reply."""
from __future__ import annotations

import socket
import time
import uuid

import pytest

from lab.agents import TRUNK_IP
from lab.residue import assert_no_residue
from tests.e2e.test_metrics import grew, scrape

pytestmark = pytest.mark.e2e

BURST = 300
UNKNOWN_DID = "2125559999"          # served calls end 404 after the subscriber look-up


def invite(cfg, port: int, n: int) -> tuple[str, bytes]:
    call_id = f"burst-{n}-{uuid.uuid4().hex[:8]}"
    return call_id, (
        f"INVITE sip:{UNKNOWN_DID}@{cfg.proxy_address} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {TRUNK_IP}:{port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:3125550199@{TRUNK_IP}>;tag=t{n}\r\n"
        f"To: <sip:{UNKNOWN_DID}@{cfg.proxy_address}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:3125550199@{TRUNK_IP}:{port}>\r\nContent-Length: 0\r\n\r\n").encode()


def header(message: str, name: str) -> str:
    for line in message.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def test_given_a_burst_beyond_the_ceiling_then_the_excess_gets_503_with_retry_after_at_once(
        stack, db):
    before = scrape(stack.metrics_kamailio)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((TRUNK_IP, 0))
    port = sock.getsockname()[1]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sent = {}
    for n in range(BURST):
        call_id, data = invite(stack, port, n)
        sent[call_id] = time.monotonic()
        sock.sendto(data, (stack.proxy_address, stack.proxy_port))
    finals: dict[str, str] = {}
    sock.settimeout(0.5)
    deadline = time.monotonic() + 10
    while len(finals) < BURST and time.monotonic() < deadline:
        try:
            message = sock.recv(65535).decode(errors="replace")
        except socket.timeout:
            continue
        code = int(message.split(" ", 2)[1])
        if code >= 200:
            finals.setdefault(header(message, "Call-ID"), message)
    codes = [int(m.split(" ", 2)[1]) for m in finals.values()]
    after = scrape(stack.metrics_kamailio)
    recovered_s = served_again(stack, sock, port)
    sock.close()
    print(f"\nburst of {BURST}: {codes.count(404)} served, {codes.count(503)} refused")
    assert len(finals) == BURST, f"{BURST - len(finals)} calls got no final reply"
    assert set(codes) <= {404, 503}, sorted(set(codes))
    refused = [m for m in finals.values() if m.startswith("SIP/2.0 503")]
    served = codes.count(404)
    assert served >= 50, f"only {served} calls served under a ceiling of 60/s"
    assert len(refused) >= BURST - 2 * 60 - 10, f"only {len(refused)} refused"
    for message in refused:
        assert 5 <= int(header(message, "Retry-After")) <= 10
        assert ";tag=" in header(message, "To")          # a real final reply, sent by sl
    counted = sum(grew(before, after, "kamailio_twinning_overload_refused_calls_total",
                       rule=rule) for rule in ("queue", "rate"))
    assert counted == len(refused)
    # Once the burst is over, new calls are served again within pipelimit's interval (1 s).
    assert recovered_s < 2.5, f"new calls still refused {recovered_s:.1f} s after the burst"
    assert_no_residue(stack)


def served_again(cfg, sock: socket.socket, port: int, timeout: float = 5.0) -> float:
    """Seconds until a single new call after the burst is served (404), probing every 100 ms."""
    started = time.monotonic()
    sock.settimeout(0.1)
    n = BURST
    while time.monotonic() - started < timeout:
        n += 1
        call_id, data = invite(cfg, port, n)
        sock.sendto(data, (cfg.proxy_address, cfg.proxy_port))
        try:
            while True:
                message = sock.recv(65535).decode(errors="replace")
                if header(message, "Call-ID") == call_id and \
                        message.startswith("SIP/2.0 404"):
                    return time.monotonic() - started
        except socket.timeout:
            pass
    return timeout
