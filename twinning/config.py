"""Site configuration: one TOML file, read once, shared by twinctl, routing and rtpctl."""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .numbers import ALWAYS_ALLOWED_COUNTRIES, NANP_COUNTRIES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "etc" / "twinning.toml"


# Who logs in to PostgreSQL: the administration (twinctl, migrations: the site's [database]
# user, owner of every table), Kamailio (its modules and the KEMI routing) and the web page.
ADMIN, KAMAILIO, WEB = "admin", "kamailio", "web"
DB_ROLES = {KAMAILIO: "twinning_kamailio", WEB: "twinning_web"}


class ConfigError(Exception):
    """The site configuration file is missing or wrong."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int) -> "HostPort":
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, str(default_port)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"not a host[:port]: {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ng_url(self) -> str:
        """An rtpengine's ng socket as Kamailio's rtpengine module names it (rtpengine_sock,
        rtpengine.show, rtpengine.enable)."""
        return f"udp:{self.host}:{self.port}"


@dataclass(frozen=True)
class WebConfig:
    """[web]: the subscriber's self-service page. A site file without the section (or a key)
    gets the defaults of etc/twinning.toml, on the proxy's address."""
    address: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    session_minutes: int = 30
    session_max_hours: int = 12
    lockout_failures: int = 10
    lockout_minutes: int = 10
    address_failures: int = 30
    tls_cert: str = ""
    tls_key: str = ""
    trusted_proxies: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}:{self.port}"


def _web(data: dict, base: Path, proxy_address: str) -> WebConfig:
    section = data.get("web", {})
    if not isinstance(section, dict):
        raise ConfigError("[web] must be a section")
    defaults = WebConfig(address=proxy_address)
    values = {}
    for name in WebConfig.__dataclass_fields__:
        default = getattr(defaults, name)
        value = section.get(name, default)
        if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)) \
                or isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"[web] {name} must be a {type(default).__name__}, got {value!r}")
        if isinstance(default, int) and value < (0 if name == "port" else 1) \
                or name == "port" and not 0 < value < 65536:
            raise ConfigError(f"[web] {name} is out of range: {value!r}")
        if name.startswith("tls_") and value and not Path(value).is_absolute():
            value = str((base / value).resolve())
        values[name] = value
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        raise ConfigError("[web] tls_cert and tls_key go together: set both or neither")
    return WebConfig(**values)


