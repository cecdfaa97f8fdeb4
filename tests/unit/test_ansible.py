"""The Ansible provisioning (ansible/) stays consistent with itself, with etc/twinning.toml and
with the paths twinctl renders to.

CI applies the playbook only in tests/e2e/test_provision.py (a fresh Debian root); these checks
catch what drifts most, for all four roles (postgresql, twinning, rtpengine, kamailio): YAML that
no longer parses or lints, a role variable used but never defaulted (or defaulted but never
used), a handler or template that is named but missing, the config template missing a key the
site config gained, and a unit that starts something other than what `twinctl` renders.
"""
from __future__ import annotations

import ast
import configparser
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import jinja2
import pytest
import yaml

from twinctl.stack import Paths
from twinning import config as site_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLES = ("postgresql", "twinning", "rtpengine", "kamailio")     # site.yml's order
SITE_YML = ANSIBLE / "site.yml"
INVENTORY = ANSIBLE / "inventories" / "single" / "hosts.yml"
TOML_TEMPLATE = ANSIBLE / "roles" / "twinning" / "templates" / "twinning.toml.j2"
SITE_TOML = REPO / "etc" / "twinning.toml"


def role_dir(role: str) -> Path:
    return ANSIBLE / "roles" / role


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def defaults(role: str) -> dict:
    return load_yaml(role_dir(role) / "defaults" / "main.yml") or {}


def role_vars(role: str) -> dict:
    found = {}
    for path in sorted((role_dir(role) / "vars").glob("*.yml")):
        found.update(load_yaml(path) or {})
    return found


def public(role: str) -> re.Pattern:
    """`<role>_name` not preceded by a word character (`__<role>_*` are internal names)."""
    return re.compile(rf"(?<![\w]){role}_\w+")


def internal(role: str) -> re.Pattern:
    return re.compile(rf"(?<![\w])__{role}_\w+")


def files_of(role: str, *, besides_defaults: bool = True) -> list[Path]:
    return [p for p in role_dir(role).rglob("*") if p.is_file()
            and not (besides_defaults and p == role_dir(role) / "defaults" / "main.yml")]


def tasks_of(role: str) -> list[dict]:
    found = []
    for path in sorted(role_dir(role).glob("*/*.yml")):
        if path.parent.name in ("tasks", "handlers"):
            found += _flatten(load_yaml(path) or [])
    return found


def _flatten(tasks: list[dict]) -> list[dict]:
    out = []
    for task in tasks:
        out.append(task)
        for key in ("block", "rescue", "always"):
            out += _flatten(task.get(key, []))
    return out


def play_vars() -> dict:
    """What site.yml hands the roles (the main play's vars)."""
    plays = load_yaml(SITE_YML)
    return next(p for p in plays if p.get("roles"))["vars"]


# ---- Ansible's templating, as far as our files use it ------------------------------------------

def _environment() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(to_json=json.dumps, from_json=json.loads, quote=shlex.quote,
                       bool=lambda v: v if isinstance(v, bool) else str(v).lower() in
                       ("1", "true", "yes", "on"))
    env.tests["match"] = lambda value, pattern: re.match(pattern, str(value)) is not None
    return env


ENV = _environment()


def resolve(variables: dict) -> dict:
    """Ansible renders a variable's value when it is used, and a rendered list literal becomes a
    list; do that for every value until nothing changes."""
    done = dict(variables)
    for _ in range(10):
        changed = False
        for key, value in done.items():
            if isinstance(value, str) and "{{" in value:
                try:
                    text = ENV.from_string(value).render(**done).strip()
                except jinja2.UndefinedError:
                    continue
                if text[:1] in "[{":
                    try:
                        text = ast.literal_eval(text)
                    except (ValueError, SyntaxError):
                        pass
                done[key], changed = text, True
        if not changed:
            return done
    raise AssertionError("variables still refer to each other after 10 passes")


def all_variables(**overrides) -> dict:
    """The roles' defaults and vars, site.yml's hand-over and the facts the templates read."""
    merged = {"playbook_dir": str(ANSIBLE), "ansible_facts": {"os_family": "Debian"}}
    for role in ROLES:
        merged.update(defaults(role))
    merged.update(play_vars())
    merged.update(overrides)
    for role in ROLES:
        merged.update(role_vars(role))
    return resolve(merged)


def render_template(role: str, name: str, variables: dict) -> str:
    return ENV.from_string((role_dir(role) / "templates" / name).read_text()).render(**variables)


