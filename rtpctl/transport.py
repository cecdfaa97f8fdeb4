"""UDP transport for ng: cookies, per-try timeout, retransmission, many requests in flight.

Built for Kamailio's app_python3: every worker is a forked process with its own interpreter, so
nothing here opens a socket at import or construction time, a socket made before a fork is
dropped in the child (the pid is checked), there are no threads, and every call blocks at most
``timeout * retries`` seconds.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .codec import decode_body, encode_message, split_packet
from .errors import NgTimeout, ProtocolError, RtpctlError

log = logging.getLogger("rtpctl")

DEFAULT_TIMEOUT = 0.5
DEFAULT_RETRIES = 3
#: Largest UDP payload; rtpengine never sends more in one ng reply.
MAX_DATAGRAM = 65535


class CookieJar:
    """Unique cookies: ``<random per-process prefix>_<counter>``.

    rtpengine caches each reply under its cookie for a while and answers a repeated cookie from
    that cache without running the command again, so a cookie must never be reused for a new
    request: not after a restart (random prefix), and not by two forked workers (the prefix is
    redrawn when the pid changes).
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = 0

    def next(self) -> str:
        pid = os.getpid()
        if pid != self._pid:
            self._pid, self._prefix, self._counter = pid, secrets.token_hex(5), 0
        self._counter += 1
        return f"{self._prefix}_{self._counter}"


@dataclass
class _Pending:
    index: int
    packet: bytes
    sent: int = 0


@dataclass
class UdpTransport:
    """ng over UDP to one rtpengine.

    ``timeout`` is the wait per try in seconds; ``retries`` is the number of tries in all (the
    first send plus retransmissions, each with the same cookie so rtpengine answers a
    retransmitted command from its cache instead of running it twice).
    """

    host: str
    port: int
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    cookies: CookieJar = field(default_factory=CookieJar, repr=False)
    _sock: socket.socket | None = field(default=None, init=False, repr=False)
    _sock_pid: int = field(default=-1, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.retries < 1:
            raise ValueError("retries counts every send and must be at least 1")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _socket(self) -> socket.socket:
        """The connected socket, opened on first use (after any fork) and reopened in a child."""
        if self._sock is not None and self._sock_pid == os.getpid():
            return self._sock
        if self._sock is not None:
            # Inherited across fork: the parent still uses it, so closing our copy is safe and
            # sharing it would let one worker read another's replies.
            self._sock.close()
            self._sock = None
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            # connect(): the kernel then drops datagrams from other sources and reports ICMP
            # "port unreachable" as ConnectionRefusedError, so a dead daemon fails fast.
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        self._sock, self._sock_pid = sock, os.getpid()
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def exchange(self, messages: Sequence[Mapping[str, Any]], timeout: float | None = None,
                 retries: int | None = None) -> list[dict[str, Any] | RtpctlError]:
        """Send every message at once and collect the replies, matched by cookie.

        Returns one entry per message, in order: the decoded reply dictionary, or the
        exception for that message (NgTimeout, ProtocolError). Never raises for a single bad
        reply, so one broken answer cannot hide the other replies in a batch.
        """
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        results: list[dict[str, Any] | RtpctlError | None] = [None] * len(messages)
        pending: dict[str, _Pending] = {}
        for index, message in enumerate(messages):
            cookie = self.cookies.next()
            pending[cookie] = _Pending(index, encode_message(cookie, message))
        if not pending:
            return []
        try:
            sock = self._socket()
        except OSError as exc:
            error = NgTimeout(self.host, self.port, 0, f"cannot open socket: {exc.strerror or exc}")
            return [error for _ in messages]
        detail = ""
        for attempt in range(1, retries + 1):
            if attempt > 1:
                log.info("rtpengine %s: no reply to %d request(s), retransmitting (try %d of %d)",
                         self.address, len(pending), attempt, retries)
            refused = False
            for cookie, item in list(pending.items()):
                try:
                    sock.send(item.packet)
                    item.sent += 1
                except ConnectionRefusedError:
                    refused = True
                    break
                except OSError as exc:
                    detail = exc.strerror or str(exc)
                    break
            if not refused:
                refused = self._collect(sock, pending, results, time.monotonic() + timeout)
            if refused:
                detail = "connection refused"
            if not pending:
                break
        for item in pending.values():
            results[item.index] = NgTimeout(self.host, self.port, retries, detail)
        return results  # type: ignore[return-value]  # every slot is filled above

    def _collect(self, sock: socket.socket, pending: dict[str, _Pending],
                 results: list[Any], deadline: float) -> bool:
        """Read replies until all are in or the deadline passes. True if the port refused."""
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.settimeout(remaining)
            try:
                data = sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                return False
            except ConnectionRefusedError:
                return True
            except InterruptedError:
                continue
            try:
                cookie, body = split_packet(data)
            except ProtocolError as exc:
                log.warning("rtpengine %s: ignoring datagram: %s", self.address, exc)
                continue
            item = pending.pop(cookie, None)
            if item is None:
                # A late answer to a request we already gave up on, or a duplicate.
                log.debug("rtpengine %s: ignoring reply for unknown cookie %r", self.address,
                          cookie)
                continue
            try:
                results[item.index] = decode_body(body)
            except ProtocolError as exc:
                results[item.index] = ProtocolError(f"rtpengine {self.address}: {exc}")
        return False
