"""The one-line reason `stack up` gives for a daemon that did not start (twinctl.diagnose)."""
from __future__ import annotations

import pytest

from twinctl import diagnose

pytestmark = pytest.mark.unit

PG_LOG = """2026-12-02 19:50:01.123 UTC [4242] LOG:  starting PostgreSQL 15.18
2026-12-02 19:50:01.124 UTC [4242] LOG:  could not bind IPv4 address "127.0.7.1": Address already in use
2026-12-02 19:50:01.124 UTC [4242] HINT:  Is another postmaster already running on port 5438?
2026-12-02 19:50:01.125 UTC [4242] FATAL:  could not create any TCP/IP sockets
2026-12-02 19:50:01.126 UTC [4242] LOG:  database system is shut down""".splitlines()


def test_given_a_postgres_log_then_the_lines_that_say_why_are_kept_without_their_prefix():
    assert diagnose.relevant(PG_LOG) == [
        'LOG:  could not bind IPv4 address "127.0.7.1": Address already in use',
        "HINT:  Is another postmaster already running on port 5438?",
        "FATAL:  could not create any TCP/IP sockets"]


def test_given_nothing_relevant_then_the_last_lines_are_quoted():
    assert diagnose.relevant(["a", "b", "c", "d"], keep=2) == ["c", "d"]


def test_given_a_kamailio_cfg_error_then_the_rendered_line_is_quoted(tmp_path):
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text('#!KAMAILIO\nloadmodule "tm.so"\nmodparam("tm", "nope", 1)\n')
    lines = [f" 0(77) CRITICAL: <core> [core/cfg.y:3720]: yyerror_at(): parse error in config "
             f"file {cfg}, line 3, column 24: Can't set module parameter"]
    assert diagnose.cfg_error_line(lines) == f'{cfg} line 3: modparam("tm", "nope", 1)'
    line = diagnose.explain("Kamailio", [], tmp_path / "k.log", lines, "its cfg check failed")
    assert line.startswith(f'Kamailio did not start: cfg error at {cfg} line 3: modparam(')
    assert "its cfg check failed" in line and f"log {tmp_path / 'k.log'}: CRITICAL:" in line


def test_given_a_free_port_then_nothing_is_reported_taken():
    free = diagnose.Port("udp", "127.0.0.1", 9)          # discard: nothing listens on it here
    assert diagnose.taken_ports([free]) == []
