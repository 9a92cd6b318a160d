#!/usr/bin/env bash
# otpd's HTTP front-end under load: privacyIDEA's /validate/check with PIN + a fresh HOTP code
# in every request (every Accept needs a durable counter write), over kept-alive plain-HTTP
# connections from otpd-bench, at windows (connections with one request outstanding each)
# 1, 8, 32 and 128. docs/performance.md quotes a run beside the RADIUS figures of run.sh.
#
#   bench/http.sh                     10,000 accounts, windows 1 8 32 128, 5 s each, 1 round
#   bench/http.sh --duration 10 --rounds 3 --windows 8,32
#
# Everything runs on 127.0.0.1 on a free port from a private temporary directory; the
# daemon is stopped by its pid at the end. Not part of tests/run.sh (too slow);
# tests/bench_smoke.rs keeps `otpd-bench --http` working.
set -euo pipefail
cd "$(dirname "$0")/.."

accounts=10000
duration=5
warmup=1
rounds=1
windows=1,8,32,128
while [ $# -gt 0 ]; do
  case "$1" in
    --accounts) accounts=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --windows) windows=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench/http.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

seed=otpd-bench
echo "== building (release)"
cargo build --release --quiet --bin otpd --bin otpd-bench
otpd=$PWD/target/release/otpd
gen=$PWD/target/release/otpd-bench

work=$(mktemp -d /tmp/otpd-bench-http.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/otpd.toml" <<EOF
data_dir = "$work/data"
[log]
# The audit goes to the database either way; a log line per login would measure the file.
level = "warn,otpd::front=info,otpd::daemon=info"
[socket]
path = ""
[radius]
listen = []
[http]
listen_plain = ["127.0.0.1:$port"]
# All load comes from one address here; the per-source shares protect clients from each other.
max_in_flight = 1024
max_in_flight_per_source = 1024
[[http.clients]]
name = "bench"
address = "127.0.0.1"
service = "vpn"
EOF
"$otpd" --config "$work/otpd.toml" init > /dev/null
"$gen" accounts --accounts "$accounts" --seed "$seed" --format otpd > "$work/accounts.jsonl"
"$otpd" --config "$work/otpd.toml" user import "$work/accounts.jsonl"
"$otpd" --config "$work/otpd.toml" serve > "$work/otpd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  grep -q "otpd ready" "$work/otpd.log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { tail -20 "$work/otpd.log" >&2; exit 1; }
  sleep 0.1
done

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "== otpd HTTP: $accounts accounts, windows $windows, ${duration}s each, $rounds round(s)"
for r in $(seq "$rounds"); do
  replay=(--no-replay-check)
  [ "$r" = "$rounds" ] && replay=()
  # One thread per 32 connections at most: the generator shares the machine's cores.
  "$gen" run --accounts "$accounts" --seed "$seed" --windows "$windows" --duration "$duration" \
    --warmup "$warmup" --sockets 4 --http "127.0.0.1:$port" --pid "$pid" --label otpd-http \
    --state "$work/counters" "${replay[@]}"
done
