"""Admission of new calls under overload (docs/overload.md): an initial INVITE the proxy
cannot serve in time is refused at once, before any database or rtpengine work, with 503 and
Retry-After (RFC 3261 21.5.4; the local-overload idea of RFC 6357): a caller told to come
back costs the proxy a few microseconds, a call that times out costs it a full call and its
retransmissions. Two rules, from Kamailio's pipelimit module (pipes in shared memory, every
worker counts into the same ones, refreshed each second by its timer):

- `rxqueue` (NETWORK): the SIP waiting unread in the kernel's queues of the proxy's sockets
  is above `rx_queue_bytes`: the workers are behind, whatever the reason (a slow database,
  rtpengine, the CPU, a flood). Adapts to the machine by itself;
- `newcalls` (TAILDROP): more than `max_cps` new calls in the current second: a fixed ceiling
  at the measured sustainable rate, so the proxy never gets behind in the first place.

In-dialog requests (BYE, re-INVITE), CANCELs, ACKs and the proxy's own legs are never refused:
finishing the calls in progress is what frees the proxy.
"""
from __future__ import annotations

import KSR

from .kemi import DONE, NEXT

QUEUE_PIPE, RATE_PIPE = "rxqueue", "newcalls"


class Admission:
    def __init__(self, cfg, metrics=None):
        self.max_cps = cfg.overload_max_cps
        self.rx_queue_bytes = cfg.overload_rx_queue_bytes
        self.retry_after_s = cfg.overload_retry_after_s
        self.metrics = metrics

    def new_call(self) -> bool:
        """Request route, an initial INVITE from outside: NEXT to take it, DONE when the
        proxy has refused it."""
        why = self._over()
        if why is None:
            return NEXT
        if self.metrics is not None:
            self.metrics.refused_overload(why)
        # sl: stateless, nothing kept; Retry-After tells the caller (and a carrier's
        # gateway) to try elsewhere or later instead of retransmitting into the overload,
        # spread over [r, 2r] so the refused do not all come back in the same second.
        KSR.pipelimit.pl_drop_range(self.retry_after_s, 2 * self.retry_after_s)
        return DONE

    def _over(self) -> str | None:
        if self.rx_queue_bytes and \
                KSR.pipelimit.pl_check_limit(QUEUE_PIPE, "NETWORK", self.rx_queue_bytes) < 0:
            return "queue"
        if self.max_cps and \
                KSR.pipelimit.pl_check_limit(RATE_PIPE, "TAILDROP", self.max_cps) < 0:
            return "rate"
        return None
