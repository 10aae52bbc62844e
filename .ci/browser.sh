#!/usr/bin/env bash
# Make Debian's chromium available at /usr/bin/chromium for the Playwright browser tests
# (tests/browser). Playwright's own browser download is not used. Idempotent: does nothing when
# chromium is already on PATH. Needs root (apt-get) when it must install.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "browser.sh: chromium already installed ($(command -v chromium))"
else
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
    echo "browser.sh: installed chromium ($(command -v chromium))"
fi
