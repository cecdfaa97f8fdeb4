"""rtpctl: client for rtpengine's bencode "ng" control protocol.

Public API (see README.md)::

    from rtpctl import Client, AnswerOptions
    rtp = Client("127.0.0.1", 2223, timeout=0.5, retries=3)   # no socket yet
    offer = rtp.offer(call_id, from_tag, sdp)                   # -> OfferResult(sdp=...)
    rtp.answer(call_id, from_tag, to_tag, sdp, AnswerOptions(port_latching=True))
    rtp.delete(call_id, from_tag=far_tag, to_tag=old_tag)

Safe to import inside Kamailio's app_python3: no sockets, threads or event loop at import.
"""
from .client import Client, check_reply
from .errors import (CallNotFound, NgError, NgTimeout, NoNodeAvailable, ProtocolError,
                     RtpctlError)
from .nodeset import Health, Node, NodeSet, kamailio_hash, pick_by_weight
from .options import AnswerOptions, CodecOptions, OfferOptions, SdpOptions, SubscribeOptions
from .results import (AnswerResult, DeleteResult, Endpoint, MediaInfo, NgResult, OfferResult,
                      PacketCounters, PlayMediaResult, QueryResult, Statistics, StreamInfo,
                      SubscribeResult, TagInfo)
from .transport import CookieJar, UdpTransport

__all__ = [
    "Client", "check_reply", "UdpTransport", "CookieJar",
    "RtpctlError", "NgError", "CallNotFound", "NgTimeout", "ProtocolError", "NoNodeAvailable",
    "NodeSet", "Node", "Health", "kamailio_hash", "pick_by_weight",
    "SdpOptions", "OfferOptions", "AnswerOptions", "CodecOptions", "SubscribeOptions",
    "NgResult", "OfferResult", "AnswerResult", "SubscribeResult", "DeleteResult", "QueryResult",
    "TagInfo", "MediaInfo", "StreamInfo", "Endpoint", "PacketCounters", "PlayMediaResult",
    "Statistics",
]
