"""Issue 14 item 4: the Ansible cluster inventory provisions the cluster's topology. Five fresh
Debian 12 roots (debootstrap, as tests/e2e/test_provision.py), one per inventory host (db1,
rtp1, rtp2, proxy-a, proxy-b), get site.yml through the chroot connection: each only its
daemons (twinning_services), every one the same site config with its own [cluster] node. Then
each daemon is started inside its root as its unit says: PostgreSQL and the database set-up,
both rtpengines, both Kamailios, the web page beside A. The proxies find each other over DMQ,
a desk registers through A, the trunk calls through B, the desk answers (two-way audio) and
the mobile's leg is CANCELled; nothing is left on either proxy. The roots share the host's
network: 127.0.10.x and ports of their own."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg.rows import dict_row

from lab import calls
from lab.residue import assert_no_residue
from tests.support.provision import (argv, in_root, load_unit, make_root, playbook, start,
                                     twin_ring_call, unmount_all, wait_for)
from twinctl import stack as stack_mod
from twinning import config as site_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

ROOTS = Path("/var/tmp/twinning-provision-cluster")
INVENTORY = "ansible/inventories/cluster/hosts.yml"
NET = "127.0.10"
PROXIES, ENGINES = [f"{NET}.1", f"{NET}.2"], [f"{NET}.5:2293", f"{NET}.6:2293"]
SITE = {"twinning_proxy_address": PROXIES[0], "twinning_cluster_proxies": PROXIES,
        "twinning_cluster_rtpengines": ENGINES, "twinning_db_host": f"{NET}.9",
        "twinning_db_port": "5441", "twinning_rtpengine_ng": ENGINES[0],
        "twinning_rtpengine_cli": f"{NET}.5:2296", "twinning_rtpengine_port_min": "58000",
        "twinning_rtpengine_port_max": "59999",
        "twinning_rtpengine_dtmf_events": f"{NET}.1:2297",
        "twinning_trunk_default": f"{NET}.20:5060", "twinning_voicemail_uri": f"sip:{NET}.4:5060",
        "twinning_default_ring_timeout": "8", "twinning_metrics_kamailio": f"{NET}.1:9390",
        "twinning_metrics_rtpengine": f"{NET}.5:9391", "twinning_web_address": PROXIES[0],
        "twinning_web_port": "8390"}
UNITS = {"db1": ("postgresql@15-main.service", "twinning-db.service"),
         "rtp1": ("rtpengine-daemon.service",), "rtp2": ("rtpengine-daemon.service",),
         "proxy-a": ("kamailio.service", "twinning-web.service"),
         "proxy-b": ("kamailio.service",)}


def root(host: str) -> Path:
    return ROOTS / host


def node_config(host: str) -> site_config.SiteConfig:
    """The node view twinctl loads on that host (its site config's own [cluster] node), its
    state dir seen from here."""
    cfg = site_config.load(root(host) / "etc/twinning/twinning.toml")
    return dataclasses.replace(cfg, state_dir=root(host) / "var/lib/twinning")


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.delenv("TWIN_NODE", raising=False)
    for tool in ("debootstrap", "ansible-playbook"):
        assert shutil.which(tool), f"{tool} missing: run scripts/install.sh"
    overlay = tmp_path / "chroots.yml"          # each inventory host is a root here
    overlay.write_text(yaml.safe_dump({"twinning": {"hosts": {
        host: {"ansible_connection": "chroot", "ansible_host": str(root(host))}
        for host in UNITS}}}))
    try:
        with concurrent.futures.ThreadPoolExecutor(len(UNITS)) as pool:
            seconds = max(pool.map(lambda host: make_root(root(host)), UNITS))
        yield seconds, [INVENTORY, str(overlay)]
    finally:
        for host in UNITS:
            unmount_all(root(host))
        shutil.rmtree(ROOTS, ignore_errors=True)


def test_given_five_fresh_roots_when_the_cluster_inventory_is_applied_then_the_cluster_takes_calls(
        roots, logdir):
    boot_s, inventory = roots
    first_s, first = playbook(logdir / "ansible-first.log", inventory, SITE)
    second_s, second = playbook(logdir / "ansible-second.log", inventory, SITE)
    print(f"debootstrap {boot_s:.0f}s, fresh provisioning of 5 hosts {first_s:.0f}s "
          f"(changed={first['changed']}), second run {second_s:.0f}s")
    assert first["failed"] == 0 and first["changed"] > 0
    assert second["changed"] == 0 and second["failed"] == 0, second

    # Each host has only its own daemons' units.
    for host, names in UNITS.items():
        present = {n for n in ("kamailio.service", "rtpengine-daemon.service",
                               "twinning-web.service", "twinning-db.service")
                   if (root(host) / "etc/systemd/system" / n).exists()
                   or (root(host) / "etc/systemd/system" / f"{n}.d").exists()}
        assert present == set(names) - {"postgresql@15-main.service"}, host
    a, b = node_config("proxy-a"), node_config("proxy-b")
    assert (a.node, b.node, node_config("rtp2").node) == ("a", "b", "rtp2")
    # The proxies log in with the database host's passwords (copied at provisioning).
    db_dir = root("db1") / "var/lib/twinning"
    for host in ("proxy-a", "proxy-b"):
        assert (root(host) / "var/lib/twinning/db-password-kamailio").read_text() == \
            (db_dir / "db-password-kamailio").read_text()

    started: list[subprocess.Popen] = []
    units = {(host, n): load_unit(root(host), n) for host, names in UNITS.items() for n in names}
    try:
        for (host, name), unit in units.items():
            (logdir / host).mkdir(exist_ok=True)
            proc = start(root(host), unit, logdir / host)
            if proc:
                started.append(proc)
            if name == "rtpengine-daemon.service":
                engine = node_config(host)
                wait_for(lambda: stack_mod.ng_ping(engine), 30, f"rtpengine on {host}",
                         logdir / host / f"{name}.log")
        for cfg, host in ((a, "proxy-a"), (b, "proxy-b")):
            wait_for(lambda: stack_mod.sip_options(cfg) is not None, 30, f"Kamailio {host}",
                     logdir / host / "kamailio.service.log")
        for cfg in (a, b):
            wait_for(lambda: set(cfg.peers) <= stack_mod.dmq_peers(cfg), 30,
                     f"proxy {cfg.node}'s DMQ peer", logdir / "proxy-a" / "kamailio.service.log")
        wait_for(lambda: stack_mod.web_ping(a) is not None, 30, "the web page",
                 logdir / "proxy-a" / "twinning-web.service.log")

        with psycopg.connect(a.dsn(), row_factory=dict_row, autocommit=True) as db:
            calls.setup_subscriber(db, a)
        calls.register_desk(a, logdir, ip=f"{NET}.30")           # through A
        call = twin_ring_call(f"{NET}.30", f"{NET}.20", f"{b.proxy_address}:{b.proxy_port}",
                              logdir)                            # through B
        assert b.proxy_address in call["desk"].agent.received("INVITE")[0]
        for cfg in (a, b):
            assert_no_residue(cfg)
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg = units[("db1", "postgresql@15-main.service")]
        in_root(root("db1"), *argv(pg, pg.exec_stop[0]), env=pg.env, capture_output=True)
