"""Every rtpengine command of the routing, and the one set of flags they share.

Ordinary offers and answers go through Kamailio's rtpengine module (its flag strings); the
handoff's own commands (helper offers, the switch, answers from the far end's media) go
through rtpctl. Both take their flags from MEDIA, so they cannot disagree.

Media is plain RTP/AVP toward every side but a phone on TLS: an offer toward a phone that
registered over TLS (its contact says transport=tls, or the branch leaves on the TLS socket)
gets SDES-SRTP, RTP/SAVP with rtpengine's own a=crypto keys; rtpengine decrypts on that side
and the trunk side stays plain. Answers name no protocol: rtpengine then answers each offerer
in the protocol it offered (measured on 10.5: an SAVP offer from a TLS desk is answered SAVP
toward it while the trunk got AVP), so a desk's own SAVP offer needs no special case."""
from __future__ import annotations

import time
from typing import Callable

import KSR

from rtpctl import AnswerOptions, Client, NodeSet, OfferOptions

from .handoff.sdp import is_secure_contact, placeholder_sdp
from .kemi import pv

# Anchor on the proxy's address, no ICE; offers then name the protocol toward their side.
MEDIA = dict(replace=["origin", "session-connection"], ice="remove")
PLAIN, SECURE = "RTP/AVP", "RTP/SAVP"
# SDES suites rtpengine must not offer a phone: the NULL ones authenticate but do not encrypt.
SDES_EXCLUDED = ["no-NULL_HMAC_SHA1_80", "no-NULL_HMAC_SHA1_32"]


def module_flags(media: dict, protocol: str | None = None) -> str:
    """MEDIA as the rtpengine module's flag string (with an offer's protocol)."""
    words = [f"replace-{what}" for what in media["replace"]] + [f"ICE={media['ice']}"]
    if protocol == SECURE:
        words += [f"SDES-{suite}" for suite in SDES_EXCLUDED]
    return " ".join(words + ([protocol] if protocol else []))


def offer_options(secure: bool, **kw) -> OfferOptions:
    """rtpctl's offer toward a side: SRTP toward a phone on TLS, plain RTP otherwise."""
    if secure:
        extra = dict(kw.pop("extra", {}), SDES=SDES_EXCLUDED)
        return OfferOptions(transport_protocol=SECURE, extra=extra, **kw, **MEDIA)
    return OfferOptions(transport_protocol=PLAIN, **kw, **MEDIA)


# Each forked branch gets its own offer (via-branch=auto-next: the Via branch of that very
# branch for requests, the top Via for its replies), so a losing branch never touches the
# winner's media.
BRANCH = "via-branch=auto-next"
CONFIRM_PROMPT_REPEATS = 10          # the prompt (~1.2 s) repeats past the confirmation window
RTP_ANSWER = module_flags(MEDIA)
RTP_OFFER = {False: module_flags(MEDIA, PLAIN), True: module_flags(MEDIA, SECURE)}
RTP_BRANCH_ANSWER = f"{BRANCH} {RTP_ANSWER}"
RTP_BRANCH_OFFER = {secure: f"{BRANCH} {flags}" for secure, flags in RTP_OFFER.items()}


def next_hop_secure() -> bool:
    """Whether the request being relayed leaves over TLS: its next hop's transport (the
    contact's transport=tls, or the destination lookup() set), or the TLS socket forced."""
    return pv("$nh(P)").lower() == "tls" or pv("$fs").lower().startswith("tls:") or \
        is_secure_contact(pv("$ru"))


