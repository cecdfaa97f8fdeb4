"""The file Kamailio's app_python3 loads. It only makes our packages importable and hands over
to routing.adapter; everything else lives in ordinary, testable modules.

It lives in kamailio/, not in a package's folder: app_python3 puts the script's folder first on
sys.path, and that package's modules would then shadow standard ones (twinning/numbers.py the
standard library's `numbers`)."""
import glob
import os
import site
import sys

_venv = os.environ.get("TWIN_VENV")
if _venv:
    for _dir in glob.glob(os.path.join(_venv, "lib", "python3*", "site-packages")):
        site.addsitedir(_dir)
_repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _repo not in sys.path:
    sys.path.insert(0, _repo)

from routing.adapter import mod_init  # noqa: E402,F401  (app_python3 calls mod_init())
