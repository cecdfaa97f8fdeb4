"""Every rtpengine command of the routing, and the one set of flags they share.

Ordinary offers and answers go through Kamailio's rtpengine module (its flag strings); the
handoff's own commands (helper offers, the switch, answers from the far end's media) go
through rtpctl. Both take their flags from MEDIA, so they cannot disagree."""
from __future__ import annotations

import time
from typing import Callable

import KSR

from rtpctl import AnswerOptions, Client, OfferOptions

from .handoff.sdp import placeholder_sdp

# Anchor on the proxy's address, no ICE, plain RTP/AVP toward every side.
MEDIA = dict(replace=["origin", "session-connection"], ice="remove",
             transport_protocol="RTP/AVP")


def module_flags(media: dict) -> str:
    """MEDIA as the rtpengine module's flag string."""
    words = [f"replace-{what}" for what in media["replace"]]
    return " ".join(words + [f"ICE={media['ice']}", media["transport_protocol"]])


RTP_COMMON = module_flags(MEDIA)
# Each forked branch gets its own offer (via-branch=auto-next: the Via branch of that very
# branch for requests, the top Via for its replies), so a losing branch never touches the
# winner's media.
RTP_BRANCH = f"via-branch=auto-next {RTP_COMMON}"


class Media:
    def __init__(self, client_factory: Callable[[], Client]):
        self._factory = client_factory
        self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:            # lazily, after the fork
            self._client = self._factory()
        return self._client

    # ---- the rtpengine module, for the request being routed --------------------------------
    @staticmethod
    def offer_branch() -> bool:
        return KSR.rtpengine.rtpengine_offer(RTP_BRANCH) > 0

    @staticmethod
    def answer_branch() -> None:
        KSR.rtpengine.rtpengine_answer(RTP_BRANCH)

    @staticmethod
    def drop_branch() -> None:
        KSR.rtpengine.rtpengine_delete(RTP_BRANCH)

    @staticmethod
    def offer_in_dialog() -> None:
        KSR.rtpengine.rtpengine_offer(RTP_COMMON)

    @staticmethod
    def answer_in_dialog() -> None:
        KSR.rtpengine.rtpengine_answer(RTP_COMMON)

    @staticmethod
    def drop_call() -> None:
        KSR.rtpengine.rtpengine_delete0()

    # ---- the handoff's own commands (rtpctl) ----------------------------------------------
    def open_for_new_device(self, call_id: str, helper_tag: str, via_branch: str) -> str:
        """Ports for a device that is to take the call: an offer on the far end's call with
        a fresh helper tag; the far end and the current device are not disturbed."""
        return self.client.offer(call_id, helper_tag, placeholder_sdp(str(int(time.time()))),
                                 OfferOptions(via_branch=via_branch, **MEDIA)).sdp

    def switch(self, call_id: str, far_tag: str, new_tag: str, new_sdp: str, via_branch: str,
               old_tag: str) -> float:
        """The far end's stream to the new device (its ports stay: port latching), the old
        device out. Returns the milliseconds it took."""
        started = time.perf_counter()
        self.client.answer(call_id, far_tag, new_tag, new_sdp,
                           AnswerOptions(via_branch=via_branch, port_latching=True, **MEDIA))
        self.client.delete(call_id, from_tag=far_tag, to_tag=old_tag, delete_delay=0)
        return (time.perf_counter() - started) * 1000

    def answer_for(self, call_id: str, offer_tag: str, offer_sdp: str, answer_tag: str,
                   answer_sdp: str) -> str:
        """An offer from one side answered with the other side's last SDP, every port kept:
        how the proxy answers a far end's re-INVITE."""
        self.reoffer(call_id, offer_tag, offer_sdp, answer_tag)
        return self.client.answer(call_id, offer_tag, answer_tag, answer_sdp,
                                  AnswerOptions(port_latching=True, **MEDIA)).sdp

    def reoffer(self, call_id: str, from_tag: str, sdp: str, to_tag: str) -> str:
        """An offer within the call, every port kept (port latching): the SDP for the other
        side, e.g. the re-INVITE that takes back a hold."""
        return self.client.offer(call_id, from_tag, sdp,
                                 OfferOptions(extra={"to-tag": to_tag}, port_latching=True,
                                              **MEDIA)).sdp

    def delete(self, call_id: str, helper_tag: str = "") -> None:
        if helper_tag:
            self.client.delete(call_id, from_tag=helper_tag, delete_delay=0)
        else:
            self.client.delete(call_id, delete_delay=0)