def render_site_config(variables: dict) -> str:
    return ENV.from_string(TOML_TEMPLATE.read_text()).render(**variables)


def unit(text: str) -> configparser.ConfigParser:
    """A unit file read as systemd reads keys we check (a later ExecStart= wins)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(text)
    return parser


def shape(data: dict) -> dict[str, set[str]]:
    return {section: set(values) for section, values in data.items()}


# ---- the tree ---------------------------------------------------------------------------------

def test_given_the_ansible_tree_when_each_yaml_file_is_parsed_then_it_parses():
    files = sorted(p for p in ANSIBLE.rglob("*") if p.suffix in (".yml", ".yaml"))
    assert SITE_YML in files and INVENTORY in files
    for path in files:
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            pytest.fail(f"{path.relative_to(REPO)} is not valid YAML: {exc}")


@pytest.mark.parametrize("tool, argv", [
    ("yamllint", ["yamllint", "--strict", "-c", ".yamllint", "-f", "parsable", "."]),
    ("ansible-lint", ["ansible-lint", "--nocolor", "-p", "--offline"]),
])
def test_given_the_ansible_tree_when_it_is_linted_then_it_is_clean(tool, argv):
    if not shutil.which(tool):
        pytest.fail(f"{tool} is not installed: run scripts/install.sh")
    res = subprocess.run(argv, cwd=ANSIBLE, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{tool}:\n{res.stdout}{res.stderr}"


def test_given_site_yml_then_it_runs_the_four_roles_on_the_inventory_group():
    plays = load_yaml(SITE_YML)
    main = next(p for p in plays if p.get("roles"))
    assert [r["role"] for r in main["roles"]] == list(ROLES)
    group = next(iter(load_yaml(INVENTORY)))
    assert all(p["hosts"] == group for p in plays)


@pytest.mark.parametrize("role", ROLES)
def test_given_a_role_then_it_has_the_usual_layout(role):
    for part in ("defaults/main.yml", "tasks/main.yml", "meta/main.yml", "vars/Debian.yml",
                 "handlers/main.yml"):
        assert (role_dir(role) / part).is_file(), f"{role}: no {part}"
    meta = load_yaml(role_dir(role) / "meta" / "main.yml")["galaxy_info"]
    assert meta["role_name"] == role
    assert {"name": "Debian", "versions": ["bookworm"]} in meta["platforms"]


@pytest.mark.parametrize("role", ROLES)
def test_given_a_role_then_its_task_index_includes_every_task_file(role):
    index = load_yaml(role_dir(role) / "tasks" / "main.yml")
    included = {v for task in index for k, v in task.items()
                if k.endswith(("import_tasks", "include_tasks"))}
    on_disk = {p.name for p in (role_dir(role) / "tasks").glob("*.yml")} - {"main.yml"}
    assert included == on_disk


# ---- variables --------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_given_a_role_when_one_of_its_variables_is_used_then_it_has_a_default(role):
    defined = set(defaults(role)) | set(site_config.DB_ROLES.values())   # PostgreSQL's names
    missing = {}
    for path in files_of(role) + [SITE_YML, INVENTORY, ANSIBLE / "README.md"]:
        for name in set(public(role).findall(path.read_text())) - defined:
            missing.setdefault(name, []).append(str(path.relative_to(ANSIBLE)))
    assert not missing, f"used but not in roles/{role}/defaults/main.yml: {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_given_a_roles_defaults_then_each_is_used_somewhere(role):
    used = set()
    for path in files_of(role) + [SITE_YML]:
        used |= set(public(role).findall(path.read_text()))
    text = (role_dir(role) / "defaults" / "main.yml").read_text()
    used |= {n for n in public(role).findall(text) if text.count(n) > 1}
    assert not set(defaults(role)) - used, "defaults nothing uses"


@pytest.mark.parametrize("role", ROLES)
def test_given_a_role_when_an_internal_name_is_used_then_the_role_defines_it(role):
    defined = set(role_vars(role))
    for task in tasks_of(role):
        if "register" in task:
            defined.add(task["register"])
        for key, value in task.items():
            if key.endswith("set_fact"):
                defined |= set(value)
    used = set()
    for path in files_of(role):
        used |= set(internal(role).findall(path.read_text()))
    assert not used - defined, f"{role}: used, never defined: {sorted(used - defined)}"


def test_given_site_yml_when_it_hands_values_to_a_role_then_they_are_that_roles_and_the_sites():
    """One source of truth: the other roles' site values come from the twinning_* site values
    (the site config's), never typed a second time."""
    for name, value in play_vars().items():
        role = name.split("_", 1)[0]
        assert role in ROLES and role != "twinning", name
        assert name in defaults(role), f"{name} is no default of the {role} role"
        assert "twinning_" in json.dumps(value), f"{name} is not derived from a twinning_* value"


# ---- handlers and templates -------------------------------------------------------------------

def test_given_the_roles_then_every_notified_handler_exists_and_every_handler_is_notified():
    handlers, notified = set(), set()
    for role in ROLES:
        handlers |= {h["name"] for h in load_yaml(role_dir(role) / "handlers" / "main.yml") or []}
        for task in tasks_of(role):
            names = task.get("notify", [])
            notified |= {names} if isinstance(names, str) else set(names)
    assert notified - handlers == set(), "notified, not defined"
    assert handlers - notified == set(), "defined, never notified"


@pytest.mark.parametrize("role", ROLES)
def test_given_a_role_then_its_templates_exist_and_each_is_used(role):
    used = set()
    for task in tasks_of(role):
        for key, args in task.items():
            if key.endswith(".template") or key == "template":
                used.add(args["src"])
    on_disk = {p.name for p in (role_dir(role) / "templates").glob("*.j2")}
    assert used == on_disk


# ---- the site config --------------------------------------------------------------------------

def test_given_the_defaults_when_the_config_template_is_rendered_then_it_has_every_site_key():
    rendered = render_site_config(all_variables())
    expected = shape(tomllib.loads(SITE_TOML.read_text()))
    actual = shape(tomllib.loads(rendered))
    assert actual.keys() == expected.keys(), "sections differ from etc/twinning.toml"
    for section, keys in expected.items():
        assert actual[section] == keys, (
            f"[{section}]: missing {sorted(keys - actual[section])}, "
            f"unknown {sorted(actual[section] - keys)} (compared with etc/twinning.toml)")


def test_given_the_defaults_when_the_config_template_is_rendered_then_twinctl_loads_it(tmp_path):
    path = tmp_path / "twinning.toml"
    path.write_text(render_site_config(all_variables()))
    loaded = site_config.load(path)
    reference = tomllib.loads(SITE_TOML.read_text())
    for section, values in reference.items():   # same types as the reference file
        for key, value in values.items():
            assert type(loaded.raw[section][key]) is type(value), f"[{section}] {key}"


def test_given_site_values_that_yaml_reads_as_numbers_when_rendered_then_types_hold(tmp_path):
    variables = all_variables(twinning_handoff_code=55, twinning_emergency_numbers=[911, 112],
                              twinning_proxy_port="5070", twinning_web_port="8090")
    path = tmp_path / "twinning.toml"
    path.write_text(render_site_config(variables))
    loaded = site_config.load(path)
    assert (loaded.handoff_code, loaded.emergency_numbers, loaded.proxy_port,
            loaded.web.port) == ("55", ("911", "112"), 5070, 8090)


@pytest.mark.parametrize("certificate", ["", "/etc/ssl/sip/proxy.pem"])
def test_given_tls_and_metrics_site_values_then_the_kamailio_and_rtpengine_roles_get_the_same(
        tmp_path, certificate):
    """What the kamailio and rtpengine roles check the rendered files against (their TLS pair
    and metrics listeners) is what twinctl renders from the site config."""
    key = certificate.replace(".pem", ".key")
    variables = all_variables(twinning_tls_port="5071", twinning_tls_certificate=certificate,
                              twinning_tls_private_key=key,
                              twinning_metrics_kamailio="192.0.2.10:9190",
                              twinning_metrics_rtpengine="192.0.2.10:9191",
                              twinning_state_dir=str(tmp_path / "state"))
    path = tmp_path / "twinning.toml"
    path.write_text(render_site_config(variables))
    cfg = site_config.load(path)
    assert int(variables["kamailio_tls_port"]) == cfg.tls_port == 5071
    assert [Path(p) for p in variables["__kamailio_tls_pair"]] == list(cfg.tls_pair)
    assert variables["kamailio_metrics_listen"] == str(cfg.metrics_kamailio)
    assert variables["rtpengine_metrics_listen"] == str(cfg.metrics_rtpengine)


# ---- the units ----------------------------------------------------------------------------------

@pytest.fixture
def rendered(tmp_path):
    """The roles' variables, the site config they render, and what twinctl makes of it."""
    variables = all_variables(twinning_state_dir=str(tmp_path / "state"))
    path = tmp_path / "twinning.toml"
    path.write_text(render_site_config(variables))
    return variables, site_config.load(path)


def test_given_the_kamailio_drop_in_then_it_runs_what_twinctl_renders_as_kamailios_user(rendered):
    variables, cfg = rendered
    drop_in = unit(render_template("kamailio", "override.conf.j2", variables))
    service = drop_in["Service"]
    assert service["EnvironmentFile"] == str(Paths(cfg).kamailio_env)
    assert service["ExecStart"].split()[:3] == ["/usr/sbin/kamailio", "-DD", "-E"]
    assert "-f $CFGFILE" in service["ExecStart"]
    assert service["ExecReload"] == f"{variables['kamailio_twinctl']} stack reload"
    assert service["ExecStopPost"] == f"-+{variables['kamailio_twinctl']} stack why kamailio"
    assert variables["__kamailio_user"] == "kamailio"       # Debian's unit: User=kamailio
    assert "kamailio-tls-modules" in variables["__kamailio_packages"]


def test_given_the_rtpengine_drop_in_then_it_reads_the_file_twinctl_renders(rendered):
    variables, cfg = rendered
    text = render_template("rtpengine", "override.conf.j2", variables)
    service = unit(text)["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[argv.index("--config-file") + 1] == str(Paths(cfg).rtpengine_conf)
    assert service["ExecStartPre"] == ""                                    # no iptables set-up
    assert "\nExecStopPost=\n" in text                                     # nor its tear-down
    assert service["ExecStopPost"] == f"-+{variables['rtpengine_twinctl']} stack why rtpengine"


def test_given_the_web_unit_then_the_page_runs_as_its_own_user_with_the_site_config(rendered):
    variables, cfg = rendered
    text = render_template("twinning", "twinning-web.service.j2", variables)
    web = unit(text)
    service = web["Service"]
    assert service["User"] == service["Group"] == variables["twinning_web_user"] != "root"
    assert service["ExecStart"] == f"{variables['twinning_install_dir']}/.venv/bin/python -m portal"
    assert f"TWIN_CONFIG={variables['twinning_config_dir']}/twinning.toml" in text
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert "twinning-db.service" in web["Unit"]["After"]
    assert web["Install"]["WantedBy"] == "multi-user.target"
    assert (cfg.web.address, cfg.web.port) == (variables["twinning_web_address"],
                                               int(variables["twinning_web_port"]))


def test_given_the_database_unit_then_it_gives_each_daemon_user_its_password(rendered):
    variables, _ = rendered
    service = unit(render_template("twinning", "twinning-db.service.j2", variables))["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[1:3] == ["db", "setup"]
    assert argv[argv.index("--kamailio-user") + 1] == "kamailio"
    assert argv[argv.index("--web-user") + 1] == variables["twinning_web_user"]
    without_web = all_variables(twinning_web_enabled=False)
    assert "--web-user" not in without_web["__twinning_db_setup_argv"]


def test_given_the_postgresql_templates_then_only_scram_over_tcp(rendered):
    variables, _ = rendered
    hba = render_template("postgresql", "pg_hba.conf.j2", variables)
    host_lines = [line.split() for line in hba.splitlines() if line.startswith("host")]
    assert host_lines and all(line[-1] == "scram-sha-256" for line in host_lines)
    conf = render_template("postgresql", "twinning.conf.j2", variables)
    assert f"port = {int(variables['twinning_db_port'])}" in conf


# ---- the cluster inventory ---------------------------------------------------------------------

CLUSTER_INVENTORY = ANSIBLE / "inventories" / "cluster" / "hosts.yml"
CLUSTER_TOML = REPO / "etc" / "cluster.toml"


def inventory_hosts(inventory: Path) -> dict[str, dict]:
    """Each host's variables as Ansible reads the inventory (ansible-inventory --list)."""
    out = subprocess.run(["ansible-inventory", "-i", str(inventory), "--list"], check=True,
                         capture_output=True, text=True, cwd=ANSIBLE).stdout
    return json.loads(out)["_meta"]["hostvars"]


@pytest.fixture(scope="module")
def cluster_hosts(tmp_path_factory, monkeypatch_module):
    """Per host of the cluster inventory: its variables, and the node view twinctl loads from
    the site config rendered for it (no TWIN_NODE: the file's own `node`)."""
    monkeypatch_module.delenv("TWIN_NODE", raising=False)
    hosts = {}
    for name, hostvars in inventory_hosts(CLUSTER_INVENTORY).items():
        state = tmp_path_factory.mktemp(name)
        variables = all_variables(**hostvars, inventory_hostname=name,
                                  twinning_state_dir=str(state))
        path = state / "twinning.toml"
        path.write_text(render_site_config(variables))
        hosts[name] = (variables, site_config.load(path))
    return hosts


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def reference_nodes() -> dict[str, site_config.SiteConfig]:
    proxies, engines = site_config.cluster_nodes(site_config.load(CLUSTER_TOML))
    return {n.node: n for n in (*proxies, *engines)}


def test_given_the_cluster_inventory_then_it_has_two_proxies_two_rtpengines_one_database(
        cluster_hosts):
    runs = {name: sorted(v["twinning_services"]) for name, (v, _) in cluster_hosts.items()}
    assert sorted(runs.values()) == [["database"], ["proxy"], ["proxy"], ["rtpengine"],
                                     ["rtpengine"]]
    assert [n for n, (v, _) in cluster_hosts.items() if v["twinning_web_enabled"]] == ["proxy-a"]


def test_given_each_host_of_the_cluster_inventory_then_its_node_is_the_one_etc_cluster_toml_makes(
        cluster_hosts):
    """The same topology as `twinctl stack up --cluster` runs on one machine: each host's
    daemon listens where the same node of etc/cluster.toml does, with the same peers and
    rtpengine set."""
    reference = reference_nodes()
    seen = set()
    for name, (variables, cfg) in cluster_hosts.items():
        if "database" in variables["twinning_services"]:
            assert (cfg.db_host, cfg.db_port) == (reference["a"].db_host, reference["a"].db_port)
            continue
        ref = reference[cfg.node]
        seen.add(cfg.node)
        assert (cfg.proxy_address, cfg.rtpengine_ng, cfg.rtpengines, cfg.peers,
                cfg.metrics_kamailio, cfg.metrics_rtpengine, cfg.rtpengine_dtmf) == (
            ref.proxy_address, ref.rtpengine_ng, ref.rtpengines, ref.peers,
            ref.metrics_kamailio, ref.metrics_rtpengine, ref.rtpengine_dtmf), name
        assert cfg.cluster.dmq_port == ref.cluster.dmq_port
    assert seen == set(reference)


def test_given_a_cluster_host_then_its_roles_check_and_read_the_files_twinctl_renders_for_its_node(
        cluster_hosts):
    for name, (variables, cfg) in cluster_hosts.items():
        paths = Paths(cfg)
        if "proxy" in variables["twinning_services"]:
            drop_in = unit(render_template("kamailio", "override.conf.j2", variables))
            assert drop_in["Service"]["EnvironmentFile"] == str(paths.kamailio_env), name
            assert variables["kamailio_metrics_listen"] == str(cfg.metrics_kamailio), name
        if "rtpengine" in variables["twinning_services"]:
            assert variables["rtpengine_config_file"].strip() == str(paths.rtpengine_conf), name
            assert variables["rtpengine_metrics_listen"].strip() == str(cfg.metrics_rtpengine)


def test_given_the_cluster_inventory_then_the_database_lets_every_proxy_in_over_scram(
        cluster_hosts):
    variables, _ = cluster_hosts["db1"]
    hba = render_template("postgresql", "pg_hba.conf.j2", variables)
    host_lines = [line.split() for line in hba.splitlines() if line.startswith("host")]
    assert ["host", "twinning", "all", "127.0.0.0/8", "scram-sha-256"] in host_lines
    public = all_variables(twinning_db_host="10.0.0.9",
                           twinning_cluster_proxies=["10.0.0.1", "10.0.0.2"])
    addresses = [e["address"] for e in public["postgresql_hba_entries"]]
    assert addresses == ["10.0.0.9/32", "10.0.0.1/32", "10.0.0.2/32"]


def test_given_the_cluster_inventory_then_the_proxies_copy_the_database_hosts_passwords(
        cluster_hosts):
    copies = {n for n, (v, _) in cluster_hosts.items() if v["__twinning_copies_secrets"]
              in (True, "True")}
    assert copies == {"proxy-a", "proxy-b"}
