"""The site config's [tls] and [metrics] keys (issue 13, items 4 and 6)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from twinning.config import DEFAULT_CONFIG, ConfigError, load

pytestmark = pytest.mark.unit


def site(tmp_path, tls: str = "", metrics: str = ""):
    """etc/twinning.toml without its [tls] and [metrics], plus the given ones."""
    text = re.sub(r"\[tls\].*?(?=\[state\])", "", DEFAULT_CONFIG.read_text(), flags=re.S)
    path = tmp_path / "site.toml"
    path.write_text(text + "\n" + tls + "\n" + metrics + "\n")
    return path


def test_given_the_shipped_config_then_tls_is_on_5061_and_metrics_on_9090_and_9091():
    cfg = load(DEFAULT_CONFIG)
    assert cfg.tls_port == 5061 and cfg.tls_certificate is None
    assert cfg.tls_pair == (cfg.state_dir / "tls" / "proxy.crt", cfg.state_dir / "tls" / "proxy.key")
    assert str(cfg.metrics_kamailio) == "127.0.0.1:9090"
    assert str(cfg.metrics_rtpengine) == "127.0.0.1:9091"


def test_given_a_config_without_the_sections_then_the_defaults_sit_on_the_proxy_address(
        tmp_path):
    cfg = load(site(tmp_path))
    assert cfg.tls_port == 5061 and cfg.tls_certificate is None
    assert cfg.metrics_kamailio.host == cfg.proxy_address == cfg.metrics_rtpengine.host
    assert (cfg.metrics_kamailio.port, cfg.metrics_rtpengine.port) == (9090, 9091)


def test_given_relative_certificate_paths_then_they_are_read_beside_the_config(tmp_path):
    cfg = load(site(tmp_path, '[tls]\nport = 5071\ncertificate = "pki/p.crt"\n'
                              'private_key = "/etc/ssl/p.key"'))
    assert cfg.tls_port == 5071
    assert cfg.tls_pair == (tmp_path / "pki" / "p.crt", Path("/etc/ssl/p.key"))


@pytest.mark.parametrize("tls, message", [
    ('[tls]\ncertificate = "p.crt"', "[tls] certificate and private_key go together"),
    ("[tls]\nport = 70000", "[tls] port must be a port number"),
    ('[tls]\nport = "5061"', "[tls] port must be a int"),
])
def test_given_a_bad_tls_section_then_one_clear_error(tmp_path, tls, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(site(tmp_path, tls))


def test_given_a_bad_metrics_address_then_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a host"):
        load(site(tmp_path, metrics='[metrics]\nkamailio = "127.0.0.1:http"'))


def test_given_a_site_certificate_then_kamailio_is_rendered_with_it_and_the_listeners(tmp_path):
    from twinctl.stack import Kamailio, Paths, ensure_tls_pair
    from twinctl.errors import TwinctlError
    path = site(tmp_path, '[tls]\nport = 5071\ncertificate = "p.crt"\nprivate_key = "p.key"',
                '[metrics]\nkamailio = "127.0.0.9:9190"')
    text = path.read_text().replace('dir = "/var/lib/twinning"', f'dir = "{tmp_path / "state"}"')
    path.write_text(text)
    cfg = load(path)
    paths = Paths(cfg)
    paths.make()
    cfg.password_file("kamailio").write_text("pw\n")
    Kamailio(cfg, paths).render()
    rendered = paths.kamailio_cfg.read_text()
    assert f'#!substdef "!TLS_CERT!{tmp_path / "p.crt"}!"' in rendered
    assert f'#!substdef "!TLS_KEY!{tmp_path / "p.key"}!"' in rendered
    assert '#!substdef "!TLS_PORT!5071!"' in rendered
    assert '#!substdef "!METRICS_ADDR!127.0.0.9!"' in rendered
    assert "listen=tls:PROXY_ADDR:TLS_PORT" in rendered
    with pytest.raises(TwinctlError, match=r"\[tls\] file .*p.crt .* does not exist"):
        ensure_tls_pair(cfg)
