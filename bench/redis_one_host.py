"""Reproduces docs/cluster.md "rtpengine's Redis replication on one host": two rtpengines in
the active-active layout of rtpengine's wiki (each writes its own Redis database and
subscribes to the other's keyspace, each lists the other's interface) on 127.0.8.x, one call
set up on rtp1 with two RTP probes. Prints which engine forwards the media while both live,
what happens to an answer that moves one side (what a handoff does), and what a kill of rtp1
costs. Needs redis-server (Debian's package). Run as root: .venv/bin/python -m bench.redis_one_host"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lab.rtp import RtpProbe, media_address  # noqa: E402
from rtpctl import Client  # noqa: E402

REDIS, REDIS_PORT, LOGS = "127.0.8.9", 6391, Path("/tmp/redis-one-host")


def spawn(cmd: list[str], name: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(LOGS / f"{name}.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def engine(name: str, own: str, peer: str, db: int, peer_db: int, port0: int):
    other = "rtp2" if name == "rtp1" else "rtp1"
    return spawn(["rtpengine", "--config-file=none", "--foreground", "--log-stderr",
                  "--table=-1", f"--interface={name}/{own}", f"--interface={other}/{peer}",
                  f"--listen-ng={own}:2244", f"--listen-cli={own}:2245",
                  f"--redis={REDIS}:{REDIS_PORT}/{db}", f"--subscribe-keyspace={peer_db}",
                  f"--port-min={port0}", f"--port-max={port0 + 999}", "--delete-delay=0"],
                 name)


def sdp(ip: str, port: int) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=sendrecv\r\n")


def packets(client: Client) -> int:
    return client.request("query", {"call-id": "x1"})["totals"]["RTP"]["packets"]


def heard(probe: RtpProbe, other: RtpProbe, seconds: float = 1.0) -> int:
    since = time.monotonic()
    time.sleep(seconds)
    return len(probe.received_from(other, since))


def main() -> None:
    LOGS.mkdir(exist_ok=True)
    procs = [spawn(["redis-server", "--port", str(REDIS_PORT), "--bind", REDIS, "--save", "",
                    "--appendonly", "no", "--notify-keyspace-events", "K$g"], "redis")]
    time.sleep(0.5)
    procs += [engine("rtp1", "127.0.8.1", "127.0.8.2", 1, 2, 50000),
              engine("rtp2", "127.0.8.2", "127.0.8.1", 2, 1, 51000)]
    time.sleep(1.5)
    rtp1, rtp2 = Client("127.0.8.1", 2244), Client("127.0.8.2", 2244)
    caller, callee, moved = (RtpProbe("127.0.8.10", 40000), RtpProbe("127.0.8.11", 40002),
                             RtpProbe("127.0.8.12", 40004))
    try:
        offer = rtp1.offer("x1", "ft", sdp("127.0.8.10", 40000))
        answer = rtp1.answer("x1", "ft", "tt", sdp("127.0.8.11", 40002))
        callee.talk_to(*media_address(offer.sdp))
        caller.talk_to(*media_address(answer.sdp))
        time.sleep(1.0)
        print(f"both alive: RTP packets forwarded by rtp1 {packets(rtp1)}, by rtp2 (the "
              f"standby) {packets(rtp2)}")
        again = rtp1.request("answer", {"call-id": "x1", "from-tag": "ft", "to-tag": "tt",
                                        "sdp": sdp("127.0.8.12", 40004),
                                        "replace": ["origin", "session-connection"]})
        moved.talk_to(*media_address(again["sdp"]))
        callee.talk_to("127.0.0.1", 9)
        print(f"after an answer to rtp1 that moves the callee: callee's new address hears "
              f"{heard(moved, caller)} packets/s, the caller hears {heard(caller, moved)}")
        os.killpg(procs[1].pid, signal.SIGKILL)
        print(f"rtp1 killed: the caller hears {heard(caller, moved)} packets/s, the moved "
              f"callee {heard(moved, caller)}")
    finally:
        for probe in (caller, callee, moved):
            probe.close()
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
