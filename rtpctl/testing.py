"""A scripted fake rtpengine for tests (ours and the routing's): a UDP socket on loopback
served by a thread *in the test process*, never used by the library itself.

The script is a function ``(request, server) -> list[bytes] | None`` given each received
request; it returns the datagrams to send back (use ``reply()`` to build a proper one) or None to
stay silent. Every received request is recorded, so a test can assert which cookies arrived and
how often.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .codec import decode_message, encode_message

#: Loopback ports reserved for rtpctl's fake servers (see tests/integration for the daemons).
FAKE_PORT_RANGE = range(22300, 22350)


@dataclass
class Received:
    cookie: str
    message: dict[str, Any]
    at: float


def reply(cookie: str, body: dict[str, Any]) -> bytes:
    """A well-formed ng reply datagram."""
    return encode_message(cookie, body)


def pong(request: Received, server: "FakeServer") -> list[bytes]:
    """Default script: pong to ping, ok to anything else."""
    result = "pong" if request.message.get("command") == "ping" else "ok"
    return [reply(request.cookie, {"result": result})]


Script = Callable[[Received, "FakeServer"], "list[bytes] | None"]


@dataclass
class FakeServer:
    script: Script = pong
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _sock: socket.socket | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self) -> "FakeServer":
        for port in FAKE_PORT_RANGE:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                continue
            self._sock, self.port = sock, port
            break
        else:
            raise RuntimeError("no free port in the fake rtpengine range")
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            cookie, message = decode_message(data)
            request = Received(cookie, message, time.monotonic())
            self.received.append(request)
            for datagram in self.script(request, self) or []:
                self._sock.sendto(datagram, peer)

    def send_to(self, peer: tuple[str, int], datagram: bytes) -> None:
        assert self._sock is not None
        self._sock.sendto(datagram, peer)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cookies(self) -> list[str]:
        return [r.cookie for r in self.received]
