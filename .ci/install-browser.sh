#!/usr/bin/env bash
# Installs what the study's browser tests (tests/study/test_browser.py) need: Debian's Chromium and
# Playwright's Python client. No browser is downloaded by Playwright (`playwright install` is never run):
# the tests launch /usr/bin/chromium through executable_path. Run inside the activated CI virtualenv.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi
python -m pip install --quiet "playwright>=1.50"
/usr/bin/chromium --headless --no-sandbox --disable-gpu --version
python -c "import playwright.sync_api" && echo "browser tests: chromium + playwright ready"
