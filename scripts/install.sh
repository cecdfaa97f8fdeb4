#!/usr/bin/env bash
# Install everything the twinning service needs on Debian 12 (as root) and bring the stack up.
#   bash scripts/install.sh            # packages + venv + `twinctl stack up`
#   bash scripts/install.sh --no-start # packages + venv only
# Idempotent: a second run installs nothing new and leaves a running stack running.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  kamailio kamailio-python3-modules kamailio-postgres-modules kamailio-extra-modules
  kamailio-utils-modules kamailio-tls-modules rtpengine-daemon sip-tester postgresql
  python3-venv python3-dev libpq5 iproute2 procps openssl
  chromium   # the browser the web page's tests drive (Playwright, never its own download)
  # Provisioning (ansible/): the playbook, its linters, and the fresh Debian root
  # tests/e2e/test_provision.py applies it to.
  ansible ansible-lint yamllint debootstrap
)

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Other installs may hold the dpkg lock: wait for it rather than fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # Debian's packages would start their own daemons on the default ports where an init system
  # runs; ours are started by twinctl with their own config, so keep the packaged ones down.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# The venv comes from Debian's python3: the interpreter Kamailio's app_python3 embeds.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.base_prefix == "/usr"' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
ln -sf "$PWD/.venv/bin/twinctl" /usr/local/bin/twinctl
ln -sf "$PWD/.venv/bin/rtpctl" /usr/local/bin/rtpctl

if [ "${1:-}" != "--no-start" ]; then
  .venv/bin/twinctl stack up
fi
