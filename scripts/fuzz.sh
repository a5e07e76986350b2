#!/usr/bin/env bash
# Fuzzes Kith with cargo-fuzz (libFuzzer): every target in fuzz/fuzz_targets, or those
# named, for SECONDS each (default 60).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each target first replays its committed inputs (fuzz/seeds/<target>, and the crashes
# kept as regressions in fuzz/regressions/<target>), then fuzzes from them and from what
# earlier runs found (fuzz/corpus/<target>, not committed). A crash, a timeout or a leak
# fails the run; its input is left in fuzz/artifacts/<target>/. At the end it prints each
# target's executions, coverage (libFuzzer's edges `cov` and features `ft`) and corpus.
# To see what one input does: KITH_FUZZ_TRACE=1 fuzz/target/x86_64-unknown-linux-gnu/release/<target> <file>
#
# The targets build with nightly Rust and without a sanitizer: the project's code has no
# unsafe, so what the fuzzers look for is panics, hangs and wrong answers, which
# debug assertions (on in fuzz builds) and the targets' own checks catch.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

seconds="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "nightly Rust or cargo-fuzz is missing: run scripts/setup.sh" >&2
  exit 1
fi

(cd fuzz && cargo +nightly fuzz build -s none)
bin_dir="fuzz/target/x86_64-unknown-linux-gnu/release"

summary=()
failed=0
for target in "${targets[@]}"; do
  bin="$bin_dir/$target"
  corpus="fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  log="$(mktemp)"
  printf '\n\033[1m==> %s: replaying the committed inputs\033[0m\n' "$target"
  replay=("fuzz/seeds/$target")
  if [ -d "fuzz/regressions/$target" ]; then replay+=("fuzz/regressions/$target"); fi
  if ! "$bin" -runs=0 -artifact_prefix="$artifacts/" "${replay[@]}" > "$log" 2>&1; then
    tail -40 "$log"
    echo "$target: a committed input fails" >&2
    failed=1
    continue
  fi
  printf '\033[1m==> %s: fuzzing for %s s\033[0m\n' "$target" "$seconds"
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
      -dict=fuzz/dicts/kith.dict -artifact_prefix="$artifacts/" -print_final_stats=1 \
      "$corpus" "fuzz/seeds/$target" > "$log" 2>&1; then
    outcome=ok
  else
    outcome=FAILED
    failed=1
    tail -60 "$log"
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corp="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")"
  summary+=("$(printf '%-14s %-7s %10s %8s %8s %8s' "$target" "$outcome" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
  rm -f "$log"
done

printf '\n%-14s %-7s %10s %8s %8s %8s\n' target outcome executions cov ft corpus
printf '%s\n' "${summary[@]}"
exit "$failed"
