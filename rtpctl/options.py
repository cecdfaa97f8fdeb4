"""Typed option objects for offer / answer / subscribe: named fields for what this product uses,
``extra`` for any other ng key, so nothing rtpengine supports is out of reach.

``to_ng()`` produces the dictionary fragment merged into the request; unset fields are left out
so rtpengine's own defaults apply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CodecOptions:
    """The ng ``codec`` dictionary: strip, offer (re-order/only), transcode, mask, except."""

    strip: list[str] = field(default_factory=list)
    offer: list[str] = field(default_factory=list)
    transcode: list[str] = field(default_factory=list)
    mask: list[str] = field(default_factory=list)
    except_: list[str] = field(default_factory=list)

    def to_ng(self) -> dict[str, list[str]]:
        out = {"strip": self.strip, "offer": self.offer, "transcode": self.transcode,
               "mask": self.mask, "except": self.except_}
        return {k: list(v) for k, v in out.items() if v}


@dataclass
class SdpOptions:
    """Options shared by offer and answer.

    ``port_latching`` is a field of its own because the handoff depends on it: without it an
    answer for a new to-tag moves the far end's rtpengine port (see design.md §3).
    """

    via_branch: str | None = None
    flags: list[str] = field(default_factory=list)
    port_latching: bool = False
    replace: list[str] = field(default_factory=list)       # e.g. ["origin", "session-connection"]
    direction: tuple[str, str] | None = None              # interface names, e.g. ("pub", "priv")
    ice: str | None = None                                # "remove", "force", ...
    dtls: str | None = None
    rtcp_mux: list[str] = field(default_factory=list)     # "offer", "demux", "accept", ...
    transport_protocol: str | None = None                 # "RTP/AVP", "RTP/SAVPF", ...
    media_address: str | None = None
    address_family: str | None = None                     # "IP4" / "IP6"
    received_from: tuple[str, str] | None = None          # ("IP4", "192.0.2.7")
    codec: CodecOptions | None = None
    label: str | None = None
    record_call: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_ng(self) -> dict[str, Any]:
        flags = list(self.flags)
        if self.port_latching and "port latching" not in flags:
            flags.append("port latching")
        out: dict[str, Any] = {
            "via-branch": self.via_branch,
            "flags": flags or None,
            "replace": list(self.replace) or None,
            "direction": list(self.direction) if self.direction else None,
            "ICE": self.ice,
            "DTLS": self.dtls,
            "rtcp-mux": list(self.rtcp_mux) or None,
            "transport-protocol": self.transport_protocol,
            "media-address": self.media_address,
            "address-family": self.address_family,
            "received-from": list(self.received_from) if self.received_from else None,
            "codec": (self.codec.to_ng() or None) if self.codec else None,
            "label": self.label,
            "record call": None if self.record_call is None else
            ("yes" if self.record_call else "no"),
        }
        out.update(self.extra)
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class OfferOptions(SdpOptions):
    """Options for ``offer``."""


@dataclass
class AnswerOptions(SdpOptions):
    """Options for ``answer``."""


@dataclass
class SubscribeOptions:
    """Options for ``subscribe request`` (media forking to a new listener)."""

    flags: list[str] = field(default_factory=list)        # e.g. ["all"], ["SIPREC"]
    transport_protocol: str | None = None
    codec: CodecOptions | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_ng(self) -> dict[str, Any]:
        out: dict[str, Any] = {"flags": list(self.flags) or None,
                               "transport-protocol": self.transport_protocol,
                               "codec": (self.codec.to_ng() or None) if self.codec else None}
        out.update(self.extra)
        return {k: v for k, v in out.items() if v is not None}
