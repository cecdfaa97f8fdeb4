"""The subscriber's web page in a real browser (Playwright driving Debian's chromium, JavaScript
off: the page must work without it), against the stack's own uvicorn, PostgreSQL and, for the
last test, Kamailio: what the page shows, what the database holds afterwards, and a call that
rings the mobile the page just set.

Names used to find things are the page's accessible names, the contract of issue 12.
"""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lab import calls
from lab.agents import STRANGER_IP, add_subscriber
from lab.calls import SUB_DID, SUB_EXT, SUB_TWIN, Call, register_desk, trunk_caller
from lab.rtp import wait_for
from portal.app import formatted as calls_formatted
from twinctl import stack as stack_mod
from twinning import config as site_config

pytestmark = pytest.mark.e2e

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "secret1"                                  # lab.agents' desk password
OTHER_EXT, OTHER_DID, OTHER_TWIN = "1002", "+12125550102", "+16465550177"
PHONE = {"width": 390, "height": 844}                 # a phone's screen, in CSS pixels
SCREENSHOTS = os.environ.get("TWIN_SCREENSHOTS")      # set: the docs' screenshots go there


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install.sh (Debian package chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def site(stack, db):
    """Two subscribers (1001 Ann, 1002 with a twin), no sessions, failures or lock-outs."""
    db.execute("DELETE FROM portal_login_failure")
    db.execute("DELETE FROM portal_lockout")
    add_subscriber(db, stack, SUB_EXT, SUB_DID)
    add_subscriber(db, stack, OTHER_EXT, OTHER_DID)
    db.execute("INSERT INTO twin (subscriber_id, number) SELECT id, %s FROM subscriber"
               " WHERE extension = %s", (OTHER_TWIN, OTHER_EXT))
    return stack.web.url


@pytest.fixture
def page(browser, site, logdir):
    context = browser.new_context(java_script_enabled=False, viewport=PHONE)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    tab.screenshot(path=str(logdir / "last-page.png"), full_page=True)   # what it ended on
    context.close()


# ---- helpers -------------------------------------------------------------------------------

def posted(page, path: str):
    """Expect the POST the next action sends to path; .value is its response."""
    return page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(path))


def log_in(page, site: str, ext: str = SUB_EXT, password: str = PASSWORD):
    page.goto(f"{site}/login")
    page.get_by_label("Extension").fill(ext)
    page.get_by_label("Password").fill(password)
    with posted(page, "/login") as reply:
        page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    return reply.value


def alert(page) -> str:
    return page.get_by_role("alert").inner_text().strip()


def sub_row(db, ext: str = SUB_EXT) -> dict:
    return db.execute("SELECT s.id, s.current_status_id, st.name AS current, t.number AS twin"
                      " FROM subscriber s JOIN status st ON st.id = s.current_status_id"
                      " LEFT JOIN twin t ON t.subscriber_id = s.id WHERE s.extension = %s",
                      (ext,)).fetchone()


def status_of(db, name: str, ext: str = SUB_EXT) -> dict:
    return db.execute("SELECT st.id, st.send_to::text AS send_to, st.ring_desk, st.ring_mobile"
                      " FROM status st JOIN subscriber s ON s.id = st.subscriber_id"
                      " WHERE s.extension = %s AND st.name = %s", (ext, name)).fetchone()


def sessions(db, ext: str = SUB_EXT) -> int:
    return db.execute("SELECT count(*) AS n FROM portal_session p JOIN subscriber s"
                      " ON s.id = p.subscriber_id WHERE s.extension = %s", (ext,)).fetchone()["n"]


def csrf_of(page) -> str:
    return page.locator("input[name=csrf]").first.get_attribute("value")


