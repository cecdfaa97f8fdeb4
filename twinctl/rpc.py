"""Kamailio JSON-RPC over the jsonrpcs FIFO (reloads, statistics, KEMI api list)."""
from __future__ import annotations

import itertools
import json
import os
import select
import time
from pathlib import Path

from twinning.config import SiteConfig, cluster_nodes

from .errors import TwinctlError

_counter = itertools.count()


def fifo_path(cfg: SiteConfig) -> Path:
    return cfg.node_dir("run") / "kamailio_rpc.fifo"


def proxies(cfg: SiteConfig) -> list[SiteConfig]:
    """The proxies a change must reach: every node of a cluster's site config, else the one."""
    if cfg.cluster and not cfg.node:
        return cluster_nodes(cfg)[0]
    return [cfg]


def call(cfg: SiteConfig, method: str, *params, timeout: float = 5.0):
    """Send one RPC; return its `result`. The reply comes back on a FIFO of our own that
    Kamailio opens in its reply directory, named by a bare file name (no path, no dots)."""
    fifo = fifo_path(cfg)
    if not fifo.exists():
        raise TwinctlError(f"Kamailio is not running (no RPC FIFO at {fifo})")
    reply_name = f"twinctl_{os.getpid()}_{next(_counter)}"
    reply_path = fifo.parent / reply_name
    os.mkfifo(reply_path, 0o600)
    if os.geteuid() == 0:   # Kamailio runs as its own user under systemd: it must open ours
        st = fifo.parent.stat()
        os.chown(reply_path, st.st_uid, st.st_gid)
    try:
        request = {"jsonrpc": "2.0", "method": method, "params": list(params),
                   "reply_name": reply_name, "id": 1}
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise TwinctlError(f"Kamailio RPC FIFO {fifo} not answering ({exc.strerror})") from None
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(request) + "\n")
        rfd = os.open(reply_path, os.O_RDONLY | os.O_NONBLOCK)
        data = b""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TwinctlError(f"no RPC reply from Kamailio for {method} in {timeout}s")
                ready, _, _ = select.select([rfd], [], [], left)
                if not ready:
                    continue
                chunk = os.read(rfd, 65536)
                if chunk:
                    data += chunk
                    try:
                        reply = json.loads(data)
                        break
                    except ValueError:
                        continue
                elif data:
                    reply = json.loads(data)
                    break
                else:
                    time.sleep(0.01)   # writer not there yet
        finally:
            os.close(rfd)
    finally:
        reply_path.unlink(missing_ok=True)
    if "error" in reply:
        err = reply["error"]
        raise TwinctlError(f"RPC {method} failed: {err.get('message', err)}")
    return reply.get("result")
