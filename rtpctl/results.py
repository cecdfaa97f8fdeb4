"""Typed views of ng replies. Each keeps ``raw`` (the whole reply) for fields not modelled here,
and ``warning`` (rtpengine's non-fatal complaint, e.g. an ignored flag) so callers can see it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ProtocolError


def _get(d: dict, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """Read one field, refusing a wrong type: a malformed reply becomes a ProtocolError, not an
    AttributeError deep inside a route."""
    value = d.get(key, default)
    if value is None or value is default:
        return value
    if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)  # rtpengine sends a few counters (e.g. uptime) as strings
    if not isinstance(value, kind):
        raise ProtocolError(f"reply field {key!r} has type {type(value).__name__}")
    return value


@dataclass(frozen=True)
class NgResult:
    """Any successful reply: the fields every command shares."""

    warning: str | None = field(default=None, kw_only=True)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, kw_only=True)


@dataclass(frozen=True)
class SdpResult(NgResult):
    """offer / answer / subscribe answer: the rewritten SDP to put into the SIP message."""

    sdp: str


@dataclass(frozen=True)
class OfferResult(SdpResult):
    pass


@dataclass(frozen=True)
class AnswerResult(SdpResult):
    pass


@dataclass(frozen=True)
class SubscribeResult(SdpResult):
    """subscribe request: the SDP to offer to the subscriber and the to-tag rtpengine chose."""

    to_tag: str | None = None
    from_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    family: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else \
            f"{self.address}:{self.port}"


@dataclass(frozen=True)
class PacketCounters:
    packets: int = 0
    bytes: int = 0
    errors: int = 0


@dataclass(frozen=True)
class StreamInfo:
    """One rtpengine socket pair side: RTP or RTCP of one media of one tag.

    ``endpoint`` is where rtpengine sends to / learned the peer at (after latching);
    ``advertised_endpoint`` is what the SDP said. ``counters`` count packets received from the
    endpoint.
    """

    local_address: str | None
    local_port: int | None
    endpoint: Endpoint | None
    advertised_endpoint: Endpoint | None
    counters: PacketCounters
    flags: tuple[str, ...]
    last_packet: int | None

    @property
    def is_rtcp(self) -> bool:
        return "RTCP" in self.flags


@dataclass(frozen=True)
class MediaInfo:
    index: int
    type: str
    protocol: str | None
    flags: tuple[str, ...]
    streams: tuple[StreamInfo, ...]
    codecs: tuple[str, ...] = ()

    @property
    def rtp(self) -> StreamInfo | None:
        return next((s for s in self.streams if not s.is_rtcp), None)


@dataclass(frozen=True)
class TagInfo:
    """One call participant (SIP tag) as rtpengine sees it."""

    tag: str
    label: str | None
    via_branch: str | None
    created: int | None
    peers: tuple[str, ...]
    medias: tuple[MediaInfo, ...]

    @property
    def rtp_counters(self) -> PacketCounters:
        """Packets received from this participant over RTP, all medias."""
        streams = [m.rtp for m in self.medias if m.rtp is not None]
        return PacketCounters(sum(s.counters.packets for s in streams),
                              sum(s.counters.bytes for s in streams),
                              sum(s.counters.errors for s in streams))


@dataclass(frozen=True)
class QueryResult(NgResult):
    call_id: str
    created: int | None
    last_signal: int | None
    tags: dict[str, TagInfo]
    rtp: PacketCounters
    rtcp: PacketCounters


@dataclass(frozen=True)
class DeleteResult(NgResult):
    """Totals of the deleted call (or branch), when rtpengine reports them."""

    rtp: PacketCounters | None = None
    rtcp: PacketCounters | None = None


@dataclass(frozen=True)
class PlayMediaResult(NgResult):
    duration_ms: int | None = None


@dataclass(frozen=True)
class Statistics(NgResult):
    """``statistics``: three groups of counters, each a flat name → value mapping."""

    current: dict[str, Any]
    total: dict[str, Any]
    interval: dict[str, Any]

    @property
    def sessions_own(self) -> int:
        return int(self.current.get("sessionsown", 0))

    @property
    def sessions_total(self) -> int:
        return int(self.current.get("sessionstotal", 0))

    @property
    def uptime(self) -> int:
        return int(self.total.get("uptime", 0))


# --- parsing -------------------------------------------------------------------------------

def _endpoint(value: Any) -> Endpoint | None:
    if not isinstance(value, dict) or "address" not in value:
        return None
    return Endpoint(str(value.get("family", "")), str(value["address"]),
                    int(_get(value, "port", int, 0)))


def _counters(value: Any) -> PacketCounters:
    if not isinstance(value, dict):
        return PacketCounters()
    return PacketCounters(_get(value, "packets", int, 0), _get(value, "bytes", int, 0),
                          _get(value, "errors", int, 0))


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _stream(d: Any) -> StreamInfo:
    if not isinstance(d, dict):
        raise ProtocolError("stream entry is not a dictionary")
    return StreamInfo(local_address=_get(d, "local address", str),
                      local_port=_get(d, "local port", int),
                      endpoint=_endpoint(d.get("endpoint")),
                      advertised_endpoint=_endpoint(d.get("advertised endpoint")),
                      counters=_counters(d.get("stats")),
                      flags=_strings(d.get("flags")),
                      last_packet=_get(d, "last packet", int))


def _codec_names(value: Any) -> tuple[str, ...]:
    """Codecs when rtpengine lists them (not in 10.5's query; kept for newer daemons)."""
    if isinstance(value, list):
        return tuple(str(c.get("codec", c)) if isinstance(c, dict) else str(c) for c in value)
    if isinstance(value, dict):
        return tuple(str(k) for k in value)
    return ()


def _media(d: Any) -> MediaInfo:
    if not isinstance(d, dict):
        raise ProtocolError("media entry is not a dictionary")
    return MediaInfo(index=_get(d, "index", int, 0), type=_get(d, "type", str, ""),
                     protocol=_get(d, "protocol", str), flags=_strings(d.get("flags")),
                     streams=tuple(_stream(s) for s in _get(d, "streams", list, [])),
                     codecs=_codec_names(d.get("codecs")))


def _tag(name: str, d: Any) -> TagInfo:
    if not isinstance(d, dict):
        raise ProtocolError(f"tag {name!r} is not a dictionary")
    peers = tuple(s["tag"] for s in _get(d, "subscriptions", list, [])
                  if isinstance(s, dict) and isinstance(s.get("tag"), str))
    if not peers:  # older daemons: "in dialogue with"
        other = d.get("in dialogue with")
        peers = (other,) if isinstance(other, str) and other else ()
    return TagInfo(tag=_get(d, "tag", str, name) or name, label=_get(d, "label", str),
                   via_branch=_get(d, "via-branch", str), created=_get(d, "created", int),
                   peers=peers, medias=tuple(_media(m) for m in _get(d, "medias", list, [])))


def parse_query(call_id: str, reply: dict[str, Any], warning: str | None) -> QueryResult:
    tags = _get(reply, "tags", dict, {})
    totals = _get(reply, "totals", dict, {})
    return QueryResult(call_id=call_id, created=_get(reply, "created", int),
                       last_signal=_get(reply, "last signal", int),
                       tags={name: _tag(name, d) for name, d in tags.items()},
                       rtp=_counters(totals.get("RTP")), rtcp=_counters(totals.get("RTCP")),
                       warning=warning, raw=reply)


def parse_delete(reply: dict[str, Any], warning: str | None) -> DeleteResult:
    totals = reply.get("totals")
    if isinstance(totals, dict):
        return DeleteResult(rtp=_counters(totals.get("RTP")), rtcp=_counters(totals.get("RTCP")),
                            warning=warning, raw=reply)
    return DeleteResult(warning=warning, raw=reply)


def parse_statistics(reply: dict[str, Any], warning: str | None) -> Statistics:
    stats = _get(reply, "statistics", dict, {})
    return Statistics(current=_get(stats, "currentstatistics", dict, {}),
                      total=_get(stats, "totalstatistics", dict, {}),
                      interval=_get(stats, "intervalstatistics", dict, {}),
                      warning=warning, raw=reply)


def sdp_of(reply: dict[str, Any]) -> str:
    sdp = _get(reply, "sdp", str)
    if sdp is None:
        raise ProtocolError("reply has no 'sdp'")
    return sdp
