"""`twinctl stack render` (what the kamailio and rtpengine roles run, and what `stack up` runs the
daemons with) and the generated secrets (`twinctl db passwords`): a second render changes
nothing, so Ansible reports changed=0 and no daemon restarts; secrets are made once, 0600."""
from __future__ import annotations

import base64
import getpass
import re

import pytest

from twinctl import dbsetup, stack
from twinctl.errors import TwinctlError
from twinning.config import ADMIN, KAMAILIO, WEB, load

pytestmark = pytest.mark.unit


@pytest.fixture
def cfg(tmp_path):
    text = (stack.REPO_ROOT / "etc" / "twinning.toml").read_text()
    text = re.sub(r'(?m)^dir = .*$', f'dir = "{tmp_path / "state"}"', text)
    path = tmp_path / "site.toml"
    path.write_text(text)
    site = load(path)
    dbsetup.ensure_password_files(site, {})
    return site


def test_given_a_rendered_kamailio_when_rendered_again_then_nothing_changed(cfg):
    first = stack.render(cfg, "kamailio")
    paths = stack.Paths(cfg)
    assert set(first) == {paths.kamailio_cfg, paths.kamailio_env, *cfg.tls_pair}
    assert stack.render(cfg, "kamailio") == []
    assert paths.kamailio_cfg.stat().st_mode & 0o777 == 0o600       # it holds a password
    assert cfg.tls_pair[1].stat().st_mode & 0o777 == 0o600


def test_given_the_site_config_then_kamailio_env_is_what_the_unit_and_routing_need(cfg):
    stack.render(cfg, "kamailio")
    env = dict(line.split("=", 1) for line in
               stack.Paths(cfg).kamailio_env.read_text().splitlines() if "=" in line
               and not line.startswith("#"))
    assert env["CFGFILE"] == str(stack.Paths(cfg).kamailio_cfg)
    assert (env["SHM_MEMORY"], env["PKG_MEMORY"]) == (str(cfg.shm_mb), str(cfg.pkg_mb))
    assert env["TWIN_CONFIG"] == str(cfg.path) and env["TWIN_STATE_DIR"] == str(cfg.state_dir)


def test_given_kamailios_cfg_then_it_logs_in_as_the_kamailio_role_never_the_admin(cfg):
    stack.render(cfg, "kamailio")
    text = stack.Paths(cfg).kamailio_cfg.read_text()
    password = cfg.password_file(KAMAILIO).read_text().strip()
    assert f"postgres://twinning_kamailio:{password}@" in text
    assert cfg.password_file(ADMIN).read_text().strip() not in text


def test_given_rtpengine_then_its_file_has_the_site_values_and_a_second_render_changes_nothing(
        cfg):
    assert stack.render(cfg, "rtpengine") == [stack.Paths(cfg).rtpengine_conf]
    text = stack.Paths(cfg).rtpengine_conf.read_text()
    assert "\n[rtpengine]\n" in text
    assert f"listen-ng = {cfg.rtpengine_ng}\n" in text
    assert f"listen-http = {cfg.metrics_rtpengine}\n" in text
    assert "table = -1\n" in text                     # userspace forwarding, no kernel module
    assert stack.render(cfg, "rtpengine") == []


def test_given_an_owner_when_rendered_then_the_files_and_the_generated_pair_are_its(cfg):
    me = getpass.getuser()
    stack.render(cfg, "kamailio", owner=me)
    with pytest.raises(TwinctlError, match="no system user 'nobody-here'"):
        stack.render(cfg, "kamailio", owner="nobody-here")


def test_given_an_unknown_daemon_then_one_clear_error(cfg):
    with pytest.raises(TwinctlError, match="nothing to render for 'sems'"):
        stack.render(cfg, "sems")


def test_given_the_secrets_when_made_again_then_they_are_kept(cfg):
    files = [cfg.password_file(w) for w in (ADMIN, KAMAILIO, WEB)] + [cfg.web_secret_file]
    before = [f.read_text() for f in files]
    assert dbsetup.ensure_password_files(cfg, {}) == []
    assert [f.read_text() for f in files] == before
    assert len(set(before)) == 4
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)


def test_given_a_password_then_only_a_scram_verifier_of_it_is_sent():
    salt = b"0123456789abcdef"
    verifier = dbsetup.scram_verifier("s3cret", salt)
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, b64salt = iterations_salt.split(":")
    stored, server = keys.split(":")
    assert (method, iterations, base64.b64decode(b64salt)) == ("SCRAM-SHA-256", "4096", salt)
    assert len(base64.b64decode(stored)) == len(base64.b64decode(server)) == 32
    assert "s3cret" not in verifier
    assert dbsetup.scram_verifier("s3cret", salt) == verifier
    assert dbsetup.scram_verifier("s3cret") != verifier              # a fresh salt each time
