#!/usr/bin/env bash
# Start the real services the test suite talks to, all on loopback, idempotently:
#   PostgreSQL 127.0.0.1:54329 (trust auth, superuser "postgres"), Redis 127.0.0.1:63790,
#   dockerd on the default socket (Swarm initialised), and the local image local/busybox:test.
# Prints nothing on success but one line per service. Safe to run twice.
set -euo pipefail

state=${REMEDIATOR_TEST_STATE:-/tmp/remediator-test}
mkdir -p "$state"
chmod 755 "$state"

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_data="$state/pg"
pg_port=54329
if ! "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; then
  if [ ! -f "$pg_data/PG_VERSION" ]; then
    mkdir -p "$pg_data" "$state/pg.log.d" && chown postgres:postgres "$pg_data" "$state/pg.log.d"
    runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust >/dev/null
  fi
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/../pg.log.d/pg.log" -w \
    -o "-p $pg_port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
fi
echo "postgresql: 127.0.0.1:$pg_port"

if ! redis-cli -p 63790 ping >/dev/null 2>&1; then
  redis-server --port 63790 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile "$state/redis.log"
  for _ in $(seq 50); do redis-cli -p 63790 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
echo "redis: 127.0.0.1:63790"

if ! docker info >/dev/null 2>&1; then
  (setsid dockerd >"$state/dockerd.log" 2>&1 &)
  for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.3; done
  docker info >/dev/null
fi
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != "active" ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi
if ! docker image inspect local/busybox:test >/dev/null 2>&1; then
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/www" "$root/tmp"
  cp /bin/busybox "$root/bin/"
  for c in sh sleep httpd wget echo cat ls kill ps true false nc; do ln -s busybox "$root/bin/$c"; done
  echo ok >"$root/www/index.html"
  tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' - local/busybox:test >/dev/null
  rm -rf "$root"
fi
echo "docker: $(docker info --format '{{.ServerVersion}}') swarm=$(docker info --format '{{.Swarm.LocalNodeState}}')"
