"""The toll-fraud doors the proxy keeps shut (docs/security.md), and the one way a refusal is
told: a log line with who sent what and why, and the counter
`twinning_security_refused_total{reason}`.

The Contact rule of the registrar is a pure function of the REGISTER's text and of two
questions about an address (is it a trunk's, is it ours), so it is unit-tested directly."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable, Optional

import KSR

from .kemi import pv
from .metrics import SECURITY_REASONS, Metrics
from .sipmsg import headers, split_list

# Why a request was refused: the `reason` label of the counter, declared by routing.metrics:
# in-dialog in looks but of no dialog of ours; in a dialog of ours but aimed past its other
# party; a REGISTER of a trunk's, the proxy's or a number's Contact; a REFER from anyone but
# the subscriber's device.
UNKNOWN_DIALOG, RELAY_DENIED, CONTACT_NOT_ALLOWED, REFER_NOT_FROM_DESK = SECURITY_REASONS

CONTACT_REFUSED = "Contact Not Allowed"     # the registrar's 403 reason phrase
# A user part that dials a number: 7+ digits (an extension has 4), with or without '+'.
_NUMBER_LIKE = re.compile(r"\+?[0-9][0-9().\-]{6,}")


def refused(reason: str, detail: str) -> None:
    """Log and count one refusal. The source is the packet's, the one thing a sender cannot
    choose; the rest (method, R-URI) is what it claimed."""
    KSR.notice(f"security: refused {reason}: {pv('$rm')} {_clean(pv('$ru'))} from "
               f"{pv('$pr')}:{pv('$si')}:{pv('$sp')}: {_clean(detail)}\n")
    Metrics.refused_security(reason)


def _clean(text: str) -> str:
    return re.sub(r"[\x00-\x1f]", "?", text)[:200]


# ---- the registrar's Contact rule --------------------------------------------------------------

@dataclass(frozen=True)
class ContactUri:
    """One Contact of a REGISTER, as the registrar would keep it ("*" is the wildcard)."""
    text: str
    scheme: str = ""
    user: str = ""
    host: str = ""
    port: int = 0
    user_phone: bool = False        # ;user=phone

    @property
    def wildcard(self) -> bool:
        return self.text == "*"

    @property
    def port_or_default(self) -> int:
        return self.port or (5061 if self.scheme == "sips" else 5060)


def contacts_of(raw_request: str) -> list[ContactUri]:
    """Every Contact of the request, over every Contact header (compact `m:` too) and every
    comma-separated entry of each."""
    out = []
    for name, value in headers(raw_request):
        if name == "contact":
            out += [parse_contact(entry) for entry in split_list(value)]
    return out


def parse_contact(entry: str) -> ContactUri:
    entry = entry.strip()
    if entry == "*":
        return ContactUri("*")
    m = re.search(r"<([^>]*)>", entry)
    # Without <>, what follows ';' are the header's parameters (RFC 3261 20.10), not the URI's.
    uri = m.group(1).strip() if m else entry.split(";", 1)[0].strip()
    scheme, _, rest = uri.partition(":")
    rest = re.split(r"[?]", rest, maxsplit=1)[0]
    hostpart, _, params = rest.partition(";")
    user, _, hostport = hostpart.rpartition("@")
    user = user.split(":", 1)[0]                        # user:password
    if hostport.startswith("["):                        # IPv6 reference
        host, _, tail = hostport[1:].partition("]")
        port_text = tail.lstrip(":")
    else:
        host, _, port_text = hostport.partition(":")
    try:
        port = int(port_text) if port_text else 0
    except ValueError:
        port = -1
    phone = any(p.strip().lower() == "user=phone" for p in params.split(";"))
    return ContactUri(entry, scheme.strip().lower(), user, host.lower(), port, phone)


def host_of(uri: str) -> str:
    """The host of a SIP URI (lower-cased, IPv6 without brackets; "" for none)."""
    return parse_contact(uri).host if uri else ""


def _address(uri: str) -> tuple[str, str, int]:
    c = parse_contact(uri.strip())
    return c.user, c.host, c.port_or_default


def same_target(request_uri: str, target: str) -> bool:
    """Whether an in-dialog request's R-URI is the party's target: the same user, host and
    port (parameters may be ordered or added differently)."""
    return _address(request_uri) == _address(target)


def in_route_set(hop: str, route_set: str) -> bool:
    """Whether a next hop (a URI) is one of a route set's entries (Record-Route text)."""
    _, host, port = _address(hop)
    return any(_address(entry)[1:] == (host, port) for entry in split_list(route_set) if entry)


def is_number_like(user: str) -> bool:
    return bool(_NUMBER_LIKE.fullmatch(user))


def _ip(host: str) -> Optional[str]:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def contact_refusal(contacts: list[ContactUri], is_own: Callable[[str, int], bool],
                    is_trunk: Callable[[str, int], bool]) -> Optional[str]:
    """Why the REGISTER's Contacts cannot be kept (None: they can). A desk registers where it
    is: an IP address of its own, its extension (or a name) as the user part. Refused, with
    the first Contact that breaks it:
    - an address of a trunk (the carrier would be rung with the subscriber's calls, at our
      cost) or of the proxy itself (a loop, or the proxy's own services);
    - a number as the user part (7+ digits, or ;user=phone): an address that dials a number
      is a gateway's, known to us or not;
    - a host name: the proxy cannot tell where it points (a trunk's name, for one);
    - anything that is not a sip:/sips: URI with a host."""
    for c in contacts:
        if c.wildcard:
            continue            # "*" unregisters (the registrar checks its Expires: 0)
        if c.scheme not in ("sip", "sips") or not c.host or c.port < 0:
            return f"{c.text}: not a SIP address of a phone"
        ip = _ip(c.host)
        if ip is None:
            return f"{c.text}: a host name, not the phone's address"
        if is_own(ip, c.port_or_default):
            return f"{c.text}: the proxy's own address"
        if is_trunk(ip, c.port_or_default):
            return f"{c.text}: a trunk's address"
        if c.user_phone or is_number_like(c.user):
            return f"{c.text}: a number as the user part (a gateway's address)"
    return None