@dataclass(frozen=True)
class SiteConfig:
    path: Path
    proxy_address: str
    proxy_port: int
    children: int
    shm_mb: int
    pkg_mb: int
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    statement_timeout_ms: int
    rtpengine_ng: HostPort
    rtpengine_cli: HostPort
    rtpengine_dtmf: HostPort            # where rtpengine sends the DTMF events it sees (UDP)
    rtp_port_min: int
    rtp_port_max: int
    rtp_delete_delay: int
    default_trunk: HostPort
    dispatcher_set: int
    trusted_group: int
    voicemail_uri: str
    handoff_code: str
    default_ring_timeout: int
    max_twin_legs: int
    emergency_numbers: tuple[str, ...]
    state_dir: Path
    # NANP countries besides the US and Canada a twin or outside call may go to (twinning.numbers'
    # country rule; docs/security.md "Numbers: NANP countries").
    allowed_nanp_countries: tuple[str, ...] = ()
    tls_port: int = 5061
    overload_max_cps: int = 0               # new calls admitted per second (0: no ceiling)
    overload_rx_queue_bytes: int = 65536    # SIP waiting unread in the kernel: refuse above
    overload_retry_after_s: int = 5
    tls_certificate: Path | None = None     # None: `twinctl stack up` generates a pair
    tls_private_key: Path | None = None
    metrics_kamailio: HostPort | None = None
    metrics_rtpengine: HostPort | None = None
    web: "WebConfig" = field(default_factory=lambda: WebConfig())
    # A cluster ([cluster], docs/cluster.md): the proxies and rtpengines of one site. The site
    # file describes them all; cluster_nodes() gives each daemon its own view.
    cluster: "ClusterConfig | None" = None
    node: str = ""                          # this daemon's node name ("": a single node)
    node_index: int = 0
    rtpengine_set: tuple[HostPort, ...] = ()    # the proxy's rtpengines (default: the one)
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def sip_domain(self) -> str:
        return self.cluster.domain if self.cluster else self.proxy_address

    def node_dir(self, kind: str) -> Path:
        """The state dir's `kind` folder (run, log, etc) of this daemon: a cluster node has
        its own below the site's."""
        return self.state_dir / kind / self.node if self.node else self.state_dir / kind

    @property
    def rtpengines(self) -> tuple[HostPort, ...]:
        return self.rtpengine_set or (self.rtpengine_ng,)

    @property
    def peers(self) -> tuple[str, ...]:
        """The other proxies of the cluster (their SIP addresses)."""
        if not self.cluster:
            return ()
        return tuple(a for a in self.cluster.proxies if a != self.proxy_address)

    @property
    def db_password_file(self) -> Path:
        return self.password_file(ADMIN)

    @property
    def web_secret_file(self) -> Path:
        """The key of the web page's log-in form tokens, made once like the passwords and
        readable only by the page's user."""
        return self.state_dir / "portal-secret"

    @property
    def tls_dir(self) -> Path:
        """Where the self-signed pair is generated when the site config names none."""
        return self.state_dir / "tls"

    @property
    def tls_pair(self) -> tuple[Path, Path]:
        """The certificate and private key Kamailio's tls module loads."""
        if self.tls_certificate:
            return self.tls_certificate, self.tls_private_key
        return self.tls_dir / "proxy.crt", self.tls_dir / "proxy.key"

    def db_role(self, who: str = "admin") -> str:
        """The PostgreSQL role of `who` (DB_ROLES): the admin role is the site's [database]
        user, the others have fixed names (the grants in sql/migrations/0012_roles.sql)."""
        if who == ADMIN:
            return self.db_user
        try:
            return DB_ROLES[who]
        except KeyError:
            raise ConfigError(f"no database role for {who!r}") from None

    def password_file(self, who: str = "admin") -> Path:
        """Each role's generated password, one file each in the state dir, readable only by
        the user of the daemon that logs in with it."""
        self.db_role(who)
        return self.state_dir / ("db-password" if who == ADMIN else f"db-password-{who}")

    def dsn(self, who: str = "admin") -> str:
        """libpq connection string of `who`; the password comes from its file when it exists
        (and is readable: a daemon's user reads only its own)."""
        parts = {
            "host": self.db_host,
            "port": str(self.db_port),
            "dbname": self.db_name,
            "user": self.db_role(who),
            "connect_timeout": "3",
        }
        try:
            parts["password"] = self.password_file(who).read_text().strip()
        except OSError:
            pass
        return " ".join(f"{k}='{v}'" for k, v in parts.items())

    def kamailio_db_url(self) -> str:
        """Kamailio's own modules log in as the kamailio role, never as the admin."""
        try:
            password = self.password_file(KAMAILIO).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read Kamailio's database password "
                              f"{self.password_file(KAMAILIO)}: {exc.strerror} "
                              f"(`twinctl db setup` or `twinctl db passwords` makes it)") from None
        return (f"postgres://{self.db_role(KAMAILIO)}:{password}@{self.db_host}:{self.db_port}/"
                f"{self.db_name}")


@dataclass(frozen=True)
class ClusterConfig:
    """[cluster]: proxies A, B, ... (their SIP addresses, same port), rtpengines 1, 2, ...
    (their ng sockets; media on the ng address), the DMQ port every proxy listens on, and the
    SIP domain they all answer for (the first proxy's address unless named)."""
    proxies: tuple[str, ...]
    rtpengines: tuple[HostPort, ...]
    dmq_port: int = 5090
    domain: str = ""
    node: str = ""          # the node this host is (a provisioned host; TWIN_NODE overrides)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(chr(ord("a") + i) for i in range(len(self.proxies)))

    @property
    def engine_names(self) -> tuple[str, ...]:
        return tuple(f"rtp{i + 1}" for i in range(len(self.rtpengines)))


