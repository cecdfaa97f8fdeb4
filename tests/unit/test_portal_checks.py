"""The web page's own checks that need no browser: whose POST a request is (Origin, Referer,
Sec-Fetch-Site), the log-in form's CSRF token, numbers as shown, the [web] site config."""
from __future__ import annotations

import pytest
from starlette.requests import Request

from portal import app, auth
from twinning.config import DEFAULT_CONFIG, ConfigError, load

pytestmark = pytest.mark.unit

SITE = "http://127.0.0.1:8080"


def request(**headers) -> Request:
    return Request({"type": "http", "method": "POST", "scheme": "http", "path": "/numbers",
                    "server": ("127.0.0.1", 8080), "query_string": b"",
                    "headers": [(b"host", b"127.0.0.1:8080")] +
                               [(k.replace("_", "-").encode(), v.encode())
                                for k, v in headers.items()]})


@pytest.mark.parametrize("headers,foreign", [
    ({"origin": SITE}, False),
    ({"origin": "http://127.0.0.9:8080"}, True),
    ({"origin": "https://127.0.0.1:8080"}, True),           # another scheme is another origin
    ({"origin": "null"}, True),
    ({"referer": f"{SITE}/status"}, False),
    ({"referer": "http://evil.example/x"}, True),
    ({"sec_fetch_site": "cross-site", "origin": SITE}, True),
    ({}, False),                                            # no header: the token decides
])
def test_given_a_post_then_its_origin_is_judged(headers, foreign):
    assert app.foreign_origin(request(**headers)) is foreign


def test_given_the_login_forms_token_then_only_its_own_nonce_matches():
    secret = b"k" * 32
    nonce = auth.login_nonce()
    token = auth.login_csrf(secret, nonce)
    assert auth.login_csrf_ok(secret, nonce, token)
    assert not auth.login_csrf_ok(secret, auth.login_nonce(), token)
    assert not auth.login_csrf_ok(b"x" * 32, nonce, token)
    assert not auth.login_csrf_ok(secret, None, token) and not auth.login_csrf_ok(secret, nonce, "")


def test_given_a_session_then_only_its_own_csrf_token_matches():
    sess = auth.Session("0" * 64, "t" * 43, 1)
    assert auth.session_csrf_ok(sess, "t" * 43)
    assert not auth.session_csrf_ok(sess, "u" * 43) and not auth.session_csrf_ok(sess, None)
    assert not auth.session_csrf_ok(None, "t" * 43)
    assert not auth.session_csrf_ok(sess, "tä" * 20)                  # not ASCII: no, no error
    assert not auth.session_csrf_ok(sess, object())                  # a file field: no


def test_given_an_e164_number_then_it_is_shown_as_the_subscriber_reads_it():
    assert app.formatted("+19175550123") == "(917) 555-0123"
    assert app.formatted(None) == ""


def test_given_the_site_configs_then_web_defaults_follow_the_proxy_address(tmp_path):
    assert load(DEFAULT_CONFIG).web.url == "http://127.0.0.1:8080"
    path = tmp_path / "site.toml"
    text = (DEFAULT_CONFIG.read_text().split("\n[web]")[0] + "\n[state]\ndir = \"/tmp/x\"\n")
    path.write_text(text.replace('address = "127.0.0.1"', 'address = "127.0.0.7"', 1))
    web = load(path).web
    assert (web.address, web.port, web.lockout_failures, web.lockout_minutes) == (
        "127.0.0.7", 8080, 10, 10)


@pytest.mark.parametrize("line,reason", [
    ('tls_cert = "/etc/cert.pem"', "tls_cert and tls_key go together"),
    ('port = "8080"', "[web] port must be a int"),
    ("port = 70000", "[web] port is out of range"),
    ("lockout_failures = 0", "[web] lockout_failures is out of range"),
])
def test_given_a_bad_web_section_then_a_one_line_error(tmp_path, line, reason):
    key = line.split(" = ")[0]
    text = DEFAULT_CONFIG.read_text()
    web_start = text.index("\n[web]")
    head, web = text[:web_start], text[web_start:]
    web = "\n".join(line if l.startswith(f"{key} ") else l for l in web.splitlines())
    path = tmp_path / "site.toml"
    path.write_text(head + web + "\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert reason in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("logged,shown", [
    ("+13125550199", "(312) 555-0199"), ("3125550199", "(312) 555-0199"),
    ("sip:13125550199@127.0.0.2", "(312) 555-0199"), ("1002", "1002"), ("anonymous", "anonymous"),
])
def test_given_a_party_of_the_call_log_then_a_number_is_shown_formatted(logged, shown):
    assert app.party(logged) == shown
