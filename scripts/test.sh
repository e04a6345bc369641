#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (as root), start the
# real services, and run the whole suite. This is README command 2; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql redis-server docker.io busybox-static prometheus prometheus-alertmanager
          prometheus-blackbox-exporter chromium wrk ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a default cluster on 5432 on install; the tests use their own on 54329.
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

bash scripts/services.sh

exec python3 -m pytest "$@"
