#!/usr/bin/env bash
# A local Kith cluster: N nodes (default 3) on PostgreSQL and Redis behind HAProxy (round
# robin, no stickiness, WebSockets tunnelled), all on this machine.
#
#   ./scripts/cluster.sh up [N]   builds the release binary if needed, starts PostgreSQL,
#                                 Redis and HAProxy when missing, starts N nodes, prints
#                                 the URL (http://127.0.0.1:8080)
#   ./scripts/cluster.sh down     stops what `up` started (the database is kept)
#   ./scripts/cluster.sh status   the nodes and what discovery lists
#
# Settings: KITH_CLUSTER_PORT (8080), KITH_CLUSTER_FIRST_NODE_PORT (3101),
# KITH_CLUSTER_DATABASE (postgres://postgres@127.0.0.1:5432/kith_cluster),
# KITH_CLUSTER_REDIS (redis://127.0.0.1:6379). State and logs live in .cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${KITH_CLUSTER_PORT:-8080}"
first_node_port="${KITH_CLUSTER_FIRST_NODE_PORT:-3101}"
database="${KITH_CLUSTER_DATABASE:-postgres://postgres@127.0.0.1:5432/kith_cluster}"
redis="${KITH_CLUSTER_REDIS:-redis://127.0.0.1:6379}"
dir=.cluster

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "need root for: $*" >&2; return 1; fi; }

ensure_services() {
  if ! command -v haproxy >/dev/null; then
    say "installing HAProxy"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
  fi
  if ! pg_isready -d "$database" -q 2>/dev/null; then
    say "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
    for _ in $(seq 100); do pg_isready -d "$database" -q && break; sleep 0.1; done
  fi
  if ! redis-cli -u "$redis" ping >/dev/null 2>&1; then
    say "starting Redis"
    redis-server --daemonize yes --port "${redis##*:}" --save "" --appendonly no
    for _ in $(seq 50); do redis-cli -u "$redis" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  # The database must exist; the nodes' migrations make its tables.
  local name="${database##*/}" admin="${database%/*}/postgres"
  if [ "$(psql "$admin" -qAtc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
    say "creating database $name"
    psql "$admin" -qc "CREATE DATABASE $name"
  fi
}

ensure_build() {
  # Rebuilt when any source is newer than the binary (cargo would say the same, slower).
  if [ ! -x target/release/server ] || [ ! -f target/site/pkg/kith.wasm ] \
     || [ -n "$(find app/src server/src frontend/src server/migrations style -newer target/release/server -print -quit)" ]; then
    ./scripts/setup.sh
    source scripts/env.sh
    say "building the release binary and site"
    cargo leptos build --release
  fi
}

wait_ready() { # url, what
  for _ in $(seq 200); do
    curl -fs "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$2 did not become ready; see $dir/" >&2
  return 1
}

up() {
  local n="${1:-3}"
  if [ -f "$dir/pids" ]; then
    echo "a cluster is already up (./scripts/cluster.sh down first)" >&2
    exit 1
  fi
  ensure_services
  ensure_build
  mkdir -p "$dir"
  : > "$dir/pids"
  local servers=""
  for i in $(seq "$n"); do
    local node_port=$((first_node_port + i - 1))
    say "starting node $i on 127.0.0.1:$node_port"
    LEPTOS_SITE_ADDR="127.0.0.1:$node_port" LEPTOS_SITE_ROOT=target/site \
      LEPTOS_OUTPUT_NAME=kith LEPTOS_ENV=PROD RUST_LOG="${RUST_LOG:-warn}" \
      KITH_DATABASE_URL="$database" KITH_REDIS_URL="$redis" KITH_REDIS_NAMESPACE=kith-cluster \
      KITH_ADVERTISE_URL="http://127.0.0.1:$node_port" \
      KITH_ALLOWED_ORIGINS="http://127.0.0.1:$port,http://localhost:$port" \
      KITH_TRUST_PROXY=true \
      nohup ./target/release/server > "$dir/node-$i.log" 2>&1 &
    echo $! >> "$dir/pids"
    servers+="    server node$i 127.0.0.1:$node_port check"$'\n'
  done
  for i in $(seq "$n"); do
    wait_ready "http://127.0.0.1:$((first_node_port + i - 1))" "node $i"
  done
  sed "s/BIND_ADDRESS/127.0.0.1:$port/" deploy/haproxy.cfg > "$dir/haproxy.cfg"
  printf '%s' "$servers" >> "$dir/haproxy.cfg"
  haproxy -c -q -f "$dir/haproxy.cfg"
  haproxy -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid"
  wait_ready "http://127.0.0.1:$port" "the balancer"
  say "Kith cluster of $n nodes: http://127.0.0.1:$port"
}

down() {
  if [ -f "$dir/haproxy.pid" ]; then
    kill "$(cat "$dir/haproxy.pid")" 2>/dev/null || true
    rm -f "$dir/haproxy.pid"
  fi
  if [ -f "$dir/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$dir/pids"
    # Graceful shutdown takes each node out of discovery; its id lease lapses afterwards.
    for _ in $(seq 100); do
      alive=0
      while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done < "$dir/pids"
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    rm -f "$dir/pids"
  fi
  say "cluster stopped (database ${database##*/} kept)"
}

status() {
  if [ ! -f "$dir/pids" ]; then
    echo "no cluster is up"
    return
  fi
  local i=0
  while read -r pid; do
    i=$((i + 1))
    if kill -0 "$pid" 2>/dev/null; then state=running; else state=dead; fi
    echo "node $i (pid $pid): $state, http://127.0.0.1:$((first_node_port + i - 1))"
  done < "$dir/pids"
  echo "balancer: http://127.0.0.1:$port"
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [N] | down | status" >&2; exit 2 ;;
esac
