"""CLI: parsing, output formats, one-line errors, against fake servers."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rtpctl.cli import UsageError, app, parse_ng
from rtpctl.testing import FakeServer, reply

pytestmark = pytest.mark.unit
runner = CliRunner()


def test_parse_ng_accepts_repeats_and_commas():
    assert parse_ng(["a:1,b:2", "c:3"]) == [("a", 1), ("b", 2), ("c", 3)]
    assert parse_ng(["[::1]:5"]) == [("::1", 5)]
    with pytest.raises(UsageError):
        parse_ng(["a:b"])


def test_default_comes_from_site_config(monkeypatch, tmp_path):
    monkeypatch.setenv("TWIN_CONFIG", str(tmp_path / "missing.toml"))
    assert parse_ng(None) == [("127.0.0.1", 2223)]


def test_ping_json():
    with FakeServer() as server:
        out = runner.invoke(app, ["ping", "--ng", f"{server.host}:{server.port}", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)[0]["status"] == "up"


def test_unreachable_is_one_line_exit_1():
    out = runner.invoke(app, ["ping", "--ng", "127.0.0.1:22349", "--timeout", "0.05"])
    assert out.exit_code == 1
    assert out.stderr.strip() == "error: no reply from rtpengine at 127.0.0.1:22349 after 3 " \
                                 "tries (connection refused)"
    assert "Traceback" not in out.output


def test_list_table_over_two_nodes():
    def calls(name):
        return lambda req, srv: [reply(req.cookie, {"calls": [name], "result": "ok"})]

    with FakeServer(calls("one")) as a, FakeServer(calls("two")) as b:
        out = runner.invoke(app, ["list", "--ng", f"{a.host}:{a.port},{b.host}:{b.port}"])
    assert out.exit_code == 0
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NODE", "CALL_ID"]
    assert lines[1].endswith("one") and lines[2].endswith("two")


def test_query_unknown_call_is_an_error_line():
    unknown = lambda req, srv: [reply(req.cookie, {"result": "error",  # noqa: E731
                                                   "error-reason": "Unknown call-id"})]
    with FakeServer(unknown) as server:
        out = runner.invoke(app, ["query", "nope", "--ng", f"{server.host}:{server.port}"])
    assert out.exit_code == 1
    assert out.stderr.startswith("error: call 'nope' not found on")
