"""The rtpengine watch of a proxy with several rtpengines (a cluster's set).

Left to itself, Kamailio's rtpengine module finds a dead rtpengine only when a call's offer
waits out its timeouts (rtpengine_tout_ms x (rtpengine_retr + 1): 3 s here), then skips it
for rtpengine_disable_tout and tries it again with the next call: every few seconds a caller
waits 3 s in a SIP worker. The watch runs in a timer process of its own instead: it pings
every engine twice a second, takes one that missed two pings in a row out of the module's
set at once (`rtpengine.enable <url> 0`, which the module never rechecks by itself, so no
SIP worker waits on it again) and puts it back when it answers again (`rtpengine.enable
<url> 1`, for which the module pings it itself). New calls then go to the live engines
without a wait; calls already on the dead engine lose their media (docs/cluster.md)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from rtpctl import Client, RtpctlError

INTERVAL_S = 0.5            # one round of pings
PING_TIMEOUT_S = 0.2        # a dead engine costs the watch this, once per round
MISSES = 2                  # missed pings in a row that take an engine out


@dataclass
class Engine:
    url: str                # as the module names it (twinning.config.HostPort.ng_url)
    client: Client
    misses: int = 0
    enabled: bool = True    # what the watch last told the module


class EngineWatch:
    """enable(url, on) tells the module (True when it took it: enabling fails if the
    module's own ping fails); log(text) reports each change; show(url, in_set) tells the
    operator (the metric), for every engine at the start and at each change."""

    def __init__(self, engines: Iterable[Engine], enable: Callable[[str, bool], bool],
                 log: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 interval: float = INTERVAL_S, misses: int = MISSES,
                 show: Callable[[str, bool], None] = lambda url, in_set: None):
        self.engines = list(engines)
        self.enable, self.log, self.clock, self.show = enable, log, clock, show
        self.interval, self.max_misses = interval, misses
        self.next_round = 0.0
        for engine in self.engines:
            show(engine.url, engine.enabled)

    def tick(self) -> None:
        now = self.clock()
        if now < self.next_round:
            return
        self.next_round = now + self.interval
        for engine in self.engines:
            self.check(engine)

    def check(self, engine: Engine) -> None:
        try:
            engine.client.ping(timeout=PING_TIMEOUT_S, retries=1)
        except (RtpctlError, OSError) as exc:
            engine.misses += 1
            if engine.enabled and engine.misses >= self.max_misses:
                if self.enable(engine.url, False):
                    engine.enabled = False
                    self.show(engine.url, False)
                    self.log(f"rtpengine {engine.url} missed {engine.misses} pings ({exc}): "
                             "taken out of the set, new calls go to the others")
            return
        engine.misses = 0
        if not engine.enabled and self.enable(engine.url, True):
            engine.enabled = True
            self.show(engine.url, True)
            self.log(f"rtpengine {engine.url} answers again: back in the set")


def rpc_enable_request(url: str, on: bool) -> str:
    """The JSON-RPC request of `rtpengine.enable` (jsonrpcs' exec takes it as text)."""
    return json.dumps({"jsonrpc": "2.0", "method": "rtpengine.enable",
                       "params": [url, 1 if on else 0], "id": 1})
