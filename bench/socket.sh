#!/usr/bin/env bash
# The PAM path against RADIUS, side by side in one run: one otpd with both front-ends on one
# store; per window, a RADIUS round then a Unix socket round (otpd-bench --radius / --socket),
# repeated --rounds times, with the same accounts and one counter state file, so the two
# see the same store, the same machine load and the same moment. Prints the socket/RADIUS
# ratio of accepts per second per window (issue 19: within 10 %).
#
#   bench/run.sh-like options: --accounts N --duration S --rounds R --windows 1,8,32,128
#   --otpd DIR   take otpd and otpd-bench from DIR instead of building (to compare builds)
set -euo pipefail
cd "$(dirname "$0")/.."

accounts=10000 duration=5 warmup=1 rounds=2 windows=1,8,32,128 bin=""
while [ $# -gt 0 ]; do
  case $1 in
    --accounts) accounts=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --windows) windows=$2; shift 2 ;;
    --otpd) bin=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  cargo build --release --quiet --bin otpd --bin otpd-bench
  bin=$PWD/target/release
fi
otpd=$bin/otpd gen=$bin/otpd-bench
secret=bench-secret-0123456789 seed=otpd-bench
work=$(mktemp -d /tmp/otpd-socket-bench.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/otpd.toml" <<CONF
data_dir = "$work/data"
[log]
level = "warn,otpd::front=info,otpd::daemon=info"
[socket]
path = "$work/otpd.sock"
allow_uids = [$(id -u)]
max_connections = 1024
[radius]
listen = ["127.0.0.1:$port"]
max_in_flight_per_source = 1024
[[radius.clients]]
name = "bench"
address = "127.0.0.1"
secret = "$secret"
service = "vpn"
CONF
"$otpd" --config "$work/otpd.toml" init > /dev/null
"$gen" accounts --accounts "$accounts" --seed "$seed" --format otpd > "$work/accounts.jsonl"
"$otpd" --config "$work/otpd.toml" user import "$work/accounts.jsonl" > /dev/null
"$otpd" --config "$work/otpd.toml" serve > "$work/otpd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  grep -q "otpd ready" "$work/otpd.log" && break
  kill -0 "$pid" || { tail "$work/otpd.log"; exit 1; }
  sleep 0.1
done

echo "== $(date -u '+%F %T UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
common=(--accounts "$accounts" --seed "$seed" --duration "$duration" --warmup "$warmup"
        --no-replay-check --state "$work/counters" --pid "$pid" --json)
IFS=, read -ra ws <<< "$windows"
for r in $(seq "$rounds"); do
  for w in "${ws[@]}"; do
    "$gen" run "${common[@]}" --windows "$w" --secret "$secret" --radius "127.0.0.1:$port" \
      --label radius > "$work/radius-$r-$w.json"
    "$gen" run "${common[@]}" --windows "$w" --socket "$work/otpd.sock" --label socket \
      > "$work/socket-$r-$w.json"
  done
done
echo "== done $(date -u '+%T UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$rounds" "$windows" <<'PY'
import json, sys
work, rounds, windows = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
print("| window | RADIUS accepts/s | socket accepts/s | socket/RADIUS | RADIUS p99 ms | socket p99 ms | CPU µs/login R / S | lost | rejected |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for w in windows:
    rows = {}
    for kind in ("radius", "socket"):
        rs = [json.load(open(f"{work}/{kind}-{r}-{w}.json"))["runs"][0] for r in range(1, rounds + 1)]
        rows[kind] = rs
    ratios = [s["accepts_per_s"] / r["accepts_per_s"] for r, s in zip(rows["radius"], rows["socket"]) if r["accepts_per_s"]]
    f = lambda k, key, fmt: " / ".join(fmt.format(x[key] or 0) for x in rows[k])
    cpu = lambda k: " / ".join(f"{x.get('daemon_cpu_us_per_req') or 0:.0f}" for x in rows[k])
    lost = sum(x["lost"] for k in rows for x in rows[k])
    rejected = sum(x["rejected"] + x["other"] for k in rows for x in rows[k])
    print(f"| {w} | {f('radius','accepts_per_s','{:,.0f}')} | {f('socket','accepts_per_s','{:,.0f}')} | "
          f"{' / '.join(f'{x:.2f}' for x in ratios)} | {f('radius','p99_ms','{:.2f}')} | "
          f"{f('socket','p99_ms','{:.2f}')} | {cpu('radius')} ; {cpu('socket')} | {lost} | {rejected} |")
PY
