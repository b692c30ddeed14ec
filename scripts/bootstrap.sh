#!/usr/bin/env bash
# Create .venv and install Warden with its dev extras. Idempotent: the install is
# skipped while pyproject.toml is unchanged since the last successful one (stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.warden-bootstrap"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[bootstrap] creating $VENV with $("$PYTHON" --version)" >&2
    "$PYTHON" -m venv "$VENV"
fi

want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/warden" ]; then
    exit 0
fi

echo "[bootstrap] installing warden[dev] into $VENV" >&2
start=$SECONDS
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
echo "$want" > "$STAMP"
echo "[bootstrap] done in $((SECONDS - start))s" >&2
