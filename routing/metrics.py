"""The routing's own Prometheus metrics (docs/metrics.md), kept by Kamailio's xhttp_prom module
in shared memory: every worker adds to the same series, and GET /metrics on the metrics
listener shows them beside Kamailio's own statistics. The names are declared once, by
modparam in kamailio/kamailio.cfg; xhttp_prom shows each with the prefix `kamailio_`."""
from __future__ import annotations

import KSR

TWINNED = "twinning_twinned_calls_total"
ANSWERED = "twinning_answered_calls_total"               # label device
HANDOFFS = "twinning_handoffs_total"                     # labels direction, outcome
SWITCH_MS = "twinning_handoff_switch_ms"                 # histogram, label direction
VOICEMAIL_AVOIDED = "twinning_voicemail_avoided_calls_total"   # labels leg, reason

DEVICES = ("desk", "mobile", "voicemail")
DIRECTIONS = ("desk_to_mobile", "mobile_to_desk")
OUTCOMES = ("completed", "declined", "no-answer", "cancelled", "failed")
LEGS = ("twin", "handoff")                               # routing.twinleg.LegPlan.leg
OVERLOAD = "twinning_overload_refused_calls_total"      # label rule
ENGINE_IN_SET = "twinning_rtpengine_in_set"              # gauge, label engine (a cluster's)
RULES = ("queue", "rate")                                # routing.overload
AVOIDED = ("answered-too-soon", "rang-too-long", "not-confirmed")   # why a leg was ended
SECURITY_REFUSED = "twinning_security_refused_total"     # label reason (routing.security)
SECURITY_REASONS = ("unknown-dialog", "relay-denied", "contact-not-allowed",
                    "refer-not-from-desk")               # routing.security names them


def direction(from_device: str, to_device: str) -> str:
    return f"{from_device}_to_{to_device}"


class Metrics:
    """Counting never fails a call: a refused update is logged by the module and ignored."""

    @staticmethod
    def declare_series() -> None:
        """Every labelled series at 0 (adding 0 creates a series without touching a count
        another worker made), so a scrape shows them before their first event."""
        KSR.xhttp_prom.counter_inc_l0(TWINNED, 0)
        for device in DEVICES:
            KSR.xhttp_prom.counter_inc_l1(ANSWERED, 0, device)
        for way in DIRECTIONS:
            for outcome in OUTCOMES:
                KSR.xhttp_prom.counter_inc_l2(HANDOFFS, 0, way, outcome)
        for rule in RULES:
            KSR.xhttp_prom.counter_inc_l1(OVERLOAD, 0, rule)
        for leg in LEGS:
            for reason in AVOIDED:
                KSR.xhttp_prom.counter_inc_l2(VOICEMAIL_AVOIDED, 0, leg, reason)
        for reason in SECURITY_REASONS:
            KSR.xhttp_prom.counter_inc_l1(SECURITY_REFUSED, 0, reason)

    @staticmethod
    def twinned_call() -> None:
        KSR.xhttp_prom.counter_inc_l0(TWINNED, 1)

    @staticmethod
    def answered(device: str) -> None:
        KSR.xhttp_prom.counter_inc_l1(ANSWERED, 1, device)

    @staticmethod
    def handoff(way: str, outcome: str, switch_ms: float | None = None) -> None:
        KSR.xhttp_prom.counter_inc_l2(HANDOFFS, 1, way, outcome)
        if switch_ms is not None:
            KSR.xhttp_prom.histogram_observe_l1(SWITCH_MS, f"{switch_ms:.3f}", way)

    @staticmethod
    def voicemail_avoided(leg: str, reason: str) -> None:
        KSR.xhttp_prom.counter_inc_l2(VOICEMAIL_AVOIDED, 1, leg, reason)

    @staticmethod
    def engine_in_set(url: str, in_set: bool) -> None:
        KSR.xhttp_prom.gauge_set_l1(ENGINE_IN_SET, "1" if in_set else "0", url)

    @staticmethod
    def refused_overload(rule: str) -> None:
        KSR.xhttp_prom.counter_inc_l1(OVERLOAD, 1, rule)

    @staticmethod
    def refused_security(reason: str) -> None:
        KSR.xhttp_prom.counter_inc_l1(SECURITY_REFUSED, 1, reason)
