#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian, for the browser tests (tests/browser/).
# Idempotent: does nothing when both are installed. Needs root (or sudo) and apt-get; where neither is
# available it says so and exits 0, and the browser tests then skip with the same reason.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-chromium: no apt-get on this machine; the browser tests will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install-chromium: not root and no password-less sudo; the browser tests will be skipped" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || echo "install-chromium: apt-get update failed; trying the cached package lists" >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver \
    || echo "install-chromium: apt-get could not install chromium; the browser tests will be skipped" >&2
