#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (as root), start the
# real services, and run the whole suite. This is README command 2; .ci/run calls it.
#
# The suite runs as three pytest processes at once: the end-to-end tests marked `slow` (real
# processes, real Alertmanager, Synapse, Chromium, image builds: mostly waiting), in two
# shards (tests/e2e, and the slow tests elsewhere), beside all the others (mostly CPU).
# Each writes its own report; the last line adds them up. REMEDIATOR_TEST_SERIAL=1 runs one
# pytest instead, and so does any -m given on the command line; with a path given (any
# argument that is not an option), the slow tests among them run as one process.
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
paths=0  # a path among the arguments (not an option such as -q): the slow tests in one process
for arg in "$@"; do
  case "$arg" in -*) ;; *) paths=1 ;; esac
done
if [ "$paths" = 0 ]; then
  shards=("tests/e2e" "tests --ignore=tests/e2e")
else
  shards=("")
fi
slow_pids=()
for i in "${!shards[@]}"; do
  # shellcheck disable=SC2086 # a shard is a path and its options
  python3 -m pytest -m slow -p no:cacheprovider ${shards[$i]} "$@" >"$logs/slow$i.log" 2>&1 &
  slow_pids+=($!)
done
set +e
python3 -m pytest -m "not slow" "$@" 2>&1 | tee "$logs/fast.log"
rcs=("${PIPESTATUS[0]}")
for pid in "${slow_pids[@]}"; do
  wait "$pid"
  rcs+=($?)
done
set -e
for i in "${!shards[@]}"; do
  echo
  echo "== end-to-end tests (marked slow) ${shards[$i]:-given}, run beside the others =="
  cat "$logs/slow$i.log"
done

count() {  # count WORD: the sum of "N WORD" over every report's closing lines
  for f in "$logs"/*.log; do tail -n 3 "$f"; done | grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'
}
echo
echo "$(count passed) passed, $(( $(count failed) + $(count error) )) failed, $(count skipped) skipped"
failed=0
for rc in "${rcs[@]}"; do
  # pytest's exit 5 means "no test selected" (a path with no test of that group): not a failure.
  if [ "$rc" != 0 ] && [ "$rc" != 5 ]; then failed=1; fi
done
if [ "$failed" != 0 ]; then
  echo "failed: pytest exit codes ${rcs[*]} (others, then each slow shard)" >&2
  exit 1
fi
