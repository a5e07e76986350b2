#!/usr/bin/env bash
# Kith against socketioxide 0.18, side by side on this machine: builds the release server,
# the load tool and the peer (`loadgen/peer`), installs Node's ws for the memory peer
# (`loadgen/peer/ws`), then runs `loadgen versus`, which starts each in turn pinned to core 0
# (the load tool on core 1) and prints every round, the medians and Kith's ratios to the
# peers against their targets.
#
#   ./scripts/versus.sh                  3 rounds, Kith in-process (SQLite, synchronous=FULL)
#   ./scripts/versus.sh --rounds 5 --backends memory,redis --synchronous normal
#
# Any option of `loadgen versus` may follow (./target/release/loadgen --help lists them).
# The report goes to stdout; progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release -q -p server -p loadgen -p socketio-peer
npm ci --prefix loadgen/peer/ws --no-audit --no-fund --silent
args=(--ws-peer "$PWD/loadgen/peer/ws/ws-peer" "$@")
case " ${args[*]} " in *" --rounds"*) ;; *) args=(--rounds 3 "${args[@]}") ;; esac
exec ./target/release/loadgen versus "${args[@]}"
