#!/usr/bin/env bash
# Runs every check and test: formatting, clippy (ssr and hydrate separately), the
# hydrate dependency check, the Rust tests (on the embedded backends, and on Redis too when
# one answers on 127.0.0.1:6379; the integration suite once on SQLite and once more on
# PostgreSQL when one answers on 127.0.0.1:5432), the fuzz targets (20 s each), and, against
# a release build, the API conformance run (schemathesis) and the Playwright suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check
(cd fuzz && cargo fmt --check)

step "clippy (ssr: server, app, the load tool and its peer)"
cargo clippy -p server -p app -p loadgen -p socketio-peer --features app/ssr --all-targets -- -D warnings

step "clippy (hydrate: frontend and app, wasm32)"
cargo clippy -p frontend -p app --features app/hydrate --target wasm32-unknown-unknown -- -D warnings

step "hydrate dependency check"
./scripts/check-deps.sh

REDIS_URL="${KITH_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
if redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  export KITH_TEST_REDIS_URL="$REDIS_URL"
  step "Rust tests (embedded and Redis backends)"
else
  unset KITH_TEST_REDIS_URL
  step "Rust tests (embedded backends; no Redis at $REDIS_URL, Redis variants skipped)"
fi
cargo test -p server -p app -p loadgen --features app/ssr

# The integration suite again with every node on PostgreSQL: each test gets a schema of
# its own in a database made afresh for this run (KITH_TEST_DATABASE_URL overrides it).
PG_URL="${KITH_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/kith_test}"
if psql "${PG_URL%/*}/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  step "Rust integration tests on PostgreSQL"
  if [ -z "${KITH_TEST_DATABASE_URL:-}" ]; then
    psql "${PG_URL%/*}/postgres" -qc 'DROP DATABASE IF EXISTS kith_test WITH (FORCE)' -c 'CREATE DATABASE kith_test'
  fi
  # The same packages and features as above, so nothing is rebuilt (the unit tests run
  # again too: a second).
  KITH_TEST_DATABASE_URL="$PG_URL" cargo test -p server -p app -p loadgen --features app/ssr
else
  step "no PostgreSQL at ${PG_URL%/*}: the PostgreSQL run of the integration suite is skipped"
fi

step "fuzzing: every target briefly, after replaying its committed inputs"
./scripts/fuzz.sh "${KITH_FUZZ_SECONDS:-20}"

step "release build (server and wasm bundle)"
cargo leptos build --release
# cargo-leptos can exit 0 although a build failed: insist that the artifacts exist and
# are newer than every source they are built from.
for artifact in target/release/server target/site/pkg/kith.wasm target/site/pkg/kith.js target/site/pkg/kith.css; do
  if [ ! -f "$artifact" ]; then
    echo "release build did not produce $artifact" >&2
    exit 1
  fi
done
stale="$(find app/src frontend/src -name '*.rs' -newer target/site/pkg/kith.wasm | head -5)
$(find app/src server/src server/migrations \( -name '*.rs' -o -name '*.sql' \) -newer target/release/server | head -5)"
stale="$(echo "$stale" | sed '/^$/d')"
if [ -n "$stale" ]; then
  echo "release artifacts are older than their sources (a build failed?):" >&2
  echo "$stale" >&2
  exit 1
fi

step "API conformance: schemathesis against /v1/openapi.json (release build)"
./scripts/api-conformance.sh

step "Playwright end-to-end suite (against the release build)"
e2e_dir="$(mktemp -d)"
LEPTOS_SITE_ADDR=127.0.0.1:3000 LEPTOS_SITE_ROOT=target/site LEPTOS_OUTPUT_NAME=kith LEPTOS_ENV=PROD \
  KITH_DATABASE_URL="sqlite://$e2e_dir/kith-e2e.db" KITH_MEDIA_DIR="$e2e_dir/media" RUST_LOG=warn \
  KITH_PRESENCE_TIMEOUT_SECS=12 \
  ./target/release/server > "$e2e_dir/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:3000/healthz >/dev/null 2>&1 && break
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$e2e_dir/server.log" >&2; exit 1; fi
  sleep 0.1
done
(cd end2end && npx playwright test)
echo; echo "all checks passed"
