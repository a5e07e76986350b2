#!/usr/bin/env bash
# API conformance: runs schemathesis against the OpenAPI document a release server serves
# (/v1/openapi.json), as a signed-in user, and fails on any server error or any response
# whose status, content type, headers or body the document does not describe.
# Needs a release build (target/release/server) and ./scripts/setup.sh; the test command
# runs it. Usage: scripts/api-conformance.sh [max examples per operation, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-10}"
port=3001
dir="$(mktemp -d)"
LEPTOS_SITE_ADDR="127.0.0.1:$port" KITH_DATABASE_URL="sqlite://$dir/kith.db" KITH_MEDIA_DIR="$dir/media" RUST_LOG=warn \
  ./target/release/server > "$dir/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$dir/server.log" >&2; exit 1; fi
  sleep 0.1
done
token="$(curl -fs -X POST "http://127.0.0.1:$port/v1/auth/register" \
  -H 'content-type: application/json' \
  -d '{"username":"conformance","password":"correct horse battery staple"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
# Logout, ending a session and deleting the account would end the session the rest of
# the run uses (schemathesis finds the session's id in GET /v1/me/sessions and links it to
# the DELETE, after which every call was 401); the authorization matrix and the account
# tests cover them. Long polls wait up to 25 s: workers run them side by side.
target/schemathesis/bin/schemathesis run "http://127.0.0.1:$port/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --exclude-path /v1/auth/logout \
  --exclude-name "DELETE /v1/me/sessions/{id}" \
  --exclude-name "DELETE /v1/me" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "$examples" --workers 4 --request-timeout 40 \
  --generation-deterministic
