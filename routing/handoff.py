"""The stitched call: the model behind handoff, as plain data and pure functions.

Every answered call through the proxy has a far end (the other party: its dialog and its RTP
stream are never disturbed) and a near end (the subscriber's device now: desk or mobile). A
handoff replaces the near end. After the first handoff the original near-end device has left
the far end's dialog ("D1"), so the proxy stands in for it there, and the new near end talks to
the proxy over a leg of its own (a dialog the proxy originated to the mobile, or accepted from
the desk). This module decides what each request of such a call means and builds the messages
the proxy sends; routing.adapter carries them out with KSR, and the state lives in Kamailio's
shared-memory htable (every worker sees it) as the JSON of `StitchedCall`.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Optional

LEG_PREFIX = "twho-"        # Call-IDs of the legs the proxy originates: cheap to recognise


@dataclass
class Leg:
    """A near-end device's dialog as the proxy sees it: how to reach the device, what
    rtpengine calls it, and what the proxy puts in requests it sends the device there.

    In D1 the proxy speaks as the far end (local = the far end's URI and tag, cseq = the far
    end's last CSeq); on a leg of its own it speaks as itself."""
    device: str                         # desk | mobile
    call_id: str                        # D1's Call-ID, or the new leg's
    media_tag: str                      # the device's tag (its rtpengine to-tag, its SIP tag)
    contact: str = ""                   # where in-dialog requests to it go
    remote_uri: str = ""                # its URI (To of our requests)
    local_uri: str = ""                 # our URI in its dialog (From of our requests)
    local_tag: str = ""
    cseq: int = 1                       # the last CSeq used toward it from our side
    sdp: str = ""                       # its last SDP (answers a far-end re-INVITE)
    given_sdp: str = ""                 # the SDP the proxy gave it (answers its re-INVITE)

    def next_request(self, method: str, extra: str = "") -> str:
        """Headers for the next in-dialog request to this device (CSeq advanced)."""
        self.cseq += 1
        return (f"From: <{self.local_uri}>;tag={self.local_tag}\r\n"
                f"To: <{self.remote_uri}>;tag={self.media_tag}\r\n"
                f"Call-ID: {self.call_id}\r\n"
                f"CSeq: {self.cseq} {method}\r\n"
                f"Max-Forwards: 70\r\n{extra}")


@dataclass
class Pending:
    """A handoff under way (desk → mobile: the mobile is ringing)."""
    to_device: str
    leg_call_id: str
    local_tag: str
    helper_tag: str
    via_branch: str
    started_at: float
    handoff_id: Optional[str] = None   # the handoff row's key in the call log
    code_call: str = ""                 # the desk's INVITE to *55 that asked for it, if it was
    code_cseq: str = ""                 # dialled rather than a REFER: answered when it ends


@dataclass
class StitchedCall:
    call_id: str                        # D1, the far end's dialog
    extension: str
    far_tag: str
    far_side: str                       # caller | callee: the far end's role in D1
    d1_from_tag: str                    # D1 as the dialog module keys it
    d1_to_tag: str
    far_uri: str
    far_number: str                     # shown to the mobile when a call moves there
    far_name: str
    far_contact: str                    # where requests to the far end go
    near: Leg
    d1_near_uri: str = ""               # the original near end in D1: From of a BYE the proxy
    d1_near_tag: str = ""               # sends the far end when the dialog module cannot
    d1_near_cseq: int = 1
    far_held: bool = False              # the near end last put the far end on hold
    handed_off: bool = False            # True once the proxy stands in for a departed device
    departed_tags: list[str] = field(default_factory=list)   # devices that left D1
    departed_legs: list[str] = field(default_factory=list)   # proxy legs that were left
    pending: Optional[Pending] = None
    handoffs: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "StitchedCall":
        data = json.loads(text)
        data["near"] = Leg(**data["near"])
        if data.get("pending"):
            data["pending"] = Pending(**data["pending"])
        return cls(**data)


class Sender(Enum):
    FAR = "far"                 # the other party, in D1
    NEAR = "near"               # the current near-end device, on its leg
    DEPARTED = "departed"       # a device that left D1 in a handoff
    OTHER = "other"


def sender_of(call: StitchedCall, call_id: str, from_tag: str) -> Sender:
    """Who sent an in-dialog request of this call, by Call-ID and From tag."""
    if call_id == call.call_id:
        if from_tag == call.far_tag:
            return Sender.FAR
        if call.near.call_id == call.call_id and from_tag == call.near.media_tag:
            return Sender.NEAR
        if from_tag in call.departed_tags:
            return Sender.DEPARTED
        return Sender.OTHER
    if call_id == call.near.call_id:
        return Sender.NEAR
    if call_id in call.departed_legs:
        return Sender.DEPARTED
    return Sender.OTHER


def new_tag(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def new_leg_call_id(domain: str) -> str:
    return f"{LEG_PREFIX}{uuid.uuid4().hex}@{domain}"


# ---- SDP ---------------------------------------------------------------------------------------

PLACEHOLDER_CODECS = (("0", "PCMU/8000"), ("8", "PCMA/8000"), ("101", "telephone-event/8000"))


def placeholder_sdp(session_id: str) -> str:
    """The offer that opens a handoff on the far end's call: nothing real listens at it (TEST-NET
    address, port 9), it only asks rtpengine for the ports the new device will use."""
    pts = " ".join(pt for pt, _ in PLACEHOLDER_CODECS)
    lines = ["v=0", f"o=- {session_id} 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1",
             "t=0 0", f"m=audio 9 RTP/AVP {pts}"]
    lines += [f"a=rtpmap:{pt} {name}" for pt, name in PLACEHOLDER_CODECS]
    lines += ["a=fmtp:101 0-15", "a=sendrecv", "a=ptime:20"]
    return "\r\n".join(lines) + "\r\n"


def _offered(sdp: str) -> set[str]:
    """Encoding names (upper case) a device's SDP offers."""
    names = {m.group(2).split("/")[0].upper()
             for m in re.finditer(r"^a=rtpmap:(\d+) ([^\s]+)", sdp, re.M)}
    m_line = re.search(r"^m=audio \d+ [^ ]+ ([0-9 ]+)", sdp, re.M)
    static = {"0": "PCMU", "8": "PCMA", "18": "G729", "9": "G722"}
    if m_line:
        names |= {static[pt] for pt in m_line.group(1).split() if pt in static}
    return names


def restrict_codecs(sdp: str, offered_by_device: str) -> str:
    """Keep in `sdp` only the audio codecs the device offered (and their a= lines)."""
    allowed = _offered(offered_by_device)
    rtpmap = {m.group(1): m.group(2).split("/")[0].upper()
              for m in re.finditer(r"^a=rtpmap:(\d+) ([^\s]+)", sdp, re.M)}
    static = {"0": "PCMU", "8": "PCMA", "18": "G729", "9": "G722"}

    def keep(pt: str) -> bool:
        return rtpmap.get(pt, static.get(pt, "")) in allowed

    out = []
    dropped: set[str] = set()
    for line in sdp.splitlines():
        m_line = re.match(r"^(m=audio \d+ \S+) ([0-9 ]+)$", line)
        if m_line:
            pts = m_line.group(2).split()
            kept = [pt for pt in pts if keep(pt)] or pts[:1]
            dropped = set(pts) - set(kept)
            line = f"{m_line.group(1)} {' '.join(kept)}"
        else:
            attr = re.match(r"^a=(rtpmap|fmtp|rtcp-fb):(\d+)", line)
            if attr and attr.group(2) in dropped:
                continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def is_hold(sdp: str) -> bool:
    """Whether an offer puts the other side on hold (RFC 3264 sendonly/inactive, or the old
    c=0.0.0.0 form)."""
    return bool(re.search(r"^a=(sendonly|inactive)\s*$", sdp, re.M)
                or re.search(r"^c=IN IP4 0\.0\.0\.0\s*$", sdp, re.M))


def bump_origin_version(sdp: str) -> str:
    """A changed SDP must carry a higher o= version (RFC 3264)."""
    def bump(m: re.Match) -> str:
        return f"{m.group(1)}{int(m.group(2)) + 1}{m.group(3)}"
    return re.sub(r"^(o=\S+ \S+ )(\d+)( )", bump, sdp, count=1, flags=re.M)


# ---- messages the proxy sends ------------------------------------------------------------------

def _name_addr(name: str, uri: str) -> str:
    safe = (name or "").replace('"', "").replace("\\", "")
    return f'"{safe}" <{uri}>' if safe else f"<{uri}>"


def leave(call: StitchedCall, new_near: Leg) -> Leg:
    """Make `new_near` the near end; the old one is remembered as departed (its BYE, and
    anything else it still sends, is answered by the proxy). Returns the old near end."""
    old = call.near
    if old.call_id == call.call_id:
        call.departed_tags.append(old.media_tag)
    else:
        call.departed_legs.append(old.call_id)
    call.near = new_near
    call.handed_off = True
    call.handoffs += 1
    call.pending = None
    return old


def invite_to_mobile(call: StitchedCall, pending: Pending, mobile_uri: str, domain: str,
                     contact: str, did: str) -> str:
    """Headers of the INVITE the proxy sends the mobile: it shows the far end's identity."""
    far = _name_addr(call.far_name, f"sip:{call.far_number}@{domain}")
    return (f"From: {far};tag={pending.local_tag}\r\n"
            f"To: <{mobile_uri}>\r\n"
            f"Call-ID: {pending.leg_call_id}\r\n"
            f"CSeq: 1 INVITE\r\n"
            f"Contact: <{contact}>\r\n"
            f"Max-Forwards: 70\r\n"
            f"P-Asserted-Identity: {far}\r\n"
            f"Diversion: <sip:{did}@{domain}>;reason=deflection;counter=1;privacy=off\r\n"
            f"Content-Type: application/sdp\r\n")


def refer_notify(status_line: str) -> tuple[str, str]:
    """Extra headers and body of the NOTIFY that tells the desk how its transfer ended."""
    headers = ("Event: refer\r\n"
               "Subscription-State: terminated;reason=noresource\r\n"
               "Content-Type: message/sipfrag;version=2.0\r\n")
    return headers, f"{status_line}\r\n"


def handoff_code_target(refer_to: str, code: str) -> bool:
    """Whether a Refer-To header value points at the handoff code (sip:*55@… or tel:*55)."""
    m = re.search(r"(?:sips?|tel):([^@;>?]+)", refer_to or "")
    return bool(m) and m.group(1) == code
