"""RTP probes for the end-to-end tests: each sends numbered packets every 20 ms to wherever
it is told (the media address the far side's SDP gave) and records every packet that arrives,
with its arrival time, so two-way audio, loss and gaps are measured on real packets."""
from __future__ import annotations

import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

RTP = struct.Struct("!BBHII")
PTIME = 0.020


@dataclass(frozen=True)
class Arrival:
    at: float                   # time.monotonic()
    ssrc: int
    seq: int
    source: tuple[str, int]
    wall: float = 0.0           # time.time(), to compare with SIPp's trace timestamps


class RtpProbe:
    def __init__(self, ip: str, port: int):
        self.ip, self.port = ip, port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.05)
        self.ssrc = random.getrandbits(32)
        self.target: tuple[str, int] | None = None
        self.arrivals: list[Arrival] = []
        self.sent = 0
        self._stop = threading.Event()
        self._retarget = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._receive, daemon=True),
                         threading.Thread(target=self._send, daemon=True)]
        for thread in self._threads:
            thread.start()

    def talk_to(self, ip: str, port: int) -> None:
        """Send there from now on; the first packet leaves at once, as a phone's does when it
        learns where to send, not at the next tick of the old schedule."""
        self.target = (ip, port)
        self._retarget.set()

    def _send(self) -> None:
        seq = random.getrandbits(15)
        next_at = time.monotonic()
        while not self._stop.is_set():
            target = self.target
            if target:
                packet = RTP.pack(0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, self.ssrc)
                try:
                    self.sock.sendto(packet + b"\xff" * 160, target)
                    self.sent += 1
                except OSError:
                    pass
                seq += 1
            next_at += PTIME
            if self._retarget.wait(max(0.0, next_at - time.monotonic())):
                self._retarget.clear()
                next_at = time.monotonic()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            if len(data) >= RTP.size and data[0] >> 6 == 2:
                _, _, seq, _, ssrc = RTP.unpack_from(data)
                with self._lock:
                    self.arrivals.append(Arrival(time.monotonic(), ssrc, seq, source,
                                                 time.time()))

    def received_from(self, other: "RtpProbe", since: float = 0.0) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.ssrc == other.ssrc and a.at >= since]

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1)
        self.sock.close()


def media_address(sip_message: str) -> tuple[str, int]:
    """(ip, port) of the first audio stream in a SIP message's SDP."""
    conn = re.search(r"^c=IN IP4 ([0-9.]+)", sip_message, re.M)
    media = re.search(r"^m=audio (\d+) ", sip_message, re.M)
    assert conn and media, f"no SDP audio in:\n{sip_message}"
    return conn.group(1), int(media.group(1))


def wait_for(predicate, timeout: float = 10.0, what: str = "condition", poll: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def assert_two_way(a: RtpProbe, b: RtpProbe, since: float, minimum: int = 25) -> None:
    """Each probe heard the other (through rtpengine) at least `minimum` packets."""
    got_ab = len(b.received_from(a, since))
    got_ba = len(a.received_from(b, since))
    assert got_ab >= minimum and got_ba >= minimum, (
        f"media not two-way: {a.ip}:{a.port}→{b.ip}:{b.port} {got_ab} packets, "
        f"{b.ip}:{b.port}→{a.ip}:{a.port} {got_ba} packets")


def udp_payloads_to(ip: str, port: int, seconds: float = 1.0) -> list[bytes]:
    """The UDP payloads sent to ip:port on the loopback interface over `seconds`, read off
    the wire (a raw packet socket: root only), to see what a stream carries, not what an
    endpoint makes of it: plain RTP or SRTP (whose payload is ciphertext plus an
    authentication tag)."""
    ETH_P_ALL, PACKET_OUTGOING = 0x0003, 4
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.bind(("lo", 0))
        sock.settimeout(0.05)
        wanted = socket.inet_aton(ip)
        found: list[bytes] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame, address = sock.recvfrom(65536)
            except socket.timeout:
                continue
            if address[2] == PACKET_OUTGOING:        # lo shows each packet twice
                continue
            packet = frame[14:]                      # after the (dummy) Ethernet header
            if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
                continue
            header = (packet[0] & 0x0F) * 4
            if packet[16:20] != wanted or \
                    struct.unpack_from("!H", packet, header + 2)[0] != port:
                continue
            found.append(packet[header + 8:])
        return found
    finally:
        sock.close()
