"""The cluster's site config (issue 14): [cluster] gives each proxy and rtpengine its own view
of one site file, a bad section is refused with a clear error, and a proxy's rendered
Kamailio cfg is a cluster node's (DMQ, the peers' aliases, its own dialog numbering)."""
from __future__ import annotations

import re

import pytest

from twinctl import dbsetup, stack
from twinning.config import ConfigError, cluster_nodes, load

pytestmark = pytest.mark.unit

SITE = stack.REPO_ROOT / "tests" / "site-cluster.toml"


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.delenv("TWIN_NODE", raising=False)
    text = re.sub(r'(?m)^dir = .*$', f'dir = "{tmp_path / "state"}"', SITE.read_text())
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def with_cluster(site, section: str):
    text = site.read_text()
    site.write_text(text[:text.index("[cluster]")] + section)
    return load(site)


def test_given_a_cluster_file_then_each_proxy_and_rtpengine_gets_its_own_addresses(site):
    cfg = load(site)
    (a, b), (rtp1, rtp2) = cluster_nodes(cfg)
    assert (a.node, a.proxy_address) == ("a", "127.0.6.1")
    assert (b.node, b.proxy_address) == ("b", "127.0.6.2")
    assert a.peers == ("127.0.6.2",) and b.peers == ("127.0.6.1",)
    assert a.sip_domain == b.sip_domain == "127.0.6.1"       # phones register to one domain
    assert [str(e) for e in a.rtpengines] == ["127.0.7.1:2233", "127.0.7.2:2233"]
    assert str(b.metrics_kamailio) == "127.0.6.2:9090" and str(b.rtpengine_dtmf) == "127.0.6.2:2237"
    assert (rtp1.proxy_address, str(rtp2.rtpengine_ng)) == ("127.0.7.1", "127.0.7.2:2233")
    assert rtp2.rtpengine_dtmf == b.rtpengine_dtmf           # rtpengine 2 reports DTMF to B
    assert len({stack.Paths(n).run for n in (a, b, rtp1, rtp2)}) == 4
    assert stack.Paths(a).pgdata == stack.Paths(b).pgdata   # one database


def test_given_twin_node_in_the_environment_then_load_gives_that_nodes_view(site, monkeypatch):
    monkeypatch.setenv("TWIN_NODE", "b")
    assert load(site).proxy_address == "127.0.6.2"
    monkeypatch.setenv("TWIN_NODE", "z")
    with pytest.raises(ConfigError, match="TWIN_NODE='z' is not a node"):
        load(site)


@pytest.mark.parametrize("section, message", [
    ('[cluster]\nproxies = ["127.0.6.1"]\nrtpengines = ["127.0.7.1"]\n', "two or more distinct"),
    ('[cluster]\nproxies = ["127.0.6.1", "127.0.6.1"]\nrtpengines = ["127.0.7.1"]\n',
     "two or more distinct"),
    ('[cluster]\nproxies = ["127.0.6.1", "127.0.6.2"]\nrtpengines = []\n', "one or more ng"),
    ('[cluster]\nproxies = ["127.0.6.1", "127.0.6.2"]\nrtpengines = ["127.0.7.1:x"]\n',
     "not a host"),
    ('[cluster]\nproxies = ["127.0.6.1", "127.0.6.2"]\nrtpengines = ["127.0.7.1"]\n'
     'dmq_port = 0\n', "dmq_port must be a port"),
])
def test_given_a_bad_cluster_section_then_loading_says_what_is_wrong(site, section, message):
    with pytest.raises(ConfigError, match=message):
        with_cluster(site, section)


def test_given_cluster_as_a_plain_value_then_loading_says_it_must_be_a_section(site):
    text = site.read_text()
    site.write_text("cluster = 3\n" + text[:text.index("[cluster]")])
    with pytest.raises(ConfigError, match="must be a section"):
        load(site)


def test_given_a_proxy_of_the_cluster_then_its_kamailio_cfg_is_a_dmq_node(site):
    cfg = load(site)
    dbsetup.ensure_password_files(cfg, {})
    _, b = cluster_nodes(cfg)[0][:2]
    stack.render(b, "kamailio")
    text = stack.Paths(b).kamailio_cfg.read_text()
    assert "#!define WITH_CLUSTER" in text and "alias=127.0.6.1" in text
    assert '#!substdef "!DMQ_PEER!127.0.6.1!"' in text
    assert '#!substdef "!NODE_INDEX!1!"' in text and '#!substdef "!NODE_COUNT!2!"' in text
    assert '#!substdef "!RTPENGINE_SOCK!udp:127.0.7.1:2233 udp:127.0.7.2:2233!"' in text
    env = stack.Paths(b).kamailio_env.read_text()
    assert "TWIN_NODE=b" in env


def test_given_a_single_node_then_its_cfg_has_no_cluster(tmp_path):
    text = (stack.REPO_ROOT / "etc" / "twinning.toml").read_text()
    path = tmp_path / "site.toml"
    path.write_text(re.sub(r'(?m)^dir = .*$', f'dir = "{tmp_path / "state"}"', text))
    cfg = load(path)
    dbsetup.ensure_password_files(cfg, {})
    stack.render(cfg, "kamailio")
    rendered = stack.Paths(cfg).kamailio_cfg.read_text()
    assert "#!define WITH_CLUSTER" not in rendered and "!DMQ_PEER!" not in rendered
    assert '#!substdef "!HT_REPLICATE!0!"' in rendered and "TWIN_NODE" not in \
        stack.Paths(cfg).kamailio_env.read_text()
