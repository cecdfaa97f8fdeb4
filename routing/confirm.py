"""A twin leg's confirmation (a subscriber's `mobile_confirm`): whoever answers the mobile
hears a short prompt and must press 1 within CONFIRM_WINDOW_S before the caller is connected
to them; a carrier's voicemail or a pocket answer never presses it. See
docs/voicemail-avoidance.md.

The 2xx of the leg is held back (the core reply route drops it, as for an answer too soon),
the proxy ACKs the mobile, and rtpengine sets up the leg's media with the leg kept from the
caller while the prompt plays to it. rtpengine reports the DTMF it sees as JSON datagrams
(--dtmf-log-dest); the proxy's `legs` timer process reads them:

- "1" from that leg: the prompt stops, the leg's media is let through, and the held 2xx is
  given back to the proxy itself: the leg's transaction and the call's relay it as any 2xx;
- no "1" in time, the mobile hangs up, or the call is CANCELled (the desk answered, the caller
  hung up, the ring timeout): the proxy BYEs the leg (unless the mobile hung up) and tells the
  leg's transaction 480, as for an answer too soon; the desk rings on.

Workers start a confirmation and may end it (CANCEL, BYE); the timer process confirms or
times it out. The state of each is one htable entry, so whoever ends it first wins.
"""
from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import KSR

from . import sipmsg
from .kemi import Htable, pv
from .records import plain, to_json

CONFIRM_WINDOW_S = 6                # from the answer to the key: a few seconds, then dropped
CONFIRM_DIGIT = 1                   # RFC 4733 event 1
DTMF_HELD_S = 1.0                   # the key's last packets (RFC 4733 repeats its end) stay
                                    # from the caller this long after the leg is let through
QUEUE = "confirm"                   # mqueue: confirmations started, for the timer process
TABLE = "twin"                      # htable entries c:<Call-ID>
NOT_CONFIRMED = "Not Confirmed"
PROMPT = Path(__file__).resolve().parent.parent / "kamailio" / "prompts" / "press-1.wav"


@dataclass
class Pending:
    call_id: str
    leg_tag: str                    # the mobile's To-tag: its monologue in rtpengine
    held: str                       # the 2xx, as it came
    target: str                     # where BYE goes (the mobile's Contact) ...
    next_hop: str                   # ... through the routes beyond the proxy
    bye: str
    refusal: str                    # the 480 for the leg's transaction
    plan: dict                      # routing.twinleg.LegPlan
    answered_ms: int                # when the leg answered (epoch ms)
    deadline: float                 # epoch s

    def to_json(self) -> str:
        return to_json(self)


