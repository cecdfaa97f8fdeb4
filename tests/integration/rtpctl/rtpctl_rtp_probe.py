"""RTP probes for rtpctl's integration tests: numbered packets out, what arrives kept."""
from __future__ import annotations

import re
import socket
import struct
import time
from dataclasses import dataclass, field

#: rtpengine's media ports in these tests; probes bind the range after it.
MEDIA_PORTS = (42000, 42999)
PROBE_PORTS = range(43000, 43500)


RTP_HEADER = struct.Struct("!BBHII")


@dataclass
class RtpPacket:
    payload_type: int
    seq: int
    ssrc: int
    marker: bool


@dataclass
class Probe:
    """A small RTP endpoint: sends numbered packets, keeps what arrives."""

    sock: socket.socket
    port: int
    ssrc: int
    seq: int = 0
    received: list[RtpPacket] = field(default_factory=list)

    def send(self, to_port: int, count: int = 1, payload_type: int = 0,
             interval: float = 0.02, others: "list[Probe] | None" = None) -> None:
        for _ in range(count):
            header = RTP_HEADER.pack(0x80, payload_type, self.seq & 0xFFFF, self.seq * 160,
                                     self.ssrc)
            self.sock.sendto(header + b"\xff" * 160, ("127.0.0.1", to_port))
            self.seq += 1
            for p in [self, *(others or [])]:
                p.drain()
            if interval:
                time.sleep(interval)

    def drain(self) -> list[RtpPacket]:
        new = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            if len(data) < RTP_HEADER.size:
                continue
            b0, b1, seq, _, ssrc = RTP_HEADER.unpack_from(data)
            new.append(RtpPacket(b1 & 0x7F, seq, ssrc, bool(b1 & 0x80)))
        self.received.extend(new)
        return new

    def settle(self, seconds: float = 0.15) -> list[RtpPacket]:
        time.sleep(seconds)
        return self.drain()

    def sdp(self, telephone_event: bool = True) -> str:
        pts = "0 101" if telephone_event else "0"
        lines = ["v=0", f"o=- {self.port} 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1",
                 "t=0 0", f"m=audio {self.port} RTP/AVP {pts}", "a=rtpmap:0 PCMU/8000"]
        if telephone_event:
            lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
        lines += ["a=sendrecv", "a=ptime:20"]
        return "\r\n".join(lines) + "\r\n"


def audio_port(sdp: str) -> int:
    match = re.search(r"^m=audio (\d+) ", sdp, re.M)
    assert match, sdp
    return int(match.group(1))