def _cluster(data: dict) -> ClusterConfig | None:
    section = data.get("cluster")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError("[cluster] must be a section")
    proxies = section.get("proxies")
    if not isinstance(proxies, list) or len(proxies) < 2 or \
            not all(isinstance(a, str) and a for a in proxies) or len(set(proxies)) != len(proxies):
        raise ConfigError("[cluster] proxies must list two or more distinct proxy addresses")
    if len(proxies) > 26:
        raise ConfigError("[cluster] proxies: at most 26 nodes (named a to z)")
    engines = section.get("rtpengines")
    if not isinstance(engines, list) or not engines or not all(isinstance(e, str) for e in engines):
        raise ConfigError("[cluster] rtpengines must list one or more ng sockets (host:port)")
    dmq_port = _port(_optional(data, "cluster", "dmq_port", int, 5090), "[cluster] dmq_port")
    domain = _optional(data, "cluster", "domain", str, proxies[0])
    node = _optional(data, "cluster", "node", str, "")
    cluster = ClusterConfig(tuple(proxies), tuple(HostPort.parse(e, 2223) for e in engines),
                            dmq_port, domain, node)
    known = (*cluster.names, *cluster.engine_names)
    if node and node not in known:
        raise ConfigError(f"[cluster] node must be one of {', '.join(known)}, got {node!r}")
    return cluster


def cluster_nodes(cfg: SiteConfig) -> tuple[list[SiteConfig], list[SiteConfig]]:
    """Each proxy's and each rtpengine's own config, from the cluster's site config: the
    proxy's address (its listeners, metrics, DTMF port) and its rtpengine set; the
    rtpengine's ng socket and media address. State, database and trunks stay the site's."""
    c = cfg.cluster
    if c is None:
        raise ConfigError(f"{cfg.path} has no [cluster] section")
    proxies, engines = [], []
    for i, (name, address) in enumerate(zip(c.names, c.proxies)):
        proxies.append(dataclasses.replace(
            cfg, node=name, node_index=i, proxy_address=address,
            metrics_kamailio=HostPort(address, cfg.metrics_kamailio.port),
            rtpengine_dtmf=HostPort(address, cfg.rtpengine_dtmf.port),
            rtpengine_ng=c.rtpengines[i % len(c.rtpengines)], rtpengine_set=c.rtpengines))
    for i, (name, ng) in enumerate(zip(c.engine_names, c.rtpengines)):
        # rtpengine i reports DTMF to proxy i (a confirmation is waited for on that proxy).
        owner = proxies[i % len(proxies)]
        engines.append(dataclasses.replace(
            cfg, node=name, node_index=i, proxy_address=ng.host, rtpengine_ng=ng,
            rtpengine_cli=HostPort(ng.host, cfg.rtpengine_cli.port),
            metrics_rtpengine=HostPort(ng.host, cfg.metrics_rtpengine.port),
            rtpengine_dtmf=owner.rtpengine_dtmf))
    return proxies, engines


def _port(value: int, what: str) -> int:
    if not 0 < value < 65536:
        raise ConfigError(f"{what} must be a port number (1-65535), got {value}")
    return value


def _get(data: dict, section: str, key: str, kind: type):
    try:
        value = data[section][key]
    except KeyError:
        raise ConfigError(f"missing [{section}] {key}") from None
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"[{section}] {key} must be a {kind.__name__}, got {value!r}")
    return value


def _non_negative(value: int, what: str) -> int:
    if value < 0:
        raise ConfigError(f"{what} must be 0 or more, got {value}")
    return value


def _dtmf_default(data: dict) -> str:
    """The ng socket's host, 4 ports up: beside the ng (2223) and cli ports."""
    ng = HostPort.parse(_get(data, "rtpengine", "ng", str), 2223)
    return f"{ng.host}:{ng.port + 4}"


def _optional(data: dict, section: str, key: str, kind: type, default):
    if key not in data.get(section, {}):
        return default
    return _get(data, section, key, kind)


def _nanp_countries(data: dict) -> tuple[str, ...]:
    """[calls] allowed_nanp_countries: ISO region codes of NANP countries (default none)."""
    codes = _optional(data, "calls", "allowed_nanp_countries", list, [])
    allowed = sorted(NANP_COUNTRIES - ALWAYS_ALLOWED_COUNTRIES)
    for code in codes:
        if not isinstance(code, str) or code not in NANP_COUNTRIES:
            raise ConfigError(f"[calls] allowed_nanp_countries: {code!r} is not a North American "
                              f"country's ISO code; give some of {', '.join(allowed)}")
    return tuple(sorted(set(codes)))