def digit_of(datagram: bytes) -> tuple[str, str, int] | None:
    """(Call-ID, source tag, event) of one rtpengine DTMF report; None if it is not one."""
    try:
        event = json.loads(datagram)
        if event.get("type") != "DTMF":
            return None
        return str(event["callid"]), str(event["source_tag"]), int(event["event"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class Confirmations:
    def __init__(self, cfg, media, call_log, avoided, claim):
        self.cfg = cfg
        self.claim = claim                  # routing.twinleg.claim: one answer takes a call
        self.media = media
        self.call_log = call_log
        self.avoided = avoided              # TwinLegs._avoided: the row and the counter
        self.table = Htable(TABLE)
        self.self_uri = f"sip:{cfg.proxy_address}:{cfg.proxy_port}"
        self.waiting: dict[str, float] = {}  # the timer process's own: Call-ID -> deadline
        self.dtmf_blocked: list[tuple[float, str, str]] = []   # (until, Call-ID, leg tag)
        self._sock: socket.socket | None = None

    # ---- a worker: the 2xx of a leg to confirm (core reply route) -------------------------
    def start(self, plan, ack_and_end) -> bool:
        """Hold the 2xx being handled; False when its media cannot be held (the leg then
        goes through unconfirmed: a person answered after the too-soon threshold)."""
        call_id, raw = pv("$ci"), pv("$mb")
        branches = sipmsg.via_branches(raw)
        if len(branches) < 2:
            return False
        try:
            self.media.hold_for_confirmation(call_id, pv("$ft"), pv("$tt"), pv("$rb"),
                                             branches[1], str(PROMPT))
        except Exception as exc:  # noqa: BLE001 (any rtpengine failure: do not hold the call)
            KSR.warn(f"confirmation of {plan.extension}'s twin leg not possible ({exc}): "
                     f"connected without it\n")
            return False
        end = ack_and_end(NOT_CONFIRMED)
        pending = Pending(call_id, pv("$tt"), raw, end.target, end.next_hop, end.bye,
                          sipmsg.final_reply_for(raw, 480, NOT_CONFIRMED), plain(plan),
                          int(time.time() * 1000), time.time() + CONFIRM_WINDOW_S)
        self.table.put(f"c:{call_id}", pending.to_json())
        KSR.mqueue.mq_add(QUEUE, call_id, str(pending.deadline))
        KSR.info(f"twin leg of {plan.extension} answered: waiting {CONFIRM_WINDOW_S} s for "
                 f"its {CONFIRM_DIGIT}\n")
        return True

    def _take(self, call_id: str, leg_tag: str | None = None) -> Pending | None:
        """The confirmation of the call, removed: only one of the timer and the workers ends it.
        With leg_tag, only if it is that leg's (a key or a BYE from another party is not)."""
        key = f"c:{call_id}"
        raw = self.table.get(key)
        if raw is None:
            return None
        held = Pending(**json.loads(raw))
        if leg_tag is not None and held.leg_tag != leg_tag:
            return None
        self.table.remove(key)
        return held

    def pending(self, call_id: str) -> bool:
        return self.table.get(f"c:{call_id}") is not None

    # ---- a worker: the call ends the leg ----------------------------------------------------
    def cancelled(self, call_id: str) -> None:
        """The call's CANCEL of the leg (the desk answered, the caller gave up, the ring
        timeout) while it waits for its key."""
        held = self._take(call_id)
        if held is not None:
            self._refuse(held, bye=True)
            KSR.info(f"twin leg of {held.plan['extension']}: call cancelled before the key\n")

    def leg_hung_up(self, call_id: str) -> bool:
        """A BYE from the leg (its From-tag is the leg's) while it waits: the proxy answers it.
        False when it is not such a BYE."""
        held = self._take(call_id, pv("$ft"))
        if held is None:
            return False
        KSR.sl.sl_send_reply(200, "OK")
        self._refuse(held, bye=False)
        self._avoided(held)
        return True

    # ---- the timer process: keys and time ---------------------------------------------------
    def tick(self) -> None:
        while KSR.mqueue.mq_fetch(QUEUE) > 0:
            self.waiting[str(KSR.mqueue.mqk_get(QUEUE))] = float(str(KSR.mqueue.mqv_get(QUEUE)))
        for call_id, tag in self._ones():
            self._confirmed(call_id, tag)
        now = time.time()
        for entry in [e for e in self.dtmf_blocked if e[0] <= now]:
            self.dtmf_blocked.remove(entry)
            try:
                self.media.client.unblock_dtmf(entry[1], from_tag=entry[2])
            except Exception as exc:  # noqa: BLE001 (the call may be over by now)
                KSR.dbg(f"confirmed twin leg: DTMF not unblocked ({exc})\n")
        for call_id in [c for c, deadline in self.waiting.items() if deadline <= now]:
            del self.waiting[call_id]
            held = self._take(call_id)
            if held is not None:
                KSR.info(f"twin leg of {held.plan['extension']}: no {CONFIRM_DIGIT} in "
                         f"{CONFIRM_WINDOW_S} s, ended by the proxy\n")
                self._refuse(held, bye=True)
                self._avoided(held)

    def _ones(self) -> list[tuple[str, str]]:
        """(Call-ID, tag) of every "1" rtpengine reported since the last tick."""
        sock = self._socket()
        ones = []
        while sock is not None:
            try:
                datagram = sock.recv(4096)
            except BlockingIOError:
                break
            except OSError as exc:
                KSR.warn(f"DTMF events: {exc}\n")
                break
            digit = digit_of(datagram)
            if digit and digit[2] == CONFIRM_DIGIT and digit[0] in self.waiting:
                ones.append(digit[:2])
        return ones

    def _socket(self) -> socket.socket | None:
        if self._sock is None:
            where = self.cfg.rtpengine_dtmf
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((where.host, where.port))
            except OSError as exc:
                KSR.err(f"DTMF events: cannot listen on udp {where} ({exc}): twin legs "
                        f"cannot be confirmed\n")
                sock.close()
                return None
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def _confirmed(self, call_id: str, tag: str) -> None:
        held = self._take(call_id, tag)
        if held is None:
            return                          # ended meanwhile, or another party's key
        self.waiting.pop(call_id, None)
        if not self.claim(call_id, held.leg_tag, ""):
            KSR.info(f"twin leg of {held.plan['extension']} confirmed, but the call was "
                     f"answered elsewhere: ended by the proxy\n")
            self._refuse(held, bye=True)
            return
        try:
            self.media.release_confirmed(call_id, held.leg_tag)
        except Exception as exc:  # noqa: BLE001
            KSR.warn(f"confirmed twin leg: media not released ({exc})\n")
        self.dtmf_blocked.append((time.time() + DTMF_HELD_S, call_id, held.leg_tag))
        KSR.info(f"twin leg of {held.plan['extension']} confirmed after "
                 f"{int(time.time() * 1000) - held.answered_ms} ms: connected\n")
        # The held 2xx, given back to the proxy: the guard lets the proxy's own through.
        KSR.corex.send_data(self.self_uri, held.held)

    # ---- ending a held leg ------------------------------------------------------------------
    def _refuse(self, held: Pending, bye: bool) -> None:
        if bye:
            KSR.tm.t_uac_send("BYE", held.target, held.next_hop, "", held.bye, "")
        KSR.corex.send_data(self.self_uri, held.refusal)

    def _avoided(self, held: Pending) -> None:
        self.avoided(held.plan, "not-confirmed",
                     max(0, int(time.time() * 1000) - held.answered_ms), held.call_id)

    def abandoned(self, call_id: str) -> None:
        """The leg's transaction is over without it (it rang its maximum out while waiting
        for the key): only the mobile's dialog is left to end."""
        held = self._take(call_id)
        if held is not None:
            KSR.tm.t_uac_send("BYE", held.target, held.next_hop, "", held.bye, "")