class Media:
    """set_factory: the proxy's rtpengines when it has several (a cluster's set,
    rtpctl.NodeSet): the handoff's commands go to the one that holds the call, as the
    rtpengine module's own do (its hash picks the same one for a Call-ID)."""

    def __init__(self, client_factory: Callable[[], Client],
                 set_factory: Callable[[], NodeSet] | None = None):
        self._factory = client_factory
        self._client = None
        self._set_factory = set_factory
        self._set: NodeSet | None = None

    @property
    def client(self) -> Client:
        if self._client is None:            # lazily, after the fork
            self._client = self._factory()
        return self._client

    def _for(self, call_id: str) -> Client:
        """The client of the rtpengine that has the call (the only one, when there is one)."""
        if self._set_factory is None:
            return self.client
        if self._set is None:
            self._set = self._set_factory()
        node = self._set.locate(call_id)
        return node.client if node is not None else self.client

    # ---- the rtpengine module, for the request being routed --------------------------------
    @staticmethod
    def offer_branch() -> bool:
        return KSR.rtpengine.rtpengine_offer(RTP_BRANCH_OFFER[next_hop_secure()]) > 0

    @staticmethod
    def answer_branch() -> None:
        KSR.rtpengine.rtpengine_answer(RTP_BRANCH_ANSWER)

    @staticmethod
    def drop_branch() -> None:
        KSR.rtpengine.rtpengine_delete(BRANCH)

    @staticmethod
    def offer_in_dialog() -> None:
        KSR.rtpengine.rtpengine_offer(RTP_OFFER[next_hop_secure()])

    @staticmethod
    def answer_in_dialog() -> None:
        KSR.rtpengine.rtpengine_answer(RTP_ANSWER)

    @staticmethod
    def drop_call() -> None:
        KSR.rtpengine.rtpengine_delete0()

    # ---- the handoff's own commands (rtpctl) ----------------------------------------------
    def open_for_new_device(self, call_id: str, helper_tag: str, via_branch: str,
                            secure: bool = False) -> str:
        """Ports for a device that is to take the call: an offer on the far end's call with
        a fresh helper tag; the far end and the current device are not disturbed. secure:
        the device is a phone on TLS (SRTP toward it)."""
        return self._for(call_id).offer(call_id, helper_tag,
                                        placeholder_sdp(str(int(time.time()))),
                                        offer_options(secure, via_branch=via_branch)).sdp

    def switch(self, call_id: str, far_tag: str, new_tag: str, new_sdp: str, via_branch: str,
               old_tag: str) -> float:
        """The far end's stream to the new device (its ports stay: port latching), the old
        device out. Returns the milliseconds it took."""
        started = time.perf_counter()
        client = self._for(call_id)
        client.answer(call_id, far_tag, new_tag, new_sdp,
                      AnswerOptions(via_branch=via_branch, port_latching=True, **MEDIA))
        client.delete(call_id, from_tag=far_tag, to_tag=old_tag, delete_delay=0)
        return (time.perf_counter() - started) * 1000

    def answer_for(self, call_id: str, offer_tag: str, offer_sdp: str, answer_tag: str,
                   answer_sdp: str, answerer_secure: bool = False) -> str:
        """An offer from one side answered with the other side's last SDP, every port kept:
        how the proxy answers a far end's re-INVITE."""
        self.reoffer(call_id, offer_tag, offer_sdp, answer_tag, answerer_secure)
        return self._for(call_id).answer(call_id, offer_tag, answer_tag, answer_sdp,
                                         AnswerOptions(port_latching=True, **MEDIA)).sdp

    def reoffer(self, call_id: str, from_tag: str, sdp: str, to_tag: str,
                toward_secure: bool = False) -> str:
        """An offer within the call, every port kept (port latching): the SDP for the other
        side, e.g. the re-INVITE that takes back a hold. toward_secure: that side is a
        phone on TLS."""
        return self._for(call_id).offer(call_id, from_tag, sdp,
                                        offer_options(toward_secure, extra={"to-tag": to_tag},
                                                      port_latching=True)).sdp

    # ---- a twin leg's confirmation (routing.confirm) -----------------------------------------
    def hold_for_confirmation(self, call_id: str, caller_tag: str, leg_tag: str, leg_sdp: str,
                              via_branch: str, prompt: str) -> None:
        """The answered leg's media is set up (its branch of the caller's offer) but kept from
        the caller, audio and DTMF both, while the prompt plays to the leg. rtpengine still
        sees the leg's DTMF and reports it (--dtmf-log-dest)."""
        c = self._for(call_id)
        c.answer(call_id, caller_tag, leg_tag, leg_sdp,
                 AnswerOptions(via_branch=via_branch, **MEDIA))
        c.block_media(call_id, from_tag=leg_tag)
        c.block_dtmf(call_id, from_tag=leg_tag)
        c.play_media(call_id, leg_tag, file=prompt, repeat_times=CONFIRM_PROMPT_REPEATS)

    def release_confirmed(self, call_id: str, leg_tag: str) -> None:
        """The leg pressed 1: the prompt stops and its audio reaches the caller (its DTMF a
        moment later: the caller is not to hear the key)."""
        c = self._for(call_id)
        c.stop_media(call_id, leg_tag)
        c.unblock_media(call_id, from_tag=leg_tag)

    def delete(self, call_id: str, helper_tag: str = "") -> None:
        if helper_tag:
            self._for(call_id).delete(call_id, from_tag=helper_tag, delete_delay=0)
        else:
            self._for(call_id).delete(call_id, delete_delay=0)
