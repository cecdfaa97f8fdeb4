"""Transport and request path against a scripted fake rtpengine (given / when / then)."""
from __future__ import annotations

import logging
import os
import time

import pytest

from rtpctl import (CallNotFound, Client, NgError, NgTimeout, ProtocolError, UdpTransport)
from rtpctl.testing import FakeServer, Received, reply

pytestmark = pytest.mark.unit


def client_for(server: FakeServer, timeout: float = 0.1, retries: int = 3) -> Client:
    return Client(server.host, server.port, timeout=timeout, retries=retries)


def test_construction_opens_no_socket():
    # given a client for a port nobody listens on; when it is only constructed
    c = Client("127.0.0.1", 22349)
    # then no socket exists yet (safe before Kamailio forks its workers)
    assert c.transport._sock is None


def test_silence_then_reply_retransmits_with_the_same_cookie():
    seen: list[str] = []

    def answer_second_time(req: Received, server: FakeServer):
        seen.append(req.cookie)
        return None if len(seen) == 1 else [reply(req.cookie, {"result": "pong"})]

    with FakeServer(answer_second_time) as server:
        rtt = client_for(server).ping()
    assert len(server.received) == 2
    assert server.received[0].cookie == server.received[1].cookie
    assert rtt >= 0.1  # the first try waited out its timeout


def test_no_reply_at_all_raises_timeout_after_every_try():
    with FakeServer(lambda req, srv: None) as server:
        start = time.monotonic()
        with pytest.raises(NgTimeout) as info:
            client_for(server, timeout=0.05, retries=3).request("ping")
        elapsed = time.monotonic() - start
    assert info.value.tries == 3
    assert str(info.value) == f"no reply from rtpengine at 127.0.0.1:{server.port} after 3 tries"
    assert len(set(server.cookies())) == 1 and len(server.received) == 3
    assert 0.15 <= elapsed < 0.5  # bounded by timeout * retries


def test_each_request_gets_a_fresh_cookie():
    with FakeServer() as server:
        c = client_for(server)
        for _ in range(5):
            c.ping()
    assert len(set(server.cookies())) == 5


def test_cookie_prefix_changes_after_fork(monkeypatch):
    t = UdpTransport("127.0.0.1", 22349)
    first = t.cookies.next()
    monkeypatch.setattr(os, "getpid", lambda: -12345)
    second = t.cookies.next()
    assert first.split("_")[0] != second.split("_")[0]


def test_out_of_order_replies_are_matched_by_cookie():
    held: list[Received] = []

    def reply_in_reverse(req: Received, server: FakeServer):
        held.append(req)
        if len(held) < 3:
            return None
        return [reply(r.cookie, {"result": "ok", "echo": r.message["call-id"]})
                for r in reversed(held)]

    with FakeServer(reply_in_reverse) as server:
        replies = client_for(server, timeout=0.5).send_many(
            [{"command": "query", "call-id": f"call-{i}"} for i in range(3)])
    assert [r["echo"] for r in replies] == ["call-0", "call-1", "call-2"]


def test_reply_with_unknown_cookie_is_ignored():
    def stray_then_real(req: Received, server: FakeServer):
        return [reply("not-ours_1", {"result": "error", "error-reason": "stray"}),
                reply(req.cookie, {"result": "pong"})]

    with FakeServer(stray_then_real) as server:
        client_for(server).ping()


def test_datagram_without_cookie_is_ignored():
    def garbage_then_real(req: Received, server: FakeServer):
        return [b"\x00\xffgarbage", reply(req.cookie, {"result": "pong"})]

    with FakeServer(garbage_then_real) as server:
        client_for(server).ping()


@pytest.mark.parametrize("body", [b"d6:result2:o", b"d6:resulti1", b"xyz", b"", b"l2:oke",
                                  b"d6:result2:okee"])
def test_malformed_or_truncated_reply_raises_protocol_error(body: bytes):
    with FakeServer(lambda req, srv: [req.cookie.encode() + b" " + body]) as server:
        with pytest.raises(ProtocolError):
            client_for(server).ping()


def test_error_result_raises_with_reason():
    def refuse(req: Received, server: FakeServer):
        return [reply(req.cookie, {"result": "error", "error-reason": "Ran out of ports"})]

    with FakeServer(refuse) as server:
        with pytest.raises(NgError) as info:
            client_for(server).offer("c", "f", "v=0\r\n")
    assert info.value.reason == "Ran out of ports"
    assert info.value.command == "offer"
    assert not isinstance(info.value, CallNotFound)


def test_unknown_call_is_its_own_error():
    def unknown(req: Received, server: FakeServer):
        return [reply(req.cookie, {"result": "error", "error-reason": "Unknown call-id"})]

    with FakeServer(unknown) as server:
        with pytest.raises(CallNotFound):
            client_for(server).query("nope")


def test_warning_is_surfaced_and_logged(caplog):
    def warn(req: Received, server: FakeServer):
        return [reply(req.cookie, {"result": "ok", "warning": "Call-ID not found or tags "
                                   "didn't match"})]

    with FakeServer(warn) as server, caplog.at_level(logging.WARNING, logger="rtpctl"):
        result = client_for(server).delete("c", from_tag="f")
    assert result.warning == "Call-ID not found or tags didn't match"
    assert "tags didn't match" in caplog.text


def test_unexpected_result_value_is_a_protocol_error():
    with FakeServer(lambda req, srv: [reply(req.cookie, {"result": "maybe"})]) as server:
        with pytest.raises(ProtocolError):
            client_for(server).request("list")


def test_send_many_returns_errors_in_place():
    def mixed(req: Received, server: FakeServer):
        cid = req.message.get("call-id")
        if cid == "bad":
            return [reply(req.cookie, {"result": "error", "error-reason": "Unknown call-id"})]
        if cid == "silent":
            return None
        return [reply(req.cookie, {"result": "ok"})]

    with FakeServer(mixed) as server:
        out = client_for(server, timeout=0.05, retries=2).send_many(
            [{"command": "query", "call-id": c} for c in ("good", "bad", "silent")])
    assert out[0] == {"result": "ok"}
    assert isinstance(out[1], CallNotFound)
    assert isinstance(out[2], NgTimeout)


def test_many_in_flight_take_about_one_round_trip():
    with FakeServer() as server:
        c = client_for(server, timeout=1.0)
        out = c.send_many([{"command": "ping"}] * 200)
    assert all(r == {"result": "pong"} for r in out)
    assert len(set(server.cookies())) == 200


def test_refused_port_fails_fast_with_one_line():
    c = Client("127.0.0.1", 22349, timeout=0.5, retries=3)
    start = time.monotonic()
    with pytest.raises(NgTimeout) as info:
        c.ping()
    assert time.monotonic() - start < 0.5
    assert "127.0.0.1:22349 after 3 tries" in str(info.value)
