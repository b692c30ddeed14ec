#!/usr/bin/env bash
# What the browser test (tests/integration/test_console.py) needs: Debian's chromium and
# chromium-driver, and selenium in .venv. Idempotent: each is installed only if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # apt-cache knows nothing before the first `apt-get update` on a fresh machine.
    for pkg in "${missing[@]}"; do
        if ! apt-cache show "$pkg" >/dev/null 2>&1; then
            echo "[browser] apt-get update" >&2
            $SUDO apt-get update -q >/dev/null
            break
        fi
    done
    echo "[browser] installing ${missing[*]}" >&2
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[browser] $VENV is missing: run scripts/bootstrap.sh first" >&2
    exit 1
fi
if ! "$VENV/bin/python" -c "import selenium" 2>/dev/null; then
    echo "[browser] installing selenium into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "selenium>=4.20,<5"
fi
