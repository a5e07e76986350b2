#!/usr/bin/env bash
# Runs every check and test: formatting, clippy (ssr and hydrate separately), the
# hydrate dependency check, the Rust tests (on the embedded backends, and on Redis too when
# one answers on 127.0.0.1:6379), and the Playwright suite against a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "clippy (ssr: server and app)"
cargo clippy -p server -p app --features app/ssr --all-targets -- -D warnings

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
cargo test -p server -p app --features app/ssr

step "Playwright end-to-end suite (release build)"
e2e_db="$(mktemp -d)/kith-e2e.db"
KITH_DATABASE_URL="sqlite://$e2e_db" cargo leptos end-to-end --release
echo; echo "all checks passed"
