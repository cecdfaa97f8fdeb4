"""What a transition of routing.handoff.model asks the KEMI side to do, as plain data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:            # the state refers to actions at run time, not the other way
    from .state import Device, Leg, Outcome, Pending

# ---- actions -----------------------------------------------------------------------------------

@dataclass
class Reply:
    """Answer the request being handled, from the proxy."""
    code: int
    reason: str
    sdp: str = ""


@dataclass
class Relay:
    """Pass the request on in D1; `cseq` renumbers it (and its replies get theirs back)."""
    cseq: Optional[int] = None


@dataclass
class AbsorbAck:
    """An ACK for one of the proxy's own 2xx: let tm match it (ends its retransmissions)."""


@dataclass
class Send:
    """A request of the proxy's own, in a dialog it stands in or owns."""
    method: str
    target: str
    headers: str
    body: str = ""


@dataclass
class RingMobile:
    """Open the new device's media (rtpengine offer on the helper tag), keep the offer in
    the pending handoff (shared memory, before anything is sent), and INVITE the twin."""
    pending: Pending


@dataclass
class Switch:
    """The one media switch: the far end's stream now goes to `new`, the old device's
    leaves rtpengine. The far end's ports never move (port latching)."""
    new: Leg
    via_branch: str
    old_tag: str


@dataclass
class ResumeFar:
    """Take back the desk's hold of the far end: a re-INVITE with the near end's media."""


@dataclass
class AnswerFarFromMedia:
    """A far-end re-INVITE: answer it for the near end from rtpengine (same ports)."""


@dataclass
class DeleteMedia:
    helper_tag: str = ""        # only the helper's part; "" = the whole call


@dataclass
class CancelLeg:
    call_id: str


@dataclass
class ReplyCodeCall:
    call_id: str
    cseq: str
    code: int
    reason: str


@dataclass
class EndDialog:
    """Make the dialog module forget D1 (without it sending anything)."""


@dataclass
class Save:
    durable: bool = True        # False: shared memory only (a mid-call CSeq is not worth a
                                # database write per request)


@dataclass
class Drop:
    reason: str


@dataclass
class HandoffStarted:
    from_device: Device
    to_device: Device


@dataclass
class HandoffFinished:
    handoff_id: str
    outcome: Outcome
    answered: bool = False


Action = Union[AbsorbAck, Reply, Relay, Send, RingMobile, Switch, ResumeFar, AnswerFarFromMedia, DeleteMedia,
               CancelLeg, ReplyCodeCall, EndDialog, Save, Drop, HandoffStarted, HandoffFinished]
