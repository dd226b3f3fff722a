#!/usr/bin/env bash
# One-time, idempotent set-up on a fresh Debian machine: the real Prometheus and the Python package.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing the Debian package prometheus" >&2
    (apt-get install -y -q prometheus || { apt-get update -q && apt-get install -y -q prometheus; }) >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get install -y -q prometheus >/dev/null
  else
    echo "setup: prometheus is missing; install it as root: apt-get install -y prometheus" >&2
    exit 1
  fi
fi
# The real Prometheus is started by the sandbox itself; the packaged service is not needed.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
python3 -m pip install -q --disable-pip-version-check -e '.[dev]'
touch .setup-done
