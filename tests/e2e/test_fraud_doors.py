"""The toll-fraud doors (issue 22, docs/security.md), tried on the wire as a fraudster would:
each attempt is refused with a clear reply, a listener on the trunk's address and one on an
outside address hear nothing, the refusal is counted by reason, and nothing is left behind.

- forged in-dialog requests (a To-tag and a Route naming the proxy, no dialog of ours);
- a party of a real call aiming its next request of that call at the trunk;
- a desk account registering a Contact at the trunk, at the proxy, or at a number;
- the far end of a call sending REFER (to the handoff code, to a number), also with the tags
  swapped so that it looks like the desk's."""
from __future__ import annotations

import hashlib
import re
import socket
import time
import uuid

import pytest

from lab.agents import DESK_IPS, STRANGER_IP, TRUNK_IP, add_subscriber
from lab.calls import MOBILE_PORT, SUB_EXT, setup_subscriber
from lab.residue import assert_no_residue
from tests.support.metrics import scrape
from lab.rtp import wait_for
from tests.support.pjsip_scenarios import (answered_on_the_desk, codes, far_end_hangs_up,
                                           replies_received)

pytestmark = pytest.mark.e2e

OUTSIDE = ("127.0.1.99", 5060)          # an outside host: nothing of ours may reach it
TRUNK_LISTEN = (TRUNK_IP, MOBILE_PORT)  # where the trunk takes calls (the twin legs' address)
PASSWORD = "fraud-doors-7731"


class Listener:
    """A UDP socket that hears whatever the proxy sends to an address."""

    def __init__(self, address: tuple[str, int]):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def heard(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536).decode(errors="replace").split("\r\n", 1)[0])
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listeners():
    trunk, outside = Listener(TRUNK_LISTEN), Listener(OUTSIDE)
    yield trunk, outside
    trunk.close()
    outside.close()


class Sender:
    """A raw SIP endpoint on one address: sends a request, returns the final reply's text."""

    def __init__(self, cfg, ip: str):
        self.cfg = cfg
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(3)
        self.ip, self.port = ip, self.sock.getsockname()[1]

    def send(self, text: str) -> str:
        via = f"SIP/2.0/UDP {self.ip}:{self.port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport"
        text = text.replace("{via}", via).replace("{me}", f"{self.ip}:{self.port}")
        body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
        head = text.split("\n\n", 1)[0].strip("\n")
        wire = (head.replace("\n", "\r\n") + f"\r\nContent-Length: {len(body)}\r\n\r\n" + body)
        self.sock.sendto(wire.encode(), (self.cfg.proxy_address, self.cfg.proxy_port))
        deadline = time.time() + 3
        while time.time() < deadline:
            try:
                reply = self.sock.recv(65536).decode(errors="replace")
            except socket.timeout:
                break
            if not re.match(r"SIP/2.0 1\d\d", reply):
                return reply
        return ""

    def close(self) -> None:
        self.sock.close()


def status(reply: str) -> str:
    return reply.split("\r\n", 1)[0]


def refused(cfg) -> dict[str, float]:
    return {dict(labels)["reason"]: value for (name, labels), value in
            scrape(cfg.metrics_kamailio).items()
            if name.endswith("twinning_security_refused_total")}


