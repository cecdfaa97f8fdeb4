"""The packages' layering, defined once here and checked on every module's imports.

Bottom up; a module may import its own package and the packages of the layers below it, never a
package of its own layer or of one above:

  twinning            the neutral core: site config, number rules, licence tiers
  rtpctl              the rtpengine ng client and its CLI
  routing | twinctl | portal
                      Kamailio's KEMI routing; the admin CLI; the subscriber's web page (twinctl's
                      stack starts it as a process, so nothing imports it but tests and bench)
  lab | scripts       what tests and bench drive the stack with; maintenance scripts
  tests | bench       the test suite; the benchmarks
  kamailio            kemi_entry.py, the file Kamailio loads, which hands over to routing

Imports are read with `ast`, so an import inside a function counts as much as one at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LAYERS: tuple[tuple[str, ...], ...] = (
    ("twinning",),
    ("rtpctl",),
    ("routing", "twinctl", "portal"),
    ("lab", "scripts"),
    ("tests", "bench"),
    ("kamailio",),
)
LAYER_OF = {package: n for n, layer in enumerate(LAYERS) for package in layer}
NOT_CODE = {".venv", ".git", "build"}


def modules(root: Path, package: str) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved."""
    here = list(path.relative_to(root).with_suffix("").parts)
    if here[-1] == "__init__":
        here.pop()
    else:
        here = here[:-1]            # the package the module is in
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


def violations(root: Path, layer_of: dict[str, int]) -> list[str]:
    found = []
    for package, level in layer_of.items():
        for path in modules(root, package):
            for line, name in imported(path, root):
                target = name.split(".")[0]
                if target == package or target not in layer_of:
                    continue            # its own package, the standard library, a dependency
                if layer_of[target] >= level:
                    where = "beside" if layer_of[target] == level else "above"
                    found.append(f"{path.relative_to(root)}:{line}: {package} imports {name}, "
                                 f"a package {where} it")
    return found


def test_given_the_repository_then_no_package_imports_one_beside_or_above_it():
    assert violations(REPO, LAYER_OF) == []


def test_given_the_repository_then_every_python_folder_has_a_layer():
    folders = {p.relative_to(REPO).parts[0] for p in REPO.glob("*/**/*.py")
               if not NOT_CODE & set(p.relative_to(REPO).parts)}
    assert folders - set(LAYER_OF) == set(), "add the new folder to LAYERS"


def test_given_an_upward_or_sideways_import_then_it_is_reported(tmp_path):
    for package, source in (("low", "import os\nfrom . import sibling\n"),
                            ("mid", "from low import x\n"),
                            ("side", "def f():\n    from mid.deep import y\n"),
                            ("low/sub", "from ..sibling import a\nimport mid.deep\n")):
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").write_text(source)
    found = violations(tmp_path, {"low": 0, "mid": 1, "side": 1})
    assert found == ["low/sub/__init__.py:2: low imports mid.deep, a package above it",
                     "side/__init__.py:2: side imports mid.deep, a package beside it"]
