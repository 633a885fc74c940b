#!/usr/bin/env bash
# The system packages `make test` needs besides Python 3.11, make and git: Chromium, which the
# dashboard test runs headless (tests/report/test_report.py). Installed with apt-get (Debian's
# package `chromium`) as root, or through sudo when sudo asks no password; anywhere else this
# stops and says what to install.
set -euo pipefail

have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
request() {
  echo "make test: the dashboard test needs Chromium, and $1." >&2
  echo "  Install it (Debian/Ubuntu: sudo apt-get install chromium; elsewhere: a chromium or" >&2
  echo "  chromium-browser executable on PATH), then run make test again." >&2
  exit 1
}

have_chromium && exit 0
command -v apt-get >/dev/null 2>&1 || request "this machine has no apt-get to install it"
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  request "installing it needs root (sudo asks for a password)"
fi
echo "make test: installing Chromium for the dashboard test (apt-get install chromium)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q chromium >/dev/null 2>&1 \
  || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q chromium >/dev/null 2>&1; } \
  || request "apt-get could not install the package chromium"
have_chromium || request "apt-get installed chromium but it is not on PATH"
