"""The twin leg: the INVITE to the subscriber's mobile, in a transaction of its own, so that
what the mobile's carrier does with it (its voicemail answering, ringing on and on) is judged
by the proxy before the caller hears of it. See docs/voicemail-avoidance.md.

The call's own transaction (the twin ring's, or the handoff's INVITE the proxy sends) gives
the mobile's branch to the proxy itself: sip:tw-<token>@proxy, a spiral. What that leg is to
do (number, subscriber, its rules) waits in the htable `twin` under the one-time token; only
the proxy itself may take it. The leg's transaction then relays the INVITE to the trunk:

- answered too soon (sooner than `answer_too_soon_ms` after its INVITE left): the carrier's
  voicemail. The 2xx is dropped before tm sees it (core reply route); the proxy ACKs and BYEs
  that leg itself and tells the leg's transaction "480" in its place, so the call's other
  branches (the desk) ring on and an unanswered call goes to the subscriber's own mailbox;
- rang too long: the leg's transaction has its own fr_inv timer, `mobile_ring_max_s`, below
  the 20-30 s after which carriers' voicemail answers; the desk rings on;
- ring the desk first: the leg waits `mobile_delay_s` (the status's) before it leaves;
- early media of the leg (a carrier's announcement) never reaches the caller: its
  provisional replies lose their SDP.

The leg's replies are told from every other reply of the call by what only they carry: the
leg's INVITE came in on the spiral with the proxy's own Via of the call's transaction on top
(its branch, kept with the leg), and the trunk's replies to the leg carry that Via second,
under the leg transaction's own. A desk's reply has the call's Via second, never that one; the
Call-ID is the same for both and tells nothing (issue 23: a desk answering while the mobile
rang was taken for the mobile and hung up on).

One answer wins: a call with a twin leg keeps its answerer's To-tag (w:<Call-ID>, in the
table of ended legs), claimed under the entry's lock by the first 2xx the guard lets through.
A later 2xx of another answerer (the mobile a moment after the desk, or the desk after the
mobile) is ended by the proxy ("Call completed elsewhere") and never reaches the caller.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import KSR

from . import decisions as rules
from . import sipmsg
from .confirm import Confirmations
from .kemi import DONE, NEXT, Htable, pv
from .records import to_json, token

LOOP_PREFIX = "tw-"                 # user part of the spiral's R-URI
PLAN_AVP = "$avp(tw_leg)"           # the leg's plan, in the leg's own transaction
SPIRAL_AVP = "$avp(tw_spiral)"      # the branch of the call's Via the leg's INVITE came with
LIVE_TABLE = "twin"                 # plans (p:<token>) and legs ringing (l:<Call-ID>)
GONE_TABLE = "twin_gone"            # legs the proxy ended: their 2xx retransmissions dropped
GONE_S = 32                         # 64*T1: how long a UAS retransmits a 2xx without ACK
AVOIDED_REASON = "Answered Too Soon"
ELSEWHERE = "Call completed elsewhere"
WINNER_PREFIX = "w:"                # twin_gone: the To-tag of the answer a call took
WINNER_EXTRA_S = 40                 # a claim outlives the ring by the 2xx's retransmissions


@dataclass
class LegPlan:
    leg: str                        # twin | handoff
    number: str                     # the mobile, E.164
    extension: str
    sub_id: int
    soon_ms: int                    # answer_too_soon_ms (0: off)
    ring_max_s: int
    delay_s: int = 0
    confirm: bool = False

    @classmethod
    def for_subscriber(cls, leg: str, sub: rules.Subscriber, delay_s: int = 0) -> "LegPlan":
        return cls(leg, sub.twin_number or "", sub.extension, sub.id, sub.answer_too_soon_ms,
                   sub.mobile_ring_max_s, delay_s, sub.mobile_confirm)

    def to_json(self) -> str:
        return to_json(self)

    @classmethod
    def from_json(cls, raw: str) -> "LegPlan":
        return cls(**json.loads(raw))


def now_ms() -> int:
    return int(time.time() * 1000)


class TwinLegs:
    def __init__(self, cfg, call_log, metrics=None, media=None):
        self.cfg = cfg
        self.call_log = call_log
        self.metrics = metrics
        self.confirm = Confirmations(cfg, media, call_log, lambda plan, reason, ms, call_id:
                                     self._avoided(LegPlan(**plan), reason, ms, call_id),
                                     claim)
        self.live = Htable(LIVE_TABLE)
        self.host, self.port = cfg.proxy_address, int(cfg.proxy_port)
        self.self_uri = f"sip:{self.host}:{self.port}"

    # ---- the call's side: where the leg is sent -------------------------------------------
    def plan(self, plan: LegPlan, call_id: str = "", ring_s: int = 0) -> str:
        """Keep the leg's plan; the URI the call's transaction sends the leg to. With the
        call's Call-ID (a twin ring: the desk and the leg ring side by side), the call's
        answers are claimed from now on, one wins, for as long as the call may ring."""
        key = token()
        self.live.put(f"p:{key}", plan.to_json())
        if call_id:
            KSR.htable.sht_setxs(GONE_TABLE, WINNER_PREFIX + call_id, "",
                                 ring_s + plan.delay_s + WINNER_EXTRA_S)
        return f"sip:{LOOP_PREFIX}{key}@{self.host}:{self.port}"

    @staticmethod
    def is_leg_uri_user(user: str) -> bool:
        return user.startswith(LOOP_PREFIX)

    def from_self(self) -> bool:
        return pv("$si") == self.host and pv("$sp") == str(self.port)

    # ---- the leg's own transaction -----------------------------------------------------------
    def request(self, method: str) -> bool:
        """Request route: an INVITE of the spiral takes its plan and leaves (now, or after
        the status's delay). NEXT for anything else."""
        if method != "INVITE":
            return NEXT
        user = pv("$rU")
        if not self.is_leg_uri_user(user) \
                or KSR.siputils.has_totag() > 0:
            return NEXT
        key = f"p:{user[len(LOOP_PREFIX):]}"
        raw = self.live.get(key) if self.from_self() else None
        if raw is None:                 # not ours, or replayed: nobody may place a twin leg
            KSR.sl.sl_send_reply(403, "Forbidden")
            return DONE
        self.live.remove(key)
        KSR.pv.sets(PLAN_AVP, raw)
        KSR.pv.sets(SPIRAL_AVP, pv("$sel(via[1].branch)"))
        plan = LegPlan.from_json(raw)
        KSR.tm.t_newtran()
        if plan.delay_s > 0:
            KSR.tm.t_reply(100, "Trying")     # the call's CANCEL must reach this leg
            # `async` is a Python keyword: the module's KSR attribute is reached by name. The
            # transaction is suspended; a core async worker resumes it in ksr_twinleg_go.
            if getattr(KSR, "async").ms_route("ksr_twinleg_go", plan.delay_s * 1000) < 0:
                KSR.tm.t_reply(500, "Server Internal Error")
            return DONE
        return self.go()

    def go(self) -> bool:
        """Relay the leg to the trunk (also where a delayed leg resumes)."""
        if KSR.tm.t_is_canceled() > 0:
            return DONE
        plan = LegPlan.from_json(pv(PLAN_AVP))
        KSR.pv.sets("$ru", f"sip:{plan.number}@{self.cfg.sip_domain}")
        if KSR.dispatcher.ds_select_domain(self.cfg.dispatcher_set, 8) < 0:
            KSR.warn(f"no trunk for the twin leg of {plan.extension}\n")
            KSR.tm.t_reply(503, "No Trunk Available")
            return DONE
        KSR.tm.t_set_fr(plan.ring_max_s * 1000, 0)
        self._relay()
        return DONE

    def _relay(self) -> None:
        KSR.tm.t_on_branch("ksr_branch_twinleg")
        KSR.tm.t_on_reply("ksr_reply_twinleg")
        KSR.tm.t_on_branch_failure("ksr_branch_failure_twinleg")
        KSR.tm.t_on_failure("ksr_failure_twinleg")
        if KSR.tm.t_relay() < 0:
            KSR.tm.t_reply(500, "Server Internal Error")

    def branch(self) -> None:
        """The leg leaves for a gateway: from now on its answer is timed."""
        # The plan as it came (already JSON), not parsed and written again.
        self.live.put(f"l:{pv('$ci')}", f'{{"sent":{now_ms()},"spiral":"{pv(SPIRAL_AVP)}",'
                      f'"plan":{pv(PLAN_AVP)}}}')

    def reply(self) -> None:
        """A reply the leg's transaction let through (a person answered, or it failed). Its
        media is the call's transaction's (each branch its own, as for the desk)."""
        if int(pv("$rs") or 0) >= 200:
            self.live.remove(f"l:{pv('$ci')}")
        elif KSR.textops.has_body_type("application/sdp") > 0:
            # Early media of the leg (a carrier's announcement) is not for the caller.
            KSR.textopsx.remove_body()
            KSR.textops.remove_hf("Content-Type")

    def branch_failure(self) -> None:
        """The leg failed on one gateway (5xx, or no reply at all): the next gateway. A leg
        that rang its `mobile_ring_max_s` out is over."""
        code = int(pv("$T_reply_code") or 0)
        plan = LegPlan.from_json(pv(PLAN_AVP))
        if KSR.tm.t_is_canceled() > 0:
            return
        if KSR.tm.t_branch_timeout() > 0 and self.confirm.pending(pv("$ci")):
            self.confirm.abandoned(pv("$ci"))       # answered, but its key came too late
            return
        if KSR.tm.t_branch_timeout() > 0 and KSR.tm.t_branch_replied() > 0:
            sent = self._sent_ms(pv("$ci"))
            KSR.info(f"twin leg of {plan.extension} rang {plan.ring_max_s} s: cancelled\n")
            self._avoided(plan, "rang-too-long",
                          max(0, now_ms() - sent) if sent else plan.ring_max_s * 1000)
            return
        if not rules.gateway_failed(code):
            return
        KSR.pv.sets("$ru", f"sip:{plan.number}@{self.cfg.sip_domain}")
        if KSR.dispatcher.ds_next_domain() < 0:
            return
        KSR.xlog.xlog("L_INFO", f"twin leg failed with {code}: next gateway $ru\n")
        self._relay()

    def cancelling(self) -> None:
        """The call's CANCEL of a leg (request route): a leg waiting for its key ends now."""
        if self.is_leg_uri_user(pv("$rU")) and self.confirm.pending(pv("$ci")):
            self.confirm.cancelled(pv("$ci"))

    def failure(self) -> None:
        """The leg failed on every gateway. tm would relay a winning 503 as 500 (RFC 3261
        16.7): a trunk that is out of service is said so to the call's transaction."""
        self.live.remove(f"l:{pv('$ci')}")
        if int(pv("$T_reply_code") or 0) == 503 and KSR.tm.t_is_canceled() <= 0:
            KSR.tm.t_reply(503, "Service Unavailable")

    def _sent_ms(self, call_id: str) -> int:
        raw = self.live.get(f"l:{call_id}")
        return int(json.loads(raw)["sent"]) if raw else 0

    # ---- core reply route: the 2xx tm must not see ------------------------------------------
    def guard(self) -> bool:
        """Every reply, before tm: NEXT to let it on, DONE when the proxy took it."""
        if not 200 <= int(pv("$rs") or 0) < 300 or pv("$rm") != "INVITE" or self.from_self():
            return NEXT             # the proxy's own: the spiral's relay, a confirmed leg
        call_id = pv("$ci")
        gone = KSR.htable.sht_get(GONE_TABLE, call_id)
        if gone:
            ended = json.loads(str(gone))
            if ended["to_tag"] == pv("$tt"):        # the 2xx again: our ACK was lost
                self._send(ended["target"], ended["next_hop"], "ACK", ended["ack"])
                return DONE
        leg = self._leg_answering(call_id)
        if leg is None:                             # not the leg's: the desk, or no twin leg
            return self._claimed(call_id, None)
        plan = LegPlan(**leg["plan"])
        elapsed = max(0, now_ms() - int(leg["sent"]))
        if plan.soon_ms and elapsed < plan.soon_ms:
            self.end_leg(plan, "answered-too-soon", elapsed, AVOIDED_REASON)
            return DONE
        # A handoff's leg is not confirmed: the subscriber pressed Handoff and expects the
        # mobile; its media is the handoff's own (see docs/voicemail-avoidance.md).
        if plan.confirm and plan.leg == "twin" and self.confirm.start(plan, self._ack_leg):
            self.live.remove(f"l:{call_id}")
            return DONE
        return self._claimed(call_id, plan)

    def _leg_answering(self, call_id: str) -> dict | None:
        """The ringing leg this 2xx answers (its second Via is the call's Via the leg came
        with), or None: a 2xx of any other branch of the call, or of a call without a leg."""
        raw = self.live.get(f"l:{call_id}")
        if raw is None:
            return None
        leg = json.loads(raw)
        spiral = leg.get("spiral")
        if not spiral or pv("$sel(via[2].branch)") != spiral:
            return None
        return leg

    def _claimed(self, call_id: str, plan: LegPlan | None) -> bool:
        """NEXT when this 2xx is the call's answer (the first, or the winner's again, or a
        2xx within the winner's dialog); DONE when another answer took the call first: the
        proxy ends this one."""
        if claim(call_id, pv("$tt"), pv("$ft")):
            return NEXT
        KSR.info(f"second answer of {call_id} (to-tag {pv('$tt')}): another answer took the "
                 f"call, ended by the proxy\n")
        if plan is not None:                        # the mobile, just after the desk
            self.end_leg(plan, "answered-elsewhere", 0, ELSEWHERE, refusal=487, record=False)
        else:                                       # the desk, just after the mobile
            self.end_answer(ELSEWHERE)
        return DONE

    def _ack_leg(self, phrase: str) -> sipmsg.LegEnd:
        """ACK the 2xx being handled in the caller's place (again for each retransmission
        of it, for 32 s). Returns how to end that dialog."""
        end = sipmsg.leg_end(pv("$mb"), self.host, phrase)
        KSR.htable.sht_setxs(GONE_TABLE, pv("$ci"), json.dumps(
            {"to_tag": pv("$tt"), "target": end.target, "next_hop": end.next_hop,
             "ack": end.ack}, separators=(",", ":")), GONE_S)
        self._send(end.target, end.next_hop, "ACK", end.ack)
        return end

    def end_leg(self, plan: LegPlan, reason: str, elapsed: int, phrase: str,
                refusal: int = 480, record: bool = True) -> None:
        """The 2xx being handled answered a leg the caller must not get: end that dialog from
        the proxy, and tell the leg's transaction it failed."""
        call_id = pv("$ci")
        self.end_answer(phrase, refusal)
        self.live.remove(f"l:{call_id}")
        KSR.info(f"twin leg of {plan.extension} ({plan.leg}) answered after {elapsed} ms: "
                 f"{reason}, ended by the proxy\n")
        if record:
            self._avoided(plan, reason, elapsed)

    def end_answer(self, phrase: str, refusal: int = 487) -> None:
        """End the dialog the 2xx being handled set up (ACK, BYE), and tell the transaction
        it answers (the call's or the leg's) that its branch failed with `refusal`."""
        raw = pv("$mb")
        end = self._ack_leg(phrase)
        self._send(end.target, end.next_hop, "BYE", end.bye)
        reason = "Request Terminated" if refusal == 487 else phrase
        KSR.corex.send_data(self.self_uri, sipmsg.final_reply_for(raw, refusal, reason))

    def _avoided(self, plan: LegPlan, reason: str, elapsed_ms: int,
                 call_id: str | None = None) -> None:
        self.call_log.avoided(call_id or pv("$ci"), plan.sub_id, plan.leg, reason, elapsed_ms)
        if self.metrics is not None:
            self.metrics.voicemail_avoided(plan.leg, reason)

    @staticmethod
    def _send(target: str, next_hop: str, method: str, headers: str) -> None:
        KSR.tm.t_uac_send(method, target, next_hop, "", headers, "")


def claim(call_id: str, to_tag: str, from_tag: str) -> bool:
    """Whether the 2xx of `to_tag` may answer the call: no twin leg (nothing to claim), the
    first answer (it takes the call), or a 2xx within the winner's dialog (a retransmission,
    a re-INVITE's answer either way). Atomic under the entry's lock: of two answers in the
    same millisecond exactly one wins."""
    key = WINNER_PREFIX + call_id
    winner = KSR.htable.sht_get(GONE_TABLE, key)
    if winner is None:
        return True
    if winner != "":
        return str(winner) in (to_tag, from_tag)
    KSR.htable.sht_lock(GONE_TABLE, key)
    try:
        winner = KSR.htable.sht_get(GONE_TABLE, key)
        if winner == "":
            # Kept with what is left of the entry's lifetime: as long as the 2xx may come again.
            KSR.htable.sht_sets(GONE_TABLE, key, to_tag)
            return True
        return winner is None or str(winner) in (to_tag, from_tag)
    finally:
        KSR.htable.sht_unlock(GONE_TABLE, key)