def twinctl_refusal(number: str) -> str:
    """What twinctl says about the number, without its 'error: ' prefix."""
    res = subprocess.run([sys.executable, "-m", "twinctl.main", "twin", "set", SUB_EXT, number],
                         capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert res.returncode != 0
    return res.stderr.strip().removeprefix("error: ")


def set_mobile_and_tick_it(page, site: str, number: str, status: str = "In Office") -> None:
    """What the subscriber does: My Numbers, enter the number, Save; Manage Status, choose the
    status, Send my calls to My Ring Group, tick Desk and Mobile, Done."""
    page.get_by_role("link", name="My Numbers").click()
    page.get_by_label("Mobile").fill(number)
    page.get_by_role("button", name="Save").click()
    page.get_by_role("link", name="Manage Status").click()
    page.get_by_role("link", name=status, exact=True).click()
    page.get_by_label("Send my calls to").select_option(label="My Ring Group")
    page.get_by_label("Desk").check()
    page.get_by_label("Mobile").check()
    page.get_by_role("button", name="Done").click()
    page.wait_for_load_state()


# ---- log in ----------------------------------------------------------------------------------

def test_given_the_right_password_then_a_session_with_a_strict_http_only_cookie(page, site, db):
    reply = log_in(page, site)
    assert reply.status == 303 and page.url == f"{site}/numbers"
    for name in ("My Numbers", "Manage Status", "Log out"):
        assert page.get_by_role("link", name=name).is_visible()
    cookie, = [c for c in page.context.cookies() if c["name"] == "twin_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert cookie["expires"] == -1                          # a browser-session cookie
    assert sessions(db) == 1
    stored = db.execute("SELECT token_hash FROM portal_session").fetchone()["token_hash"]
    assert cookie["value"] not in stored                    # only the token's hash is kept
    dump = str(db.execute("SELECT p.*, s.* FROM portal_session p, subscriber s").fetchall())
    assert PASSWORD not in dump


def test_given_a_wrong_password_then_an_error_and_no_session(page, site, db):
    reply = log_in(page, site, password="not-it")
    assert reply.status == 401
    assert alert(page) == "Wrong extension or password."
    assert not [c for c in page.context.cookies() if c["name"] == "twin_session"]
    assert sessions(db) == 0
    page.goto(f"{site}/numbers")                            # no way in without a session
    assert page.url == f"{site}/login"


def test_given_ten_wrong_passwords_then_the_right_one_is_refused_429_for_ten_minutes(
        page, site, db):
    for attempt in range(10):
        assert log_in(page, site, password=f"wrong{attempt}").status == 401, attempt
    reply = log_in(page, site)
    assert reply.status == 429
    assert alert(page).startswith(f"Too many wrong passwords for extension {SUB_EXT}: "
                                  "log-in is refused for 10 minutes")
    assert sessions(db) == 0
    left = db.execute("SELECT extract(epoch FROM until - now()) AS s FROM portal_lockout"
                      " WHERE kind = 'extension' AND key = %s", (SUB_EXT,)).fetchone()["s"]
    assert 590 < left <= 600
    assert log_in(page, site, OTHER_EXT).status == 303      # another extension is not locked
    db.execute("UPDATE portal_lockout SET until = now() - interval '1 second'")
    db.execute("UPDATE portal_login_failure SET at = at - interval '10 minutes'")
    page.context.clear_cookies()
    assert log_in(page, site).status == 303                 # ten minutes later: in again


def test_given_many_wrong_passwords_from_one_address_then_its_log_ins_are_refused(
        page, site, db):
    for n in range(30):                                    # [web] address_failures, 3 per ext
        assert log_in(page, site, ext=f"{3000 + n // 3}", password="guess").status == 401, n
    reply = log_in(page, site)                              # a fresh extension, right password
    assert reply.status == 429
    assert alert(page).startswith("Too many wrong passwords for your address")
    assert sessions(db) == 0


def test_given_a_session_when_logging_out_or_expired_then_the_pages_ask_to_log_in(
        page, site, db):
    log_in(page, site)
    page.get_by_role("link", name="Log out").click()
    assert page.url == f"{site}/login?done=logged-out" and sessions(db) == 0
    page.goto(f"{site}/status")
    assert page.url == f"{site}/login"
    log_in(page, site)
    db.execute("UPDATE portal_session SET expires_at = now() - interval '1 second'")
    page.goto(f"{site}/status")
    assert page.url == f"{site}/login?done=expired"
    assert "Your session has ended" in page.get_by_role("status").inner_text()


def test_given_the_page_restarted_then_its_sessions_and_failure_counts_are_still_there(
        page, site, db, stack):
    """Sessions, failures and lock-outs live in PostgreSQL, not in a uvicorn process: what
    one worker (or a page since restarted) counted, the next one knows."""
    for attempt in range(5):
        assert log_in(page, site, OTHER_EXT, f"wrong{attempt}").status == 401
    assert log_in(page, site).status == 303
    portal = stack_mod.Portal(stack, stack_mod.Paths(stack))
    before = stack.state_dir.joinpath("run", "portal.pid").read_text()
    assert portal.stop()
    portal.start()
    assert stack.state_dir.joinpath("run", "portal.pid").read_text() != before
    page.goto(f"{site}/numbers")
    assert page.url == f"{site}/numbers"                    # still logged in
    other = page.context.browser.new_context(java_script_enabled=False)
    try:
        tab = other.new_page()
        for attempt in range(5, 10):
            assert log_in(tab, site, OTHER_EXT, f"wrong{attempt}").status == 401
        assert log_in(tab, site, OTHER_EXT).status == 429   # the tenth was counted with the first
    finally:
        other.close()


# ---- My Numbers ------------------------------------------------------------------------------

def test_given_a_good_number_then_it_is_stored_e164_and_shown_formatted_then_removed(
        page, site, db):
    log_in(page, site)
    page.get_by_label("Mobile").fill("917.555.0123")
    page.get_by_role("button", name="Save").click()
    assert sub_row(db)["twin"] == "+19175550123"
    assert page.get_by_role("status").inner_text() == "Saved."
    assert page.locator(".current-number").inner_text() == "Mobile: (917) 555-0123"
    assert page.get_by_label("Mobile").input_value() == "(917) 555-0123"
    page.get_by_role("button", name="Remove").click()
    assert sub_row(db)["twin"] is None
    assert page.locator(".current-number").inner_text() == "No Mobile number is set."


@pytest.mark.parametrize("number", ["900 555 0123", "(212) 976-1234", "411-555-0123",
                                    "+44 20 7946 0000", "555-0123", "800 555 0123",
                                    "212 555 0101"])
def test_given_a_number_twinctl_refuses_then_the_page_refuses_it_with_the_same_reason(
        page, site, db, number):
    log_in(page, site)
    page.get_by_label("Mobile").fill("646 555 0100")
    page.get_by_role("button", name="Save").click()
    page.get_by_label("Mobile").fill(number)
    with posted(page, "/numbers") as reply:
        page.get_by_role("button", name="Save").click()
    assert reply.value.status == 400
    assert alert(page) == twinctl_refusal(number)
    assert sub_row(db)["twin"] == "+16465550100"             # nothing changed
    assert page.get_by_label("Mobile").input_value() == number


# ---- Manage Status ---------------------------------------------------------------------------

def test_given_the_statuses_then_each_is_listed_and_the_current_one_marked(page, site, db):
    log_in(page, site)
    page.get_by_role("link", name="Manage Status").click()
    for name in ("In Office", "Out of Office", "In a Meeting", "Do Not Disturb", "On Vacation"):
        assert page.get_by_role("link", name=name, exact=True).is_visible()
    current = page.locator("li[aria-current=true]")
    assert current.count() == 1 and "In Office" in current.inner_text()
    assert "Current" in current.inner_text()


def test_given_a_status_when_edited_then_it_is_stored_and_a_twinctl_listing_shows_it(
        page, site, db):
    log_in(page, site)
    page.get_by_role("link", name="Manage Status").click()
    page.get_by_role("link", name="In a Meeting").click()
    select = page.get_by_label("Send my calls to")
    options = [o.strip() for o in select.locator("option").all_text_contents()]
    assert options == ["My Ring Group", "Voicemail"]
    assert select.input_value() == "voicemail"
    select.select_option(label="My Ring Group")
    page.get_by_label("Desk").uncheck()
    page.get_by_label("Mobile").check()
    page.get_by_role("button", name="Done").click()
    assert status_of(db, "In a Meeting") | {"id": 0} == {
        "id": 0, "send_to": "ring-group", "ring_desk": False, "ring_mobile": True}
    listing = subprocess.run([sys.executable, "-m", "twinctl.main", "status", "list", SUB_EXT],
                             capture_output=True, text=True, timeout=30).stdout
    assert [line.split()[-2:] for line in listing.splitlines() if "Meeting" in line] == [
        ["ring-group", "mobile"]]
    # a ring group of nobody is refused, nothing changes
    page.get_by_role("link", name="In a Meeting").click()
    page.get_by_label("Mobile").uncheck()
    with posted(page, f"/status/{status_of(db, 'In a Meeting')['id']}") as reply:
        page.get_by_role("button", name="Done").click()
    assert reply.value.status == 400
    assert alert(page) == "A ring group needs at least one member: tick Desk, Mobile or both."
    assert status_of(db, "In a Meeting")["ring_mobile"] is True


def test_given_another_status_when_made_current_then_it_is_the_current_one(page, site, db):
    log_in(page, site)
    page.get_by_role("link", name="Manage Status").click()
    row = page.locator("ul.statuses > li", has_text="Do Not Disturb")
    row.get_by_role("button", name="Make current").click()
    assert sub_row(db)["current"] == "Do Not Disturb"
    current = page.locator("li[aria-current=true]")
    assert current.count() == 1 and "Do Not Disturb" in current.inner_text()


# ---- what a session may do -------------------------------------------------------------------

class _AttackerPage(http.server.BaseHTTPRequestHandler):
    """Another site: a page whose button posts to the subscriber's page."""
    target = ""

    def do_GET(self):   # noqa: N802 (http.server's name)
        body = (f'<!doctype html><form method="post" action="{self.target}/numbers">'
                '<input type="hidden" name="number" value="3125550111">'
                '<input type="hidden" name="csrf" value="guessed">'
                '<button>Win a prize</button></form>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_given_a_logged_in_subscriber_when_another_site_posts_then_403_and_no_change(
        page, site, db):
    log_in(page, site)
    page.get_by_label("Mobile").fill("646 555 0100")
    page.get_by_role("button", name="Save").click()
    token = csrf_of(page)
    _AttackerPage.target = site
    server = http.server.HTTPServer((STRANGER_IP, 0), _AttackerPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://{STRANGER_IP}:{server.server_port}/")
        with posted(page, "/numbers") as reply:
            page.get_by_role("button", name="Win a prize").click()
        assert reply.value.status == 403
        assert "another site" in alert(page)
    finally:
        server.shutdown()
        server.server_close()
    assert sub_row(db)["twin"] == "+16465550100"
    # the session's own token but a foreign Origin, then no token, then a wrong one: 403 each
    for headers, form in (({"Origin": "http://evil.example"}, {"csrf": token}),
                          ({"Origin": site}, {}),
                          ({"Origin": site}, {"csrf": "0" * 43})):
        reply = page.request.post(f"{site}/numbers", headers=headers,
                                  form={"number": "3125550111", **form}, max_redirects=0)
        assert reply.status == 403, (headers, form)
    assert sub_row(db)["twin"] == "+16465550100"
    reply = page.request.post(f"{site}/numbers", headers={"Origin": site}, max_redirects=0,
                              form={"number": "3125550111", "csrf": token})
    assert reply.status == 303 and sub_row(db)["twin"] == "+13125550111"   # the real form's way


def test_given_a_subscriber_then_another_subscribers_data_is_out_of_reach(page, site, db):
    db.execute("INSERT INTO call (call_id, subscriber_id, direction, caller, callee, rang,"
               " answered_by, ended_at) SELECT 'other-call', id, 'inbound', '3125550999',"
               " %s, '{desk}', 'desk', now() FROM subscriber WHERE extension = %s",
               (OTHER_DID, OTHER_EXT))
    log_in(page, site)
    token = csrf_of(page)
    theirs = status_of(db, "On Vacation", OTHER_EXT)
    before = sub_row(db, OTHER_EXT), theirs
    reply = page.goto(f"{site}/status/{theirs['id']}")
    assert reply.status == 404 and "On Vacation" not in page.locator("main").inner_text()
    for path, form in ((f"/status/{theirs['id']}/current", {}),
                       (f"/status/{theirs['id']}", {"send_to": "ring-group", "ring": "mobile"})):
        reply = page.request.post(f"{site}{path}", headers={"Origin": site}, max_redirects=0,
                                  form={"csrf": token, **form})
        assert reply.status == 404, path
    assert (sub_row(db, OTHER_EXT), status_of(db, "On Vacation", OTHER_EXT)) == before
    for path in ("/numbers", "/status", "/calls"):
        page.goto(f"{site}{path}")
        text = page.locator("main").inner_text()
        assert "(646) 555-0177" not in text and "3125550999" not in text, path
        assert "(212) 555-0101" in text                      # the subscriber's own DID


def test_given_each_page_on_a_phone_screen_then_nothing_scrolls_sideways(page, site, db):
    db.execute("INSERT INTO call (call_id, subscriber_id, direction, caller, callee, rang,"
               " answered_by, answered_at, ended_at, outcome) SELECT 'shot-call', id, 'inbound',"
               " '+13125550199', %s, '{desk,mobile}', 'desk', now(), now(), 'completed'"
               " FROM subscriber WHERE extension = %s", (SUB_DID, SUB_EXT))
    db.execute("INSERT INTO handoff (call_id, from_device, to_device, completed_at, outcome)"
               " VALUES ('shot-call', 'desk', 'mobile', now(), 'completed')")
    shots = Path(SCREENSHOTS) if SCREENSHOTS else None

    def check(name: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{name}: {width} px wide on a {PHONE['width']} px screen"
        if shots:
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / f"portal-{name}.png"), full_page=True)

    page.goto(f"{site}/login")
    check("login")
    log_in(page, site)
    set_mobile_and_tick_it(page, site, "917 555 0123")
    page.get_by_role("link", name="My Numbers").click()
    check("my-numbers")
    page.get_by_label("Mobile").fill("900 555 0123")
    page.get_by_role("button", name="Save").click()
    check("my-numbers-refused")
    page.get_by_role("link", name="Manage Status").click()
    check("manage-status")
    page.get_by_role("link", name="In Office", exact=True).click()
    check("status-in-office")
    page.get_by_role("link", name="Recent Calls").click()
    text = page.locator("main").inner_text()
    assert "Desk → Mobile, completed" in text and "(312) 555-0199" in text
    check("recent-calls")


# ---- the next call ---------------------------------------------------------------------------

def test_given_the_page_set_the_mobile_and_ticked_it_then_the_next_call_rings_it(
        page, site, db, stack, logdir):
    db.execute("DELETE FROM twin")                          # the desk alone rings, no twin
    register_desk(stack, logdir)
    log_in(page, site)
    set_mobile_and_tick_it(page, site, "917 555 0123")
    assert sub_row(db)["twin"] == SUB_TWIN
    assert status_of(db, "In Office") | {"id": 0} == {
        "id": 0, "send_to": "ring-group", "ring_desk": True, "ring_mobile": True}
    call = Call({"desk": calls.desk("uas/ring_cancel.xml"),
                 "mobile": calls.mobile("uas/answer.xml", pause_ms=800),
                 "caller": trunk_caller(stack)})
    calls.talk(call, logdir, "caller", "200", "mobile", "INVITE")
    invite = call["mobile"].agent.received("INVITE")[0]
    assert invite.startswith(f"INVITE sip:{SUB_TWIN}@")
    assert call["desk"].agent.received("CANCEL")               # the mobile won
    calls.assert_nothing_left(stack)
    page.get_by_role("link", name="Recent Calls").click()
    text = " ".join(page.locator("ol.calls > li").first.inner_text().split())
    for shown in ("Who called (312) 555-0199", f"Called {calls_formatted(SUB_DID)}",
                  "Rang Desk, Mobile", "Answered on Mobile", "Handoffs none"):
        assert shown in text, text


# ---- over TLS --------------------------------------------------------------------------------

@pytest.fixture
def tls_site(stack, site, tmp_path):
    """A second instance of the page, served over HTTPS (a self-signed certificate) on another
    port of the same address, for the same stack's database."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={stack.web.address}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    text = stack.path.read_text()
    assert f"port = {stack.web.port}\n" in text and 'tls_cert = ""' in text
    text = (text.replace(f"port = {stack.web.port}\n", f"port = {stack.web.port + 363}\n")
            .replace('tls_cert = ""', f'tls_cert = "{cert}"')
            .replace('tls_key = ""', f'tls_key = "{key}"')
            .replace("workers = 1 ", "workers = 2 "))           # two uvicorn worker processes
    path = tmp_path / "site-tls.toml"
    path.write_text(text)
    tls_cfg = site_config.load(path)
    assert tls_cfg.web.url == f"https://{stack.web.address}:{stack.web.port + 363}"
    assert tls_cfg.web.workers == 2
    env = dict(os.environ, TWIN_CONFIG=str(path), TWIN_STATE_DIR=str(stack.state_dir))
    log = open(tmp_path / "portal-tls.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "portal"], env=env, stdout=log, stderr=log)
    try:
        wait_for(lambda: stack_mod.web_ping(tls_cfg) or proc.poll() is not None, 20,
                 "the HTTPS page to answer")
        assert proc.poll() is None, (tmp_path / "portal-tls.log").read_text()
        yield tls_cfg.web.url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_given_the_page_over_tls_then_its_session_cookie_is_secure(browser, tls_site, db):
    context = browser.new_context(java_script_enabled=False, ignore_https_errors=True)
    try:
        tab = context.new_page()
        assert log_in(tab, tls_site).status == 303 and tab.url == f"{tls_site}/numbers"
        cookie, = [c for c in context.cookies() if c["name"] == "twin_session"]
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert sessions(db) == 1
    finally:
        context.close()
