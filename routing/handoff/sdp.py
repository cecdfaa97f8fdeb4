"""SDP the handoff needs to read or write: the placeholder offer that opens a handoff, the
codecs a device offered, hold, and the origin version of an SDP the proxy gives again."""
from __future__ import annotations

import re

PLACEHOLDER_CODECS = (("0", "PCMU/8000"), ("8", "PCMA/8000"), ("101", "telephone-event/8000"))
STATIC_PAYLOADS = {"0": "PCMU", "8": "PCMA", "18": "G729", "9": "G722"}


def placeholder_sdp(session_id: str) -> str:
    """The offer that opens a handoff on the far end's call: nothing real listens at it (TEST-NET
    address, port 9), it only asks rtpengine for the ports the new device will use."""
    pts = " ".join(pt for pt, _ in PLACEHOLDER_CODECS)
    lines = ["v=0", f"o=- {session_id} 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1",
             "t=0 0", f"m=audio 9 RTP/AVP {pts}"]
    lines += [f"a=rtpmap:{pt} {name}" for pt, name in PLACEHOLDER_CODECS]
    lines += ["a=fmtp:101 0-15", "a=sendrecv", "a=ptime:20"]
    return "\r\n".join(lines) + "\r\n"


def _rtpmap(sdp: str) -> dict[str, str]:
    return {m.group(1): m.group(2).split("/")[0].upper()
            for m in re.finditer(r"^a=rtpmap:(\d+) ([^\s]+)", sdp, re.M)}


def _offered(sdp: str) -> set[str]:
    """Encoding names (upper case) a device's SDP offers."""
    names = set(_rtpmap(sdp).values())
    m_line = re.search(r"^m=audio \d+ [^ ]+ ([0-9 ]+)", sdp, re.M)
    if m_line:
        names |= {STATIC_PAYLOADS[pt] for pt in m_line.group(1).split() if pt in STATIC_PAYLOADS}
    return names


def restrict_codecs(sdp: str, offered_by_device: str) -> str:
    """Keep in `sdp` only the audio codecs the device offered (and their a= lines)."""
    allowed = _offered(offered_by_device)
    rtpmap = _rtpmap(sdp)

    def keep(pt: str) -> bool:
        return rtpmap.get(pt, STATIC_PAYLOADS.get(pt, "")) in allowed

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


_ANSWER_TO = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive",
              "sendrecv": "sendrecv"}


def direction(sdp: str) -> str:
    """The media direction an SDP states (RFC 3264; c=0.0.0.0 is the old form of hold)."""
    m = re.search(r"^a=(sendonly|recvonly|inactive|sendrecv)\s*$", sdp, re.M)
    if m:
        return m.group(1)
    return "sendonly" if re.search(r"^c=IN IP4 0\.0\.0\.0\s*$", sdp, re.M) else "sendrecv"


def answer_direction(offer: str, answer: str) -> str:
    """`answer` with the direction that answers `offer` (RFC 3264 §6.1: a sendonly offer is
    answered recvonly, ...). An empty offer (a re-INVITE without SDP) leaves it as it is."""
    if not offer or not answer:
        return answer
    wanted = _ANSWER_TO[direction(offer)]
    lines = [line for line in answer.splitlines()
             if line and not re.match(r"^a=(sendonly|recvonly|inactive|sendrecv)\s*$", line)]
    # At the end of the first media section: an attribute comes after its c= and b= lines.
    media = [i for i, line in enumerate(lines) if line.startswith("m=")]
    at = media[1] if len(media) > 1 else len(lines)
    lines.insert(at, f"a={wanted}")
    return "\r\n".join(lines) + "\r\n"


def is_secure_contact(uri: str) -> bool:
    """Whether a device's contact is reached over TLS (sips:, or transport=tls): media toward
    it is SRTP."""
    uri = uri.lower()
    return uri.startswith("sips:") or "transport=tls" in uri


_CRYPTO = re.compile(r"^a=crypto:(\d+) (\S+) (.*)$", re.M)


def match_crypto(answer: str, device_offer: str) -> tuple[str, str]:
    """SDES for a device whose offer the proxy answers with rtpengine's own offer (the desk's
    code call): an answer carries one a=crypto, with the tag of the offered one it accepts
    (RFC 4568). Returns (the answer with rtpengine's line for the first suite the device
    offered that rtpengine has too, under the device's tag; the device's SDP with its line
    of that suite alone, under rtpengine's tag, for rtpengine to take as the answer). Both
    unchanged when either side has no a=crypto."""
    ours = {m.group(2): m for m in _CRYPTO.finditer(answer)}
    theirs = [m for m in _CRYPTO.finditer(device_offer) if m.group(2) in ours]
    if not ours or not theirs:
        return answer, device_offer
    chosen = theirs[0]
    mine = ours[chosen.group(2)]

    def only(sdp: str, line: str) -> str:
        kept, placed = [], False
        for text in sdp.splitlines():
            if text.startswith("a=crypto:"):
                if not placed:
                    kept.append(line)
                    placed = True
                continue
            kept.append(text)
        return "\r\n".join(kept) + "\r\n"

    return (only(answer, f"a=crypto:{chosen.group(1)} {mine.group(2)} {mine.group(3)}"),
            only(device_offer, f"a=crypto:{mine.group(1)} {chosen.group(2)} {chosen.group(3)}"))
