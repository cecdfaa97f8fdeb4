"""Figure 2: the delay the proxy adds, from packet timestamps on lo: each INVITE the caller
sends to the proxy, and the INVITE the proxy sends on each branch (desk, mobile) for the same
Call-ID. dumpcap (Wireshark's capture tool, Debian package `tshark`) captures only the proxy's
SIP port and rtpengine's ng port (a kernel capture filter); the pcap is read here, without a
dissector. The ng requests Kamailio makes between the INVITE in and the INVITE out (the two
per-branch offers) are timed too, so the delay splits into "waiting for rtpengine" and the rest
(routing, tm, dialog, parsing, scheduling)."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

from . import load
from . import testbed as tb

DUMPCAP = shutil.which("dumpcap") or "/usr/bin/dumpcap"


def available() -> bool:
    """dumpcap (Debian's tshark package) is what figure 2 captures with."""
    return shutil.which("dumpcap") is not None or Path(DUMPCAP).exists()


class Capture:
    def __init__(self, cfg, path: Path):
        self.cfg, self.path = cfg, path
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Capture":
        self.path.unlink(missing_ok=True)
        ng = self.cfg.rtpengine_ng
        bpf = (f"udp and host {self.cfg.proxy_address} and (port {self.cfg.proxy_port} "
               f"or port {ng.port})")
        # -P: classic pcap (not pcapng); -B: a kernel buffer big enough for a 10 s burst.
        self.proc = subprocess.Popen([DUMPCAP, "-q", "-P", "-i", "lo", "-f", bpf, "-B", "64",
                                      "-w", str(self.path)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.monotonic() + 5
        while not self.path.exists() and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dumpcap failed: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def read_pcap(path: Path):
    """(timestamp, src ip, src port, dst ip, dst port, payload) of every UDP/IPv4 packet."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = struct.unpack_from("<I", data)[0]
    endian, nano = {0xa1b2c3d4: ("<", False), 0xa1b23c4d: ("<", True),
                    0xd4c3b2a1: (">", False), 0x4d3cb2a1: (">", True)}[magic]
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    l2 = {1: 14, 113: 16, 276: 20, 0: 4}[linktype]      # ethernet, SLL, SLL2, null
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack_from(endian + "IIII", data, pos)
        pkt = data[pos + 16: pos + 16 + incl]
        pos += 16 + incl
        ip = pkt[l2:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", ip, ihl)
        yield (sec + frac / (1e9 if nano else 1e6), ".".join(map(str, ip[12:16])), sport,
               ".".join(map(str, ip[16:20])), dport, ip[ihl + 8:])


def _call_id(payload: bytes) -> str | None:
    for line in payload.split(b"\r\n"):
        if not line:
            return None
        low = line[:8].lower()
        if low.startswith(b"call-id:") or line[:2].lower() == b"i:":
            return line.split(b":", 1)[1].strip().decode(errors="replace")
    return None


_NG_CALL_ID = re.compile(rb"7:call-id(\d+):")
_NG_COMMAND = re.compile(rb"7:command(\d+):")


def _bencode_str(payload: bytes, key: re.Pattern) -> str | None:
    m = key.search(payload)
    if not m:
        return None
    n = int(m.group(1))
    return payload[m.end(): m.end() + n].decode(errors="replace")


def proxy_delays(cfg, pcap: Path) -> dict:
    """Per branch: INVITE in (caller -> proxy) to INVITE out (proxy -> branch), first copies
    only (a retransmission is not a new INVITE), in ms."""
    proxy = (cfg.proxy_address, cfg.proxy_port)
    branches = {"desk": (tb.DESK_IP, tb.DESK_PORT), "mobile": (tb.TRUNK_IP, tb.MOBILE_PORT)}
    ng_addr = (cfg.rtpengine_ng.host, cfg.rtpengine_ng.port)
    inbound: dict[str, float] = {}
    outbound: dict[str, dict[str, float]] = {name: {} for name in branches}
    ng_sent: dict[bytes, tuple[float, str, str]] = {}     # cookie -> (ts, call-id, command)
    ng_done: dict[str, list[tuple[float, float, str]]] = {}  # call-id -> [(sent, replied, cmd)]
    for ts, sip, sport, dip, dport, payload in read_pcap(pcap):
        if (dip, dport) == ng_addr:
            cookie = payload.split(b" ", 1)[0]
            cid, cmd = _bencode_str(payload, _NG_CALL_ID), _bencode_str(payload, _NG_COMMAND)
            if cid and cookie not in ng_sent:
                ng_sent[cookie] = (ts, cid, cmd or "?")
            continue
        if (sip, sport) == ng_addr:
            sent = ng_sent.pop(payload.split(b" ", 1)[0], None)
            if sent:
                ng_done.setdefault(sent[1], []).append((sent[0], ts, sent[2]))
            continue
        if not payload.startswith(b"INVITE "):
            continue
        cid = _call_id(payload)
        if cid is None:
            continue
        if (dip, dport) == proxy and (sip, sport) == (tb.TRUNK_IP, tb.CALLER_PORT):
            inbound.setdefault(cid, ts)
        elif (sip, sport) == proxy:
            for name, addr in branches.items():
                if (dip, dport) == addr:
                    outbound[name].setdefault(cid, ts)
    out = {"invites_in": len(inbound)}
    for name, sent in outbound.items():
        delays = [1000 * (t - inbound[cid]) for cid, t in sent.items() if cid in inbound]
        out[name] = load.percentiles(delays)
    both, ng_wait, rest = [], [], []
    for cid, t_in in inbound.items():
        if cid not in outbound["desk"] or cid not in outbound["mobile"]:
            continue
        t_out = max(outbound["desk"][cid], outbound["mobile"][cid])
        waited = sum(done - sent for sent, done, cmd in ng_done.get(cid, [])
                     if t_in <= sent and done <= t_out)
        both.append(1000 * (t_out - t_in))
        ng_wait.append(1000 * waited)
        rest.append(1000 * (t_out - t_in - waited))
    out["both_branches_out"] = load.percentiles(both)
    out["rtpengine_wait"] = load.percentiles(ng_wait)       # the two offers, round trips
    out["proxy_rest"] = load.percentiles(rest)              # everything but rtpengine
    return out
