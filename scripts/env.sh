# Sourced by the scripts: puts the project's npm tools (wasm-opt) on PATH.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/end2end/node_modules/.bin:$HOME/.cargo/bin:$PATH"
