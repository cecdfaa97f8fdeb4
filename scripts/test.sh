#!/usr/bin/env bash
# Run the whole test suite (unit, integration, end-to-end) on Debian 12 as root.
# It installs what is missing first, and runs against its own private stack (tests/site-test.toml:
# other loopback addresses and ports), so a running production-default stack is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --no-start
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
