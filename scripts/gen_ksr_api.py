#!/usr/bin/env python3
"""Dump the KEMI functions the running Kamailio exports (RPC app_python.api_list) into
tests/support/ksr_api.json, from which the unit tests build their KSR stub. Run it against a
stack started with this project's kamailio.cfg (its module set decides the list):

    TWIN_CONFIG=tests/site-test.toml .venv/bin/python scripts/gen_ksr_api.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twinctl import rpc  # noqa: E402
from twinning import config  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "support" / "ksr_api.json"


def fetch_api(cfg) -> list[dict]:
    result = rpc.call(cfg, "app_python.api_list")
    funcs = [m["func"] for m in result["methods"]]
    return sorted(({"module": f["module"], "name": f["name"], "params": f["params"],
                    "ret": f["ret"]} for f in funcs), key=lambda f: (f["module"], f["name"]))


def main() -> None:
    api = fetch_api(config.load())
    OUT.write_text(json.dumps(api, indent=1) + "\n")
    print(f"wrote {len(api)} KEMI functions to {OUT}")


if __name__ == "__main__":
    main()
