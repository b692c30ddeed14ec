#!/usr/bin/env bash
# Install promtool (Debian's prometheus package) if missing, to validate dashboards/alerts.yml.
set -euo pipefail
command -v promtool >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show prometheus >/dev/null 2>&1; then
    apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package's service is not wanted here; stop it if the install started it.
(command -v systemctl >/dev/null && systemctl stop prometheus 2>/dev/null) || true
pkill -x prometheus 2>/dev/null || true
command -v promtool >/dev/null
