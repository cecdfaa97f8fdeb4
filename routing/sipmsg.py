"""Reading a SIP reply as text, for the few messages the proxy writes itself from one it
received: the ACK and BYE that end a twin leg it keeps from the caller, and the final reply
that tells its own transaction that leg is over. Pure functions, unit-tested directly."""
from __future__ import annotations

import re
from dataclasses import dataclass

# Compact forms (RFC 3261 §7.3.3) of the headers read here.
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact"}
_URI_IN_BRACKETS = re.compile(r"<([^>]*)>")


def headers(raw: str) -> list[tuple[str, str]]:
    """The header fields of a message in order, names lower-cased and compact forms expanded;
    folded lines are joined."""
    head = raw.replace("\r\n", "\n").split("\n\n", 1)[0]
    fields: list[tuple[str, str]] = []
    for line in head.split("\n")[1:]:
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        fields.append((_COMPACT.get(name, name), value.strip()))
    return fields


def split_list(value: str) -> list[str]:
    """A comma-separated header value (Record-Route, Via), commas inside <> or quotes kept."""
    parts, depth, quoted, current = [], 0, False, []
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _uri(entry: str) -> str:
    m = _URI_IN_BRACKETS.search(entry)
    return m.group(1) if m else entry.strip()


def _host(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split("@", 1)[-1]
    return re.split(r"[:;>?]", rest, maxsplit=1)[0]


def routes_downstream(record_routes: list[str], own_host: str) -> list[str]:
    """The route set from the proxy toward the party that answered: the Record-Route entries
    above the proxy's own (those nearer the answering party), nearest first."""
    own = [i for i, e in enumerate(record_routes) if _host(_uri(e)) == own_host]
    above = record_routes[:own[0]] if own else record_routes
    return list(reversed(above))


@dataclass(frozen=True)
class LegEnd:
    """The in-dialog requests that end the dialog a 2xx to an INVITE set up, sent by the
    proxy in the caller's place: where they go and their headers (tm adds Via)."""
    target: str                 # the answerer's Contact
    next_hop: str               # the first route, or "" (straight to the target)
    ack: str
    bye: str


def leg_end(raw_reply: str, own_host: str, reason: str) -> LegEnd:
    """ACK and BYE for the 2xx `raw_reply` (a reply to an INVITE) as the caller would send
    them. `reason`: the text of the BYE's Reason header."""
    fields = headers(raw_reply)

    def first(name: str) -> str:
        return next((v for n, v in fields if n == name), "")

    record_routes = [e for n, v in fields if n == "record-route" for e in split_list(v)]
    routes = routes_downstream(record_routes, own_host)
    contact = _uri(split_list(first("contact"))[0]) if first("contact") else ""
    cseq = first("cseq").split()[0] if first("cseq") else "1"
    route_lines = "".join(f"Route: {r}\r\n" for r in routes)
    common = (f"From: {first('from')}\r\nTo: {first('to')}\r\nCall-ID: {first('call-id')}\r\n"
              f"Max-Forwards: 70\r\n{route_lines}")
    next_hop = _uri(routes[0]) if routes and ";lr" in routes[0] else ""
    safe_reason = reason.replace('"', "")
    return LegEnd(target=contact, next_hop=next_hop,
                  ack=f"{common}CSeq: {cseq} ACK\r\n",
                  bye=(f"{common}CSeq: {int(cseq) + 1} BYE\r\n"
                       f'Reason: SIP;cause=480;text="{safe_reason}"\r\n'))


def final_reply_for(raw_reply: str, code: int, reason: str) -> str:
    """A reply of `code` to the same request and branch as `raw_reply` (its Vias, From, To,
    Call-ID and CSeq), without a body: what the proxy's own transaction is told in place of
    a 2xx it must not see."""
    keep = ("via", "from", "to", "call-id", "cseq")
    lines = [f"{name.title() if name != 'call-id' else 'Call-ID'}: {value}"
             for name, value in headers(raw_reply) if name in keep]
    lines = [line.replace("Cseq:", "CSeq:", 1) for line in lines]
    return f"SIP/2.0 {code} {reason}\r\n" + "\r\n".join(lines) + \
        "\r\nContent-Length: 0\r\n\r\n"


def via_branches(raw_reply: str) -> list[str]:
    """The branch parameters of the reply's Vias, top first (every entry of every Via line)."""
    branches = []
    for name, value in headers(raw_reply):
        if name != "via":
            continue
        for entry in split_list(value):
            params = dict(p.strip().partition("=")[::2] for p in entry.split(";")[1:])
            branches.append(params.get("branch", ""))
    return branches
