"""Issue 13 item 8: ansible/site.yml provisions a fresh Debian 12 root that then takes calls.

debootstrap makes a minimal root (its tarball cached in /var/cache/twinning-deploy), the
playbook is applied through Ansible's chroot connection, then again with changed=0; systemd
checks the units; then each daemon is started inside the root with exactly its unit's ExecStart
and User (no systemd runs here: the merged unit and drop-ins are parsed): PostgreSQL, the
database set-up, rtpengine, Kamailio and the web page. Each runs as its own user, SIP over TLS
serves the generated pair, both metrics endpoints and the page answer, a desk registers and a
trunk call twin-rings desk and mobile. The root shares the host's network: its daemons use
127.0.9.x and ports of their own. About 2 min with the tarball cached (ansible/README.md).
"""
from __future__ import annotations

import dataclasses
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from lab import calls
from tests.support.provision import (argv, in_root, load_unit, make_root, owner_of, playbook,
                                     start, twin_ring_call, unmount_all, wait_for)
from twinctl import stack as stack_mod
from twinning import config as site_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
ROOT = Path("/var/tmp/twinning-provision-root")
INVENTORY = "ansible/inventories/single/hosts.yml"
NET = "127.0.9"
SITE = {"twinning_proxy_address": f"{NET}.1", "twinning_db_host": f"{NET}.1",
        "twinning_db_port": "5439", "twinning_rtpengine_ng": f"{NET}.1:2293",
        "twinning_rtpengine_cli": f"{NET}.1:2296", "twinning_rtpengine_port_min": "56000",
        "twinning_rtpengine_port_max": "57999", "twinning_trunk_default": f"{NET}.2:5060",
        "twinning_voicemail_uri": f"sip:{NET}.4:5060", "twinning_default_ring_timeout": "8",
        "twinning_tls_port": "5061", "twinning_metrics_kamailio": f"{NET}.1:9290",
        "twinning_metrics_rtpengine": f"{NET}.1:9291", "twinning_web_address": f"{NET}.1",
        "twinning_web_port": "8290"}
UNITS = ("postgresql@15-main.service", "twinning-db.service", "rtpengine-daemon.service",
         "kamailio.service", "twinning-web.service")
CHROOT = {"ansible_connection": "chroot", "ansible_host": str(ROOT)}


# ---- the test ---------------------------------------------------------------------------------

@pytest.fixture
def provisioned_root():
    for tool in ("debootstrap", "ansible-playbook", "systemd-analyze"):
        assert shutil.which(tool), f"{tool} missing: run scripts/install.sh"
    try:
        yield lambda: make_root(ROOT)
    finally:
        unmount_all(ROOT)
        shutil.rmtree(ROOT, ignore_errors=True)


def test_given_a_fresh_debian_root_when_site_yml_is_applied_then_it_takes_calls(
        provisioned_root, logdir):
    boot_s = provisioned_root()
    first_s, first = playbook(logdir / "ansible-first.log", [INVENTORY], {**CHROOT, **SITE})
    second_s, second = playbook(logdir / "ansible-second.log", [INVENTORY], {**CHROOT, **SITE})
    timings = (f"debootstrap {boot_s:.0f}s, fresh provisioning {first_s:.0f}s "
               f"(changed={first['changed']}), second run {second_s:.0f}s")
    (logdir / "timings.txt").write_text(timings + "\n")
    print(timings)
    assert first["failed"] == 0 and first["changed"] > 0
    assert second == {"ok": second["ok"], "changed": 0, "failed": 0}, second

    verify = in_root(ROOT, "systemd-analyze", "verify", "--man=no", *UNITS, capture_output=True,
                     text=True)
    assert verify.returncode == 0, verify.stderr

    units = {name: load_unit(ROOT, name) for name in UNITS}
    assert units["kamailio.service"].user == "kamailio"
    assert units["rtpengine-daemon.service"].user == "rtpengine"
    started: dict[str, subprocess.Popen] = {}
    cfg = site_config.load(ROOT / "etc/twinning/twinning.toml")
    cfg = dataclasses.replace(cfg, state_dir=ROOT / "var/lib/twinning")
    try:
        for name in UNITS:
            proc = start(ROOT, units[name], logdir)
            if proc:
                started[name] = proc
        wait_for(lambda: stack_mod.sip_options(cfg) is not None, 30,
                 "Kamailio", logdir / "kamailio.service.log")
        assert stack_mod.ng_ping(cfg)
        wait_for(lambda: stack_mod.web_ping(cfg) is not None, 30, "the web page",
                 logdir / "twinning-web.service.log")
        # SIP over TLS serves the pair the kamailio role had twinctl generate; both metrics
        # endpoints answer on the site config's [metrics] addresses.
        pem = ssl.get_server_certificate((cfg.proxy_address, cfg.tls_port), timeout=5)
        generated = (cfg.state_dir / "tls/proxy.crt").read_text()
        assert ssl.PEM_cert_to_DER_cert(pem) == ssl.PEM_cert_to_DER_cert(generated)
        assert (cfg.state_dir / "tls/proxy.key").stat().st_mode & 0o077 == 0
        for endpoint, series in ((cfg.metrics_kamailio, "kamailio_"),
                                 (cfg.metrics_rtpengine, "rtpengine_")):
            with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as reply:
                assert series in reply.read().decode(errors="replace"), endpoint
        # Each daemon as its own user; no secret on a command line.
        assert owner_of(ROOT, started["kamailio.service"].pid) == "kamailio"
        assert owner_of(ROOT, started["rtpengine-daemon.service"].pid) == "rtpengine"
        assert units["twinning-web.service"].user == "twinning-web"
        assert owner_of(ROOT, started["twinning-web.service"].pid) == "twinning-web"
        secrets = [p.read_text().strip() for p in cfg.state_dir.glob("db-password*")]
        assert len(secrets) == 3
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert not any(s in ps for s in secrets)
        assert oct((cfg.state_dir / "db-password-kamailio").stat().st_mode & 0o777) == "0o600"

        with psycopg.connect(cfg.dsn(), row_factory=dict_row, autocommit=True) as db:
            calls.setup_subscriber(db, cfg)
        calls.register_desk(cfg, logdir, ip=f"{NET}.3")
        twin_ring_call(f"{NET}.3", f"{NET}.2", f"{cfg.proxy_address}:{cfg.proxy_port}", logdir)
    finally:
        for proc in started.values():
            proc.terminate()
        for proc in started.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg = units["postgresql@15-main.service"]
        in_root(ROOT, *argv(pg, pg.exec_stop[0]), env=pg.env, capture_output=True)
