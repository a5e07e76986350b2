#!/usr/bin/env bash
# Proves the browser bundle carries no server code: the hydrate build of `frontend` (and
# so of `app`) must not depend on sqlx, redis, argon2 or tokio's runtime/network parts.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
for crate in sqlx redis argon2 axum hyper; do
  if cargo tree -p frontend --target wasm32-unknown-unknown -e normal -i "$crate" >/dev/null 2>&1; then
    echo "hydrate build depends on $crate:" >&2
    cargo tree -p frontend --target wasm32-unknown-unknown -e normal -i "$crate" >&2 | head -20
    fail=1
  fi
done
if cargo tree -p frontend --target wasm32-unknown-unknown -e normal -f '{p} {f}' \
   | grep -E '^.*tokio v[^ ]+ .*(rt-multi-thread|net|fs|process|signal)' >&2; then
  echo "hydrate build enables tokio's server features" >&2
  fail=1
fi
[ "$fail" = 0 ] && echo "hydrate dependency check: no sqlx, redis, argon2, axum, hyper or tokio server features"
exit "$fail"
