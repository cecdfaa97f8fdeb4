"""rtpctl round-trip latency and throughput against a local rtpengine.

Starts its own rtpengine on loopback (ng 127.0.0.1:22390-22398, media 43500-43999) unless
``--ng HOST:PORT`` names a running one, then measures:

* ``ping``: one request at a time, median and p99 round trip;
* an offer + answer pair (then a delete, not timed) on a fresh call each time;
* requests per second with many ``ping``s in flight at once (``send_many``).

Prints the numbers and writes them to bench/results/rtpctl.json. Run:
``.venv/bin/python bench/rtpctl_bench.py [--n 2000] [--window 64]``
"""
from __future__ import annotations

import argparse
import json
import platform
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from rtpctl import AnswerOptions, Client, NgTimeout, OfferOptions

RESULTS = Path(__file__).resolve().parent / "results" / "rtpctl.json"
NG_PORTS = range(22390, 22399)
MEDIA = (43500, 43999)


def sdp(port: int) -> str:
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n")


def free_port() -> int:
    for port in NG_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SystemExit("no free ng port for the bench daemon")


def start_daemon(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = ["rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
           "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{port}", f"--port-min={MEDIA[0]}",
           f"--port-max={MEDIA[1]}", "--delete-delay=0", f"--pidfile={workdir / 'pid'}",
           "--log-level=4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=(workdir / "rtpengine.log").open("wb"),
                            start_new_session=True)
    probe = Client("127.0.0.1", port, timeout=0.1, retries=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
            return proc, port
        except NgTimeout:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("bench rtpengine did not start")
            time.sleep(0.05)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"n": len(samples), "median_ms": round(statistics.median(ordered) * 1e3, 4),
            "p99_ms": round(p99 * 1e3, 4), "max_ms": round(ordered[-1] * 1e3, 4)}


def bench(client: Client, n: int, pairs: int, window: int) -> dict:
    for _ in range(50):  # warm-up: socket, caches
        client.ping()
    ping = []
    for _ in range(n):
        start = time.perf_counter()
        client.request("ping")
        ping.append(time.perf_counter() - start)

    offer_answer = []
    for i in range(pairs):
        call_id = f"bench-{uuid.uuid4().hex}"
        start = time.perf_counter()
        client.offer(call_id, "a", sdp(20000 + 2 * (i % 1000)), OfferOptions(via_branch="b"))
        client.answer(call_id, "a", "b", sdp(24000 + 2 * (i % 1000)),
                      AnswerOptions(via_branch="b"))
        offer_answer.append(time.perf_counter() - start)
        client.delete(call_id, delete_delay=0)

    total = n * 5
    start = time.perf_counter()
    done = 0
    while done < total:
        batch = min(window, total - done)
        replies = client.send_many([{"command": "ping"}] * batch)
        failed = [r for r in replies if not isinstance(r, dict)]
        if failed:
            raise SystemExit(f"pipelined ping failed: {failed[0]}")
        done += batch
    elapsed = time.perf_counter() - start
    return {"ping": summary(ping), "offer_answer": summary(offer_answer),
            "pipelined_ping": {"requests": total, "window": window,
                               "seconds": round(elapsed, 4),
                               "requests_per_second": round(total / elapsed)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ng", help="HOST:PORT of a running rtpengine (default: start one)")
    parser.add_argument("--n", type=int, default=2000, help="pings timed one by one")
    parser.add_argument("--pairs", type=int, default=500, help="offer+answer pairs timed")
    parser.add_argument("--window", type=int, default=64, help="requests in flight at once")
    args = parser.parse_args()

    proc = None
    with tempfile.TemporaryDirectory(prefix="rtpctl-bench-") as tmp:
        if args.ng:
            host, _, port = args.ng.rpartition(":")
            client = Client(host, int(port), timeout=1.0, retries=3)
        else:
            proc, port = start_daemon(Path(tmp))
            client = Client("127.0.0.1", port, timeout=1.0, retries=3)
        try:
            results = bench(client, args.n, args.pairs, args.window)
            out = subprocess.run(["rtpengine", "--version"], capture_output=True, text=True)
            version = (out.stdout + out.stderr).strip().splitlines()[-1:] or ["unknown"]
        finally:
            client.close()
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
    results["env"] = {"rtpengine": version[0], "python": platform.python_version(),
                      "machine": platform.machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                           time.gmtime())}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    p, oa, pp = results["ping"], results["offer_answer"], results["pipelined_ping"]
    print(f"ping          median {p['median_ms']:.3f} ms   p99 {p['p99_ms']:.3f} ms   (n={p['n']})")
    print(f"offer+answer  median {oa['median_ms']:.3f} ms   p99 {oa['p99_ms']:.3f} ms   "
          f"(n={oa['n']})")
    print(f"pipelined     {pp['requests_per_second']} req/s  ({pp['requests']} pings, "
          f"{pp['window']} in flight)")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
