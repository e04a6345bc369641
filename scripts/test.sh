#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (as root), start the
# real services, and run the whole suite. This is README command 2; .ci/run calls it.
#
# The suite runs as two pytest processes at once: the end-to-end tests marked `slow` (real
# processes, real Alertmanager, Chromium: mostly waiting) beside all the others (mostly CPU).
# Each writes its own report; the last line adds them up. REMEDIATOR_TEST_SERIAL=1 runs one
# pytest instead, and so does any -m given on the command line.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql redis-server docker.io busybox-static prometheus prometheus-alertmanager
          prometheus-blackbox-exporter chromium wrk ca-certificates haproxy debootstrap)
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

for arg in "$@"; do
  [ "$arg" = "-m" ] && REMEDIATOR_TEST_SERIAL=1
done
if [ "${REMEDIATOR_TEST_SERIAL:-}" = "1" ]; then
  exec python3 -m pytest "$@"
fi

logs=$(mktemp -d)
python3 -m pytest -m slow -p no:cacheprovider "$@" >"$logs/slow.log" 2>&1 &
slow_pid=$!
set +e
python3 -m pytest -m "not slow" "$@" 2>&1 | tee "$logs/fast.log"
fast_rc=${PIPESTATUS[0]}
wait "$slow_pid"
slow_rc=$?
set -e
echo
echo "== end-to-end tests (marked slow), run beside the others =="
cat "$logs/slow.log"

# pytest's exit 5 means "no test selected" (a path with no test of that group): not a failure.
[ "$fast_rc" = 5 ] && fast_rc=0
[ "$slow_rc" = 5 ] && slow_rc=0
count() {  # count WORD: the sum of "N WORD" over both reports' closing lines
  tail -n 3 "$logs/fast.log" "$logs/slow.log" | grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'
}
echo
echo "$(count passed) passed, $(( $(count failed) + $(count error) )) failed, $(count skipped) skipped"
if [ "$fast_rc" != 0 ] || [ "$slow_rc" != 0 ]; then
  echo "failed: pytest exit codes $fast_rc (others) and $slow_rc (slow)" >&2
  exit 1
fi
