"""The Ansible provisioning (ansible/) stays consistent with itself and with etc/twinning.toml.

CI runs no Ansible against a server; these checks catch what drifts most: YAML that no longer
parses, a `twinning_*` variable used but never defaulted (or defaulted but never used), and the
config template missing a key the site config gained.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from twinning import config as site_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLE = ANSIBLE / "roles" / "twinning"
DEFAULTS = ROLE / "defaults" / "main.yml"
TOML_TEMPLATE = ROLE / "templates" / "twinning.toml.j2"
SITE_TOML = REPO / "etc" / "twinning.toml"

# `twinning_` not preceded by a word character: `__twinning_*` are the role's internal names.
VARIABLE = re.compile(r"(?<![\w])twinning_\w+")


def yaml_files() -> list[Path]:
    return sorted(p for p in ANSIBLE.rglob("*") if p.suffix in (".yml", ".yaml"))


def defaults() -> dict:
    return yaml.safe_load(DEFAULTS.read_text())


def referencing_files() -> list[Path]:
    """Everything that may use a role variable, except the defaults themselves."""
    files = [p for p in ROLE.rglob("*") if p.is_file() and p != DEFAULTS]
    return files + [ANSIBLE / "site.yml", ANSIBLE / "inventory.example.ini", ANSIBLE / "README.md"]


# ---- a minimal stand-in for Jinja2 (not a project dependency) --------------------------------

EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
FILTER = re.compile(r"^(\w+)(?:\('(\w*)'\))?$")


def _apply(name: str, arg: str | None, value):
    if name == "to_json":
        return json.dumps(value)
    if name == "int":
        return int(value)
    if name == "string":
        return str(value)
    if name == "list":
        return list(value)
    if name == "map" and arg is not None:
        return [_apply(arg, None, v) for v in value]
    raise ValueError(f"filter {name!r} is not understood by the test's renderer")


def render(template: str, variables: dict) -> str:
    """Render `{{ var | filter | filter('arg') }}` expressions, the only kind the config
    template uses; anything else fails loudly (then use real Jinja2 or simplify the template)."""
    def expression(match: re.Match) -> str:
        head, *filters = [part.strip() for part in match.group(1).split("|")]
        if head not in variables:
            raise KeyError(f"{head} is not defined")
        value = variables[head]
        for spec in filters:
            parsed = FILTER.match(spec)
            if not parsed:
                raise ValueError(f"cannot read filter {spec!r}")
            value = _apply(parsed.group(1), parsed.group(2), value)
        return str(value)
    return EXPRESSION.sub(expression, template)


def render_site_config(variables: dict) -> str:
    try:
        import jinja2
    except ImportError:
        return render(TOML_TEMPLATE.read_text(), variables)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    return env.from_string(TOML_TEMPLATE.read_text()).render(**variables)


def shape(data: dict) -> dict[str, set[str]]:
    return {section: set(values) for section, values in data.items()}


# ---- tests ------------------------------------------------------------------------------------

def test_given_the_ansible_tree_when_each_yaml_file_is_parsed_then_it_parses():
    files = yaml_files()
    assert ANSIBLE / "site.yml" in files and DEFAULTS in files
    for path in files:
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            pytest.fail(f"{path.relative_to(REPO)} is not valid YAML: {exc}")


def test_given_the_role_then_its_task_index_includes_every_task_file():
    index = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    included = {next(v for k, v in task.items() if k.endswith(("import_tasks", "include_tasks")))
                for task in index if any(k.endswith(("import_tasks", "include_tasks"))
                                         for k in task)}
    on_disk = {p.name for p in (ROLE / "tasks").glob("*.yml")} - {"main.yml"}
    assert included == on_disk


def test_given_the_role_when_a_twinning_variable_is_used_then_it_has_a_default():
    defined = set(defaults())
    missing = {}
    for path in referencing_files():
        for name in set(VARIABLE.findall(path.read_text())) - defined:
            missing.setdefault(name, []).append(str(path.relative_to(ANSIBLE)))
    assert not missing, f"used but not in roles/twinning/defaults/main.yml: {missing}"


def test_given_the_defaults_then_each_is_used_somewhere():
    used = set()
    for path in referencing_files():
        if path.name != "README.md":
            used |= set(VARIABLE.findall(path.read_text()))
    defaults_text = DEFAULTS.read_text()
    used |= {n for n in VARIABLE.findall(defaults_text) if defaults_text.count(n) > 1}
    assert not set(defaults()) - used, "defaults nothing uses"


def test_given_the_defaults_when_the_config_template_is_rendered_then_it_has_every_site_key(
        tmp_path):
    rendered = render_site_config(defaults())
    expected = shape(tomllib.loads(SITE_TOML.read_text()))
    actual = shape(tomllib.loads(rendered))
    assert actual.keys() == expected.keys(), "sections differ from etc/twinning.toml"
    for section, keys in expected.items():
        assert actual[section] == keys, (
            f"[{section}]: missing {sorted(keys - actual[section])}, "
            f"unknown {sorted(actual[section] - keys)} (compared with etc/twinning.toml)")


def test_given_the_defaults_when_the_config_template_is_rendered_then_twinctl_loads_it(tmp_path):
    path = tmp_path / "twinning.toml"
    path.write_text(render_site_config(defaults()))
    loaded = site_config.load(path)
    reference = tomllib.loads(SITE_TOML.read_text())
    for section, values in reference.items():   # same types as the reference file
        for key, value in values.items():
            assert type(loaded.raw[section][key]) is type(value), f"[{section}] {key}"


def test_given_site_values_that_yaml_reads_as_numbers_when_rendered_then_types_hold(tmp_path):
    variables = dict(defaults(), twinning_handoff_code=55, twinning_emergency_numbers=[911, 112],
                     twinning_proxy_port="5070")
    path = tmp_path / "twinning.toml"
    path.write_text(render_site_config(variables))
    loaded = site_config.load(path)
    assert (loaded.handoff_code, loaded.emergency_numbers, loaded.proxy_port) == (
        "55", ("911", "112"), 5070)