def _tls_files(data: dict, base: Path) -> tuple[Path | None, Path | None]:
    """[tls] certificate and private_key: both or neither (neither: a generated pair)."""
    cert = _optional(data, "tls", "certificate", str, "")
    key = _optional(data, "tls", "private_key", str, "")
    if bool(cert) != bool(key):
        raise ConfigError("[tls] certificate and private_key go together: give both or neither")
    if not cert:
        return None, None
    return tuple((base / p).resolve() if not Path(p).is_absolute() else Path(p)
                 for p in (cert, key))


def load(path: str | os.PathLike | None = None) -> SiteConfig:
    """Read the site config: explicit path, else $TWIN_CONFIG, else etc/twinning.toml."""
    path = Path(path or os.environ.get("TWIN_CONFIG") or DEFAULT_CONFIG).resolve()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read site config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"site config {path} is not valid TOML: {exc}") from None
    state_dir = Path(os.environ.get("TWIN_STATE_DIR") or _get(data, "state", "dir", str))
    if not state_dir.is_absolute():
        state_dir = (path.parent / state_dir).resolve()
    proxy_address = _get(data, "proxy", "address", str)
    tls_cert, tls_key = _tls_files(data, path.parent)
    cfg = SiteConfig(
        path=path,
        proxy_address=proxy_address,
        proxy_port=_get(data, "proxy", "port", int),
        children=_get(data, "proxy", "children", int),
        shm_mb=_get(data, "proxy", "shm_mb", int),
        pkg_mb=_get(data, "proxy", "pkg_mb", int),
        db_host=_get(data, "database", "host", str),
        db_port=_get(data, "database", "port", int),
        db_name=_get(data, "database", "name", str),
        db_user=_get(data, "database", "user", str),
        statement_timeout_ms=_get(data, "database", "statement_timeout_ms", int),
        rtpengine_ng=HostPort.parse(_get(data, "rtpengine", "ng", str), 2223),
        rtpengine_cli=HostPort.parse(_get(data, "rtpengine", "cli", str), 2225),
        rtpengine_dtmf=HostPort.parse(_optional(data, "rtpengine", "dtmf_events", str,
                                                _dtmf_default(data)), 2237),
        rtp_port_min=_get(data, "rtpengine", "port_min", int),
        rtp_port_max=_get(data, "rtpengine", "port_max", int),
        rtp_delete_delay=_get(data, "rtpengine", "delete_delay", int),
        default_trunk=HostPort.parse(_get(data, "trunk", "default", str), 5060),
        dispatcher_set=_get(data, "trunk", "dispatcher_set", int),
        trusted_group=_get(data, "trunk", "address_group", int),
        voicemail_uri=_get(data, "voicemail", "uri", str),
        handoff_code=_get(data, "calls", "handoff_code", str),
        default_ring_timeout=_get(data, "calls", "default_ring_timeout", int),
        max_twin_legs=_get(data, "calls", "max_twin_legs", int),
        emergency_numbers=tuple(_get(data, "calls", "emergency_numbers", list)),
        allowed_nanp_countries=_nanp_countries(data),
        state_dir=state_dir,
        tls_port=_port(_optional(data, "tls", "port", int, 5061), "[tls] port"),
        overload_max_cps=_non_negative(_optional(data, "overload", "max_cps", int, 0),
                                       "[overload] max_cps"),
        overload_rx_queue_bytes=_non_negative(
            _optional(data, "overload", "rx_queue_bytes", int, 65536), "[overload] rx_queue_bytes"),
        overload_retry_after_s=_non_negative(
            _optional(data, "overload", "retry_after_s", int, 5), "[overload] retry_after_s"),
        tls_certificate=tls_cert,
        tls_private_key=tls_key,
        metrics_kamailio=HostPort.parse(
            _optional(data, "metrics", "kamailio", str, f"{proxy_address}:9090"), 9090),
        metrics_rtpengine=HostPort.parse(
            _optional(data, "metrics", "rtpengine", str, f"{proxy_address}:9091"), 9091),
        web=_web(data, path.parent, _get(data, "proxy", "address", str)),
        cluster=_cluster(data),
        raw=data,
    )
    node = os.environ.get("TWIN_NODE") or (cfg.cluster.node if cfg.cluster else "")
    if node and cfg.cluster:
        # A daemon of the cluster (its environment names it): its own view of the site.
        proxies, engines = cluster_nodes(cfg)
        for mine in (*proxies, *engines):
            if mine.node == node:
                return mine
        raise ConfigError(f"TWIN_NODE={node!r} is not a node of {path}")
    return cfg
