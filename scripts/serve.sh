#!/usr/bin/env bash
# Sets everything up, then serves Kith at http://127.0.0.1:3000 on the embedded backends
# (SQLite file kith.db, no Redis). Extra arguments go to `cargo leptos serve`
# (e.g. --release).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
exec cargo leptos serve "$@"
