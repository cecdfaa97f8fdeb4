"""Routing decisions as pure functions: plain data in, a decision out. Nothing here touches
KSR, the database or the network, so every rule is unit-tested directly."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from twinning import licence
from twinning.numbers import is_dialable_twin, normalize_nanp


@dataclass(frozen=True)
class Subscriber:
    """What routing needs of a subscriber: its identity, current status and twin."""
    id: int
    extension: str
    did: str
    display_name: str
    license: str
    voicemail_box: str
    ring_timeout: int
    status: str
    send_to: str            # ring-group | voicemail
    ring_desk: bool
    ring_mobile: bool
    twin_number: Optional[str] = None
    twin_label: Optional[str] = None
    # How the twin leg is kept from the mobile's voicemail (see routing.twinleg).
    answer_too_soon_ms: int = 1500
    mobile_ring_max_s: int = 19
    mobile_confirm: bool = False
    mobile_delay_s: int = 0             # of the current status: the desk rings alone first


class Dialled(Enum):
    HANDOFF = "handoff"
    EMERGENCY = "emergency"
    EXTENSION = "extension"
    NUMBER = "number"       # a North American number in E.164: one of our DIDs or external
    INVALID = "invalid"


@dataclass(frozen=True)
class Target:
    kind: Dialled
    value: str              # the extension, the E.164 number, the code as dialled


def classify_dialled(user: str, handoff_code: str, emergency: tuple[str, ...]) -> Target:
    user = (user or "").strip()
    if user == handoff_code:
        return Target(Dialled.HANDOFF, user)
    if user in emergency:
        return Target(Dialled.EMERGENCY, user)
    if len(user) == 4 and user.isdigit():
        return Target(Dialled.EXTENSION, user)
    e164 = normalize_nanp(user)
    if e164:
        return Target(Dialled.NUMBER, e164)
    return Target(Dialled.INVALID, user)


@dataclass(frozen=True)
class RingDecision:
    desk: bool
    mobile: bool
    timeout: int
    reason: str             # why, for the log and the call record

    @property
    def voicemail_now(self) -> bool:
        return not (self.desk or self.mobile)


def decide_ring(sub: Subscriber, desk_registered: bool, twin_legs_in_use: int,
                max_twin_legs: int, allowed_countries: tuple[str, ...] = ()) -> RingDecision:
    """Who rings for a call to this subscriber, following its current status.

    The mobile rings only when the status's ring group ticks it, a twin is set, the license is
    entry-ucc or higher, the number passes the toll-fraud guard (allowed_countries: the site's
    [calls] allowed_nanp_countries) and the subscriber has a twin leg to spare. With nobody to
    ring, the call goes to voicemail at once.
    """
    if sub.send_to == "voicemail":
        return RingDecision(False, False, sub.ring_timeout, f"status {sub.status}: voicemail")
    desk = sub.ring_desk and desk_registered
    mobile = False
    why_not_mobile = ""
    if not sub.ring_mobile:
        why_not_mobile = "mobile not ticked"
    elif not sub.twin_number:
        why_not_mobile = "no twin set"
    elif not licence.allows_twinning(sub.license):
        why_not_mobile = f"license {sub.license} below {licence.TWINNING_MIN}"
    elif not is_dialable_twin(sub.twin_number, allowed_countries):
        why_not_mobile = f"twin {sub.twin_number} refused by the toll-fraud guard"
    elif twin_legs_in_use >= max_twin_legs:
        why_not_mobile = f"{twin_legs_in_use} twin legs in use (max {max_twin_legs})"
    else:
        mobile = True
    parts = []
    if sub.ring_desk and not desk_registered:
        parts.append("desk not registered")
    if why_not_mobile and sub.ring_mobile:
        parts.append(why_not_mobile)
    rung = [name for name, on in (("desk", desk), ("mobile", mobile)) if on]
    reason = f"status {sub.status}: ring {'+'.join(rung) or 'nobody'}"
    if parts:
        reason += f" ({'; '.join(parts)})"
    return RingDecision(desk, mobile, sub.ring_timeout, reason)


def diversion_header(did: str, domain: str, reason: str) -> str:
    """RFC 5806 Diversion naming the subscriber's DID (carriers attest diverted calls by it)."""
    return f"Diversion: <sip:{did}@{domain}>;reason={reason};counter=1;privacy=off\r\n"


def asserted_identity_header(number: str, name: str, domain: str) -> str:
    safe = name.replace('"', "").replace("\\", "")
    display = f'"{safe}" ' if safe else ""
    return f"P-Asserted-Identity: {display}<sip:{number}@{domain}>\r\n"


def gateway_failed(final_code: int) -> bool:
    """A gateway's answer that means "try the next gateway" (5xx, or no answer at all)."""
    return final_code >= 500 or final_code == 408


def voicemail_reason(final_code: int) -> str:
    """Diversion reason for the voicemail leg, from how the ring group ended."""
    return "user-busy" if final_code in (486, 600) else "no-answer"
