#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with libFuzzer and AddressSanitizer.
# The seed corpus is fuzz/corpus/TARGET; what a run finds that is new is kept beside it in a
# scratch copy, and a crash leaves its input in fuzz/artifacts/TARGET/ and fails the run.
# Turn every crash into a regression test before fixing it: copy the input to
# fuzz/regressions/TARGET/, and tests/fuzz_regressions.rs replays it on every cargo test
# (through the same body, fuzz/src/lib.rs).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo fuzz needs nightly-only flags (sanitizers); the stable toolchain accepts them so.
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
for t in "${targets[@]}"; do
  scratch=$(mktemp -d)
  cp -r "corpus/$t/." "$scratch/" 2>/dev/null || true
  echo "== fuzz $t for ${secs}s"
  log=$(mktemp)
  rc=0
  cargo fuzz run "$t" "$scratch" "corpus/$t" -- -max_total_time="$secs" -max_len=8192 \
    -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '(DONE|stat::number_of_executed_units|ERROR|SUMMARY|panicked)' "$log" || tail -20 "$log"
  rm -rf "$scratch" "$log"
  if [ "$rc" -ne 0 ]; then
    echo "fuzz target $t failed (exit $rc); the input is in fuzz/artifacts/$t/:" \
      "copy it to fuzz/regressions/$t/ (tests/fuzz_regressions.rs replays it)" >&2
    exit 1
  fi
done
echo "fuzzing: ${#targets[@]} targets ran ${secs}s each without a crash"