def counted(before: dict, after: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


FORGED = """{method} {ruri} SIP/2.0
Via: {via}
Max-Forwards: 70
Route: <sip:{proxy};lr>
From: <sip:2125550101@{proxy}>;tag=fraud{n}
To: <{ruri}>;tag=forged{n}
Call-ID: forged-{n}@{stranger}
CSeq: 2 {method}
Contact: <sip:x@{me}>
Content-Type: {ctype}

{body}"""

SDP = ("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0\r\n")


@pytest.mark.parametrize("method, ruri", [
    ("INVITE", "sip:+18762901234@{trunk}"),             # Jamaica, at the site's expense
    ("INVITE", "sip:+12125550123@{trunk}"),             # a US number
    ("INVITE", "sip:011447700900123@{trunk}"),
    ("MESSAGE", "sip:anyone@{outside}"),                # any outside host
    ("BYE", "sip:anyone@{outside}"),
])
def test_given_a_stranger_when_it_forges_an_in_dialog_request_then_481_and_nobody_hears_it(
        stack, db, listeners, method, ruri):
    trunk, outside = listeners
    before = refused(stack)
    ruri = ruri.format(trunk=f"{TRUNK_LISTEN[0]}:{TRUNK_LISTEN[1]}",
                       outside=f"{OUTSIDE[0]}:{OUTSIDE[1]}")
    stranger = Sender(stack, STRANGER_IP)
    try:
        n = uuid.uuid4().hex[:8]
        body = SDP.format(ip=STRANGER_IP) if method == "INVITE" else "call me"
        reply = stranger.send(FORGED.format(
            method=method, ruri=ruri, proxy=stack.proxy_address, n=n, stranger=STRANGER_IP,
            me="{me}", via="{via}", body=body,
            ctype="application/sdp" if method == "INVITE" else "text/plain"))
    finally:
        stranger.close()
    assert status(reply) == "SIP/2.0 481 Call/Transaction Does Not Exist"
    time.sleep(0.5)
    assert trunk.heard() == [] and outside.heard() == []
    assert counted(before, refused(stack)) == {"unknown-dialog": 1}
    assert_no_residue(stack)                    # no rtpengine session was opened for it


# ---- the registrar's Contacts ------------------------------------------------------------------

def digest_register(cfg, sender: Sender, ext: str, password: str, contact: str) -> str:
    """REGISTER with digest credentials (answering the proxy's challenge), as a phone does."""
    call_id, realm = f"reg-{uuid.uuid4().hex[:10]}", cfg.proxy_address
    template = (f"REGISTER sip:{realm} SIP/2.0\nVia: {{via}}\nMax-Forwards: 70\n"
                f"From: <sip:{ext}@{realm}>;tag=r{call_id}\nTo: <sip:{ext}@{realm}>\n"
                f"Call-ID: {call_id}\nCSeq: {{cseq}} REGISTER\nContact: {contact}\n"
                f"Expires: 600\n{{auth}}\n")
    reply = sender.send(template.replace("{cseq}", "1").replace("{auth}", ""))
    challenge = re.search(r"WWW-Authenticate: Digest (.*)", reply)
    if not challenge:
        return reply
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.group(1)))
    uri = f"sip:{realm}"
    ha1 = hashlib.md5(f"{ext}:{fields['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
    auth = (f'Authorization: Digest username="{ext}", realm="{fields["realm"]}", '
            f'nonce="{fields["nonce"]}", uri="{uri}", algorithm=MD5')
    if "auth" in fields.get("qop", ""):
        cnonce, nc = uuid.uuid4().hex[:8], "00000001"
        response = hashlib.md5(f"{ha1}:{fields['nonce']}:{nc}:{cnonce}:auth:{ha2}".encode())
        auth += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = hashlib.md5(f"{ha1}:{fields['nonce']}:{ha2}".encode())
    auth += f', response="{response.hexdigest()}"'
    return sender.send(template.replace("{cseq}", "2").replace("{auth}", auth + "\n"))


def location_rows(db, ext: str) -> list[str]:
    return [r["contact"] for r in db.execute(
        "SELECT contact FROM location WHERE username = %s", (ext,)).fetchall()]


@pytest.mark.parametrize("contact", [
    "<sip:011447700900123@{trunk}>",            # every call to the DID out to the UK
    "<sip:1001@{trunk}:5090>",                  # the trunk's host, any port
    "<sip:+18762901234@127.0.1.98:5060>",       # a number: some gateway's address
    "<sip:1001@{proxy}:5060>",                  # the proxy itself: a loop
    "<sip:1001@gateway.example.net>",           # a name: where it points is not ours to know
])
def test_given_a_desk_account_when_it_registers_a_contact_at_a_trunk_or_a_number_then_403(
        stack, db, contact):
    ext = "1801"
    add_subscriber(db, stack, ext, "+12125551801", password=PASSWORD)
    before = refused(stack)
    sender = Sender(stack, DESK_IPS[2])
    try:
        reply = digest_register(stack, sender, ext, PASSWORD, contact.format(
            trunk=TRUNK_IP, proxy=stack.proxy_address))
        assert status(reply) == "SIP/2.0 403 Contact Not Allowed"
        assert location_rows(db, ext) == []
        assert counted(before, refused(stack)) == {"contact-not-allowed": 1}
        # The same account from its own address registers as before.
        own = digest_register(stack, sender, ext, PASSWORD, "<sip:1801@{me}>")
        assert status(own) == "SIP/2.0 200 OK"
        assert location_rows(db, ext) == [f"sip:1801@{sender.ip}:{sender.port}"]
    finally:
        sender.close()
        db.execute("DELETE FROM location WHERE username = %s", (ext,))


# ---- the far end's REFER -----------------------------------------------------------------------

def invite_ok(oks):
    """The 200 that answered the INVITE, among a phone's 200s."""
    return [m for m in oks if m.header("CSeq").endswith("INVITE")][0]


def d1_tags(invite, ok) -> tuple[str, str]:
    """The caller's and the callee's tags of D1, from its INVITE and the INVITE's 200."""
    def tag(header: str) -> str:
        return re.search(r"tag=([^;>\s]+)", header).group(1)
    return tag(invite.header("From")), tag(ok.header("To"))


def test_given_a_call_on_the_desk_when_the_far_end_sends_refer_then_403_and_the_desk_never_sees_it(
        stack, db, phones):
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    before = refused(stack)
    mobile_invites = len(call.mobile.received("INVITE"))
    for n, target in enumerate((f"sip:*55@{stack.proxy_address}",
                                f"sip:+18762901234@{TRUNK_IP}"), 1):
        call.far_call.xfer(target)
        finals = wait_for(lambda: [c for c in codes(replies_received(call.far_call, "REFER"))
                                   if c >= 200][n - 1:], 5, "the REFER's answer")
        assert finals == [403]
    time.sleep(0.5)
    assert call.desk.received("REFER") == []
    assert len(call.mobile.received("INVITE")) == mobile_invites    # no handoff started
    assert counted(before, refused(stack)) == {"refer-not-from-desk": 2}
    far_end_hangs_up(call, call.desk_call)
    assert_no_residue(stack)


def test_given_the_far_end_swaps_the_tags_when_it_sends_refer_to_the_code_then_403(
        stack, db, phones):
    """The desk's tag as From, the far end's as To: what the far end knows of D1 is enough to
    look like the desk, but not its address."""
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    invite = call.far.sent("INVITE")[0]
    ok = invite_ok(call.far.received("200"))
    far_tag, desk_tag = d1_tags(invite, ok)
    far_contact = re.search(r"<([^>]+)>", invite.header("Contact")).group(1)
    route = ok.header("Record-Route")
    before = refused(stack)
    mobile_invites = len(call.mobile.received("INVITE"))
    forger = Sender(stack, TRUNK_IP)
    try:
        reply = forger.send(
            f"REFER {far_contact} SIP/2.0\nVia: {{via}}\nMax-Forwards: 70\nRoute: {route}\n"
            f"From: <sip:{SUB_EXT}@{stack.proxy_address}>;tag={desk_tag}\n"
            f"To: <sip:x@{TRUNK_IP}>;tag={far_tag}\nCall-ID: {invite.header('Call-ID')}\n"
            f"CSeq: 900 REFER\nContact: <sip:{SUB_EXT}@{{me}}>\n"
            f"Refer-To: <sip:*55@{stack.proxy_address}>\n")
    finally:
        forger.close()
    assert status(reply) == "SIP/2.0 403 Forbidden"
    time.sleep(0.5)
    assert len(call.mobile.received("INVITE")) == mobile_invites
    assert counted(before, refused(stack)) == {"refer-not-from-desk": 1}
    far_end_hangs_up(call, call.desk_call)
    assert_no_residue(stack)


def test_given_a_party_of_a_real_call_when_it_aims_a_request_of_it_at_the_trunk_then_403(
        stack, db, phones):
    """A dialog of ours, the right tags, from the desk's own address: but the R-URI is a
    number at the trunk rather than the far end's Contact. Relayed, it would be an outside
    call past the outbound rules."""
    outside = Listener(OUTSIDE)             # the trunk's address is the PJSIP mobile's
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    desk_invite = call.desk.received("INVITE")[0]
    far_tag, desk_tag = d1_tags(desk_invite, invite_ok(call.desk.sent("200")))
    route = desk_invite.header("Record-Route")
    before = refused(stack)
    desk = Sender(stack, DESK_IPS[0])
    try:
        for ruri in (f"sip:+18762901234@{TRUNK_LISTEN[0]}:{TRUNK_LISTEN[1]}",
                     f"sip:anyone@{OUTSIDE[0]}:{OUTSIDE[1]}"):
            reply = desk.send(
                f"MESSAGE {ruri} SIP/2.0\nVia: {{via}}\nMax-Forwards: 70\nRoute: {route}\n"
                f"From: <sip:{SUB_EXT}@{stack.proxy_address}>;tag={desk_tag}\n"
                f"To: <sip:x@{TRUNK_IP}>;tag={far_tag}\n"
                f"Call-ID: {desk_invite.header('Call-ID')}\nCSeq: 900 MESSAGE\n"
                f"Content-Type: text/plain\n\nhello")
            assert status(reply) == "SIP/2.0 403 Forbidden"
    finally:
        desk.close()
    time.sleep(0.5)
    heard = outside.heard()
    outside.close()
    assert heard == [] and call.mobile.received("MESSAGE") == []
    assert call.far.received("MESSAGE") == []
    assert counted(before, refused(stack)) == {"relay-denied": 2}
    far_end_hangs_up(call, call.desk_call)
    assert_no_residue(stack)
