"""ng wire format: ``<cookie> <bencoded dictionary>`` in one datagram.

The codec is bencode.py (module ``bencodepy``), through its public API. It decodes dictionaries
whatever the order of their keys, which matters: rtpengine 10.5 emits keys in insertion order
(``{"sdp": ..., "result": "ok"}``), and strict decoders (fastbencode, the BitTorrent rule)
reject that. It also bounds nesting depth, so a hostile reply stays cheap.
"""
from __future__ import annotations

from typing import Any, Mapping

import bencodepy

from .errors import ProtocolError

#: rtpengine nests little; a deeper reply is garbage, and the bound keeps a hostile packet cheap.
MAX_DEPTH = 64

_codec = bencodepy.Bencode(encoding=None, max_depth=MAX_DEPTH)


def _keys_to_bytes(value: Any) -> Any:
    """Bytes keys for the encoder; callers write str keys because ng keys are ASCII words."""
    if isinstance(value, Mapping):
        return {(k.encode() if isinstance(k, str) else k): _keys_to_bytes(v) for k, v in value.items()
                if v is not None}
    if isinstance(value, (list, tuple)):
        return [_keys_to_bytes(v) for v in value]
    return value


def _to_text(value: Any) -> Any:
    """Byte strings to str. surrogateescape keeps odd bytes round-trippable instead of failing."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return {k.decode("utf-8", "surrogateescape"): _to_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_text(v) for v in value]
    return value


def encode_message(cookie: str, message: Mapping[str, Any]) -> bytes:
    """One ng request datagram. ``None`` values are dropped, so option objects can leave gaps."""
    try:
        body = _codec.encode(_keys_to_bytes(message))
    except (TypeError, ValueError, bencodepy.BencodeEncodeError) as exc:
        raise ValueError(f"cannot bencode ng message: {exc}") from exc
    return cookie.encode("ascii") + b" " + body


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode a bencoded ng dictionary; anything else is a ProtocolError."""
    try:
        value = _codec.decode(body)
    except (bencodepy.BencodeDecodeError, ValueError, RecursionError, TypeError, IndexError,
            KeyError) as exc:
        raise ProtocolError(f"malformed bencode in reply: {exc or type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"reply is a bencoded {type(value).__name__}, not a dictionary")
    return _to_text(value)


def split_packet(data: bytes) -> tuple[str, bytes]:
    """Separate cookie and body. Raises ProtocolError when there is no usable cookie."""
    cookie, sep, body = data.partition(b" ")
    if not sep or not cookie:
        raise ProtocolError("reply has no cookie")
    try:
        return cookie.decode("ascii"), body
    except UnicodeDecodeError:
        raise ProtocolError("reply cookie is not ASCII") from None


def decode_message(data: bytes) -> tuple[str, dict[str, Any]]:
    """Whole datagram → (cookie, dictionary)."""
    cookie, body = split_packet(data)
    return cookie, decode_body(body)
