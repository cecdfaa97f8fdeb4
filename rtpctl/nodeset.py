"""Several rtpengine instances: health by ng ping, and which instance holds a given call.

Kamailio's ``rtpengine`` module (modules/rtpengine, ``select_rtpp_node_new``, default
``hash_algo=0``) picks the node for a *new* call like this:

1. ``sum`` = the sum of the Call-ID's bytes, then ``sum & 0xff`` (only the low 8 bits survive;
   the C code adds signed ``char`` values, which gives the same low 8 bits as unsigned bytes).
2. ``weight_sum`` = the sum of the weights of the nodes in the set that are enabled (not
   disabled by a failed ping / timeout) — in the order they were configured.
3. ``sumcut = sum % weight_sum``; walk the enabled nodes in order, return the first whose weight
   is greater than ``sumcut``, subtracting each skipped node's weight.

Afterwards Kamailio remembers the node per (Call-ID, via-branch) in its own hash table, so an
answer/delete follows the offer even if node health changed in between. That table lives inside
Kamailio; from outside we can only recompute step 1–3, which is right as long as the set and its
health were the same when the call was offered. ``locate()`` therefore asks the computed node
first and, if it does not know the call, queries every other node.

``hash_algo=1`` (SHA1) and ``2`` (CRC32) are not modelled; ``locate()`` still finds such calls.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .client import Client
from .errors import CallNotFound, NgTimeout, NoNodeAvailable, RtpctlError
from .transport import DEFAULT_RETRIES, DEFAULT_TIMEOUT

log = logging.getLogger("rtpctl")

#: Kamailio's default ``rtpengine_disable_tout``: a failed node is not retried for 60 s.
DEFAULT_RECHECK_INTERVAL = 60.0


def kamailio_hash(call_id: str | bytes) -> int:
    """Step 1 of Kamailio's rule: the byte sum of the Call-ID, low 8 bits."""
    data = call_id.encode("utf-8", "surrogateescape") if isinstance(call_id, str) else call_id
    return sum(data) & 0xFF


def pick_by_weight(hash_value: int, weights: Sequence[int]) -> int | None:
    """Steps 2–3: index into ``weights`` (enabled nodes, configured order), None if all 0."""
    total = sum(weights)
    if total <= 0:
        return None
    cut = hash_value % total
    for index, weight in enumerate(weights):
        if cut < weight:
            return index
        cut -= weight
    return None  # unreachable with non-negative weights


@dataclass
class Node:
    """One rtpengine of the set, with the health Kamailio would track for it."""

    client: Client
    weight: int = 1
    up: bool = True
    last_error: str | None = None
    last_rtt: float | None = None
    recheck_at: float = 0.0

    @property
    def address(self) -> str:
        return self.client.address


@dataclass(frozen=True)
class Health:
    address: str
    up: bool
    rtt: float | None
    error: str | None


@dataclass
class NodeSet:
    """An ordered set of rtpengine nodes, as in a Kamailio ``rtpengine_sock`` set.

    Order and weights must match Kamailio's configuration for ``select()`` to agree with it.
    """

    nodes: list[Node] = field(default_factory=list)
    recheck_interval: float = DEFAULT_RECHECK_INTERVAL

    @classmethod
    def from_addresses(cls, addresses: Iterable[tuple[str, int] | tuple[str, int, int]], *,
                       timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES
                       ) -> "NodeSet":
        """``(host, port)`` or ``(host, port, weight)`` tuples; no socket is opened here."""
        nodes = []
        for entry in addresses:
            host, port, *rest = entry
            nodes.append(Node(Client(host, port, timeout=timeout, retries=retries),
                              weight=rest[0] if rest else 1))
        return cls(nodes)

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def check(self, *, timeout: float | None = None, retries: int = 1) -> list[Health]:
        """Ping every node (one try each by default, so the whole check is bounded by
        ``len(nodes) * timeout``) and update each node's up/down state."""
        report = []
        for node in self.nodes:
            try:
                node.last_rtt = node.client.ping(timeout=timeout, retries=retries)
                node.up, node.last_error = True, None
            except RtpctlError as exc:
                self._mark_down(node, exc)
            report.append(Health(node.address, node.up, node.last_rtt if node.up else None,
                                 node.last_error))
        return report

    def _mark_down(self, node: Node, exc: Exception) -> None:
        node.up, node.last_error = False, str(exc)
        node.recheck_at = time.monotonic() + self.recheck_interval
        log.warning("rtpengine %s marked down: %s", node.address, exc)

    def _enabled(self) -> list[Node]:
        """Up nodes, plus down nodes whose recheck time has come (tried again, like Kamailio)."""
        now = time.monotonic()
        enabled = []
        for node in self.nodes:
            if not node.up and node.recheck_at <= now:
                try:
                    node.last_rtt = node.client.ping(retries=1)
                    node.up, node.last_error = True, None
                except RtpctlError as exc:
                    self._mark_down(node, exc)
            if node.up:
                enabled.append(node)
        return enabled

    def select(self, call_id: str) -> Node:
        """The node Kamailio would choose for a new call with this Call-ID."""
        enabled = self._enabled()
        index = pick_by_weight(kamailio_hash(call_id), [n.weight for n in enabled])
        if index is None:
            raise NoNodeAvailable("no rtpengine is up among "
                                  + (", ".join(n.address for n in self.nodes) or "(none)"))
        return enabled[index]

    def locate(self, call_id: str) -> Node | None:
        """The node that holds this call: the computed one first, then every other node.

        Returns None when no reachable node knows the call. A node that times out is marked
        down and skipped, so one dead node does not hide the call on another.
        """
        try:
            first: Node | None = self.select(call_id)
        except NoNodeAvailable:
            first = None
        order = ([first] if first else []) + [n for n in self.nodes if n is not first]
        for node in order:
            try:
                node.client.query(call_id)
                return node
            except CallNotFound:
                continue
            except NgTimeout as exc:
                self._mark_down(node, exc)
        return None

    def close(self) -> None:
        for node in self.nodes:
            node.client.close()
