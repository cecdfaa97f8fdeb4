"""The state of a stitched call (see routing.handoff.model for what it is and how it moves):
legs, phases, and every htable key of the shared call state."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Optional

from ..records import to_json, token
from .actions import Send


TARGET_REFRESH = ("INVITE", "UPDATE", "NOTIFY", "SUBSCRIBE", "REFER")
LEG_PREFIX = "twho-"        # Call-IDs of the legs the proxy originates: cheap to recognise


class Device(str, Enum):
    DESK = "desk"
    MOBILE = "mobile"
    FAR = "far"

    def other(self) -> "Device":
        return Device.MOBILE if self is Device.DESK else Device.DESK


class Side(str, Enum):
    """The far end's role in D1."""
    CALLER = "caller"
    CALLEE = "callee"


class Phase(str, Enum):
    CONNECTED = "connected"     # the original near end is in D1; the proxy only watches
    RINGING = "ringing"         # a handoff to the mobile rings; the near end keeps talking
    STITCHED = "stitched"       # the proxy stands in for the departed device in D1
    ENDED = "ended"


class Outcome(str, Enum):
    COMPLETED = "completed"
    DECLINED = "declined"
    NO_ANSWER = "no-answer"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @classmethod
    def of_reply(cls, code: int) -> "Outcome":
        if code in (486, 600, 603):
            return cls.DECLINED
        if code in (408, 480, 487):
            return cls.NO_ANSWER
        return cls.FAILED


class Sender(Enum):
    FAR = "far"                 # the other party, in D1
    NEAR = "near"               # the current near-end device
    DEPARTED = "departed"       # a device that left in a handoff
    OTHER = "other"


# ---- state -------------------------------------------------------------------------------------

@dataclass
class Leg:
    """One party's dialog as the proxy sees it."""
    device: Device
    call_id: str                # D1's Call-ID, or the proxy's own leg's
    tag: str                    # the party's own tag (also its rtpengine tag)
    contact: str                # its remote target: where requests to it go
    uri: str                    # its URI (To of requests the proxy sends it)
    local_uri: str              # who the proxy speaks as in this dialog (From)
    local_tag: str
    cseq: int = 1               # the last CSeq number the party has seen from our side
    shift: int = 0              # numbers the proxy used up in its direction (relays add them)
    sdp: str = ""               # its last SDP (answers a far-end re-INVITE)
    given_sdp: str = ""         # the SDP the proxy gave it (answers its re-INVITE)
    local_contact: str = ""     # the Contact the party knows for our side (its target)

    def request(self, method: str, body: str = "", extra: str = "",
                count: bool = True) -> "Send":
        """The next in-dialog request the proxy sends this party. `count`: the number is
        also used up in a dialog the proxy relays (see the CSeq rule in model.py). Target
        refresh requests carry the Contact the party already has for our side, so speaking
        for someone never moves the party's target."""
        self.cseq += 1
        if count:
            self.shift += 1
        if method in TARGET_REFRESH and self.local_contact:
            extra = f"Contact: <{self.local_contact}>\r\n{extra}"
        headers = (f"From: <{self.local_uri}>;tag={self.local_tag}\r\n"
                   f"To: <{self.uri}>;tag={self.tag}\r\n"
                   f"Call-ID: {self.call_id}\r\n"
                   f"CSeq: {self.cseq} {method}\r\n"
                   f"Max-Forwards: 70\r\n{extra}")
        return Send(method, self.contact, headers, body)


@dataclass
class Pending:
    """A handoff to the mobile under way: the mobile is ringing."""
    leg_call_id: str
    local_tag: str
    helper_tag: str             # rtpengine: the fresh tag the new device's media hangs off
    via_branch: str
    handoff_id: str = ""        # the handoff row's key in the call log
    code_call: str = ""         # the desk's INVITE to the code that asked for it, if it was
    code_cseq: str = ""         # dialled rather than a REFER: answered when the handoff ends
    started_at: float = 0.0     # when the mobile was rung (seconds since the epoch)
    offer_sdp: str = ""         # the SDP the proxy offered the mobile


@dataclass
class StitchedCall:
    call_id: str                # D1
    extension: str
    far: Leg
    near: Leg
    far_side: Side
    d1_tags: tuple[str, str]    # D1's (From tag, To tag): how the dialog module keys it
    far_number: str             # shown to the mobile when the call moves there
    far_name: str = ""
    phase: Phase = Phase.CONNECTED
    far_held: bool = False      # the near end last put the far end on hold
    departed: list[str] = field(default_factory=list)   # "call-id tag" of devices that left
    legs: list[str] = field(default_factory=list)       # every leg Call-ID keyed to this call
    pending: Optional[Pending] = None
    handoffs: int = 0

    @property
    def stitched(self) -> bool:
        return self.near.call_id != self.call_id

    def to_json(self) -> str:
        return to_json(self)

    @classmethod
    def from_json(cls, text: str) -> "StitchedCall":
        data = json.loads(text)
        for end in ("far", "near"):
            data[end] = Leg(**{**data[end], "device": Device(data[end]["device"])})
        data["pending"] = Pending(**data["pending"]) if data.get("pending") else None
        data["phase"], data["far_side"] = Phase(data["phase"]), Side(data["far_side"])
        data["d1_tags"] = tuple(data["d1_tags"])
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# ---- htable keys: every key of the shared call state is built here -----------------------------

def call_key(d1: str) -> str:
    return f"c:{d1}"


def leg_key(call_id: str) -> str:
    """A leg the proxy made or accepted, or a pending code call → D1."""
    return f"l:{call_id}"


def device_key(extension: str, device: Device) -> str:
    """The subscriber's call whose near end is that device (how the code finds it)."""
    return f"s:{extension}:{device.value}"


def state_of(call: StitchedCall) -> tuple[dict[str, str], list[str]]:
    """The htable entries that describe a call now, and those that may have described it
    before and no longer do."""
    values = {call_key(call.call_id): call.to_json(),
              device_key(call.extension, call.near.device): call.call_id}
    current = [call.near.call_id] + ([call.pending.leg_call_id] if call.pending else [])
    values.update({leg_key(c): call.call_id for c in current if c != call.call_id})
    gone = [device_key(call.extension, call.near.device.other())]
    return values, gone


def all_keys(call: StitchedCall) -> list[str]:
    """Every key the call may have used, for its release."""
    return ([call_key(call.call_id)]
            + [device_key(call.extension, d) for d in (Device.DESK, Device.MOBILE)]
            + [leg_key(c) for c in call.legs])


def new_tag(prefix: str) -> str:
    return f"{prefix}{token()[:16]}"


def new_leg_call_id(domain: str) -> str:
    return f"{LEG_PREFIX}{token()}@{domain}"
