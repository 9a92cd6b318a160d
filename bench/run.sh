#!/usr/bin/env bash
# The benchmark of docs/performance.md: otpd validating PIN + HOTP over RADIUS (every Accept
# needs a durable counter write) against FreeRADIUS 3 checking a static PAP password from a
# users file, on this machine, with the same load generator, the same accounts and windows.
#
#   bench/run.sh                      10,000 accounts, windows 1 8 32 128, 5 s each, 3 rounds
#   bench/run.sh --accounts 20000 --duration 10 --rounds 5 --windows 8,32
#   bench/run.sh --no-freeradius      otpd only
#   bench/run.sh --big 0              skip the peak-RSS run with 100,000 accounts
#
# Rounds alternate otpd and FreeRADIUS so both see the same machine; the summary quotes
# medians. Everything runs on 127.0.0.1 on free ports from a private temporary directory;
# every process started here is stopped by its pid at the end. Not part of tests/run.sh (too
# slow); tests/bench_smoke.rs keeps the load generator working.
set -euo pipefail
cd "$(dirname "$0")/.."

accounts=10000
duration=5
warmup=1
rounds=3
windows=1,8,32,128
big=100000
freeradius=1
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --accounts) accounts=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --windows) windows=$2; shift 2 ;;
    --big) big=$2; shift 2 ;;
    --no-freeradius) freeradius=0; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

secret=bench-secret-0123456789
seed=otpd-bench

echo "== building (release)"
cargo build --release --quiet --bin otpd --bin otpd-bench
otpd=$PWD/target/release/otpd
gen=$PWD/target/release/otpd-bench

work=$(mktemp -d /tmp/otpd-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  if [ $keep = 0 ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

free_tcp_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

free_udp_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until FILE contains TEXT (at most 30 s) or the process PID died.
wait_for() {
  local file=$1 text=$2 pid=$3
  for _ in $(seq 300); do
    grep -q "$text" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { echo "process $pid died:" >&2; tail -20 "$file" >&2; exit 1; }
    sleep 0.1
  done
  echo "timed out waiting for '$text' in $file" >&2
  tail -20 "$file" >&2
  exit 1
}

peak_rss_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# ---- otpd -----------------------------------------------------------------------------------

# start_otpd DIR N: a fresh store with N accounts, the daemon on a free port. Sets otpd_pid,
# otpd_port, otpd_metrics (the /metrics endpoint's address, read by otpd-bench per window).
start_otpd() {
  local dir=$1 n=$2
  mkdir -p "$dir"
  otpd_port=$(free_udp_port)
  otpd_metrics=127.0.0.1:$(free_tcp_port)
  cat > "$dir/otpd.toml" <<EOF
data_dir = "$dir/data"
[log]
# The audit goes to the database either way; a log line per login (otpd::audit) to a file
# would measure the file. The front-ends' own lines ("otpd ready") stay.
level = "warn,otpd::front=info,otpd::daemon=info"
[socket]
path = ""
[metrics]
# Commits, batch sizes and sampled CPU per phase: the summary's "where otpd's time goes".
listen = "$otpd_metrics"
[radius]
listen = ["127.0.0.1:$otpd_port"]
# All load comes from one address here; the per-source share protects NASes from each other.
max_in_flight_per_source = 1024
[[radius.clients]]
name = "bench"
address = "127.0.0.1"
secret = "$secret"
service = "vpn"
EOF
  "$otpd" --config "$dir/otpd.toml" init > /dev/null
  "$gen" accounts --accounts "$n" --seed "$seed" --format otpd > "$dir/accounts.jsonl"
  "$otpd" --config "$dir/otpd.toml" user import "$dir/accounts.jsonl"
  rm -f "$dir/accounts.jsonl"
  "$otpd" --config "$dir/otpd.toml" serve > "$dir/otpd.log" 2>&1 &
  otpd_pid=$!
  pids+=("$otpd_pid")
  wait_for "$dir/otpd.log" "otpd ready" "$otpd_pid"
}

# ---- FreeRADIUS -----------------------------------------------------------------------------

install_freeradius() {
  command -v freeradius > /dev/null && [ -d /etc/freeradius/3.0 ] && return 0
  echo "== installing FreeRADIUS 3 (Debian package freeradius)"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo > /dev/null || { echo "not root and no sudo: install freeradius" >&2; exit 1; }
    sudo=sudo
  fi
  # The package must not start the system's own server: a temporary policy-rc.d forbids it.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d > /dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends freeradius > /dev/null
  [ $made_policy = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
  return 0
}

# start_freeradius DIR N: a private copy of /etc/freeradius/3.0 with a radiusd.conf of only
# what PAP from a users file needs. Sets fr_pid, fr_port.
start_freeradius() {
  local dir=$1 n=$2
  mkdir -p "$dir/log" "$dir/run"
  cp -a /etc/freeradius/3.0 "$dir/raddb"
  fr_port=$(free_udp_port)
  cat > "$dir/raddb/radiusd.conf" <<EOF
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = \${exec_prefix}/sbin
logdir = $dir/log
raddbdir = $dir/raddb
radacctdir = \${logdir}/radacct
name = freeradius
confdir = \${raddbdir}
modconfdir = \${confdir}/mods-config
certdir = \${confdir}/certs
cadir = \${confdir}/certs
run_dir = $dir/run
db_dir = \${raddbdir}
libdir = /usr/lib/freeradius
pidfile = \${run_dir}/\${name}.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 65536
hostname_lookups = no
log {
	destination = files
	file = \${logdir}/radius.log
	auth = no
	auth_badpass = no
	auth_goodpass = no
}
security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}
thread pool {
	start_servers = 5
	max_servers = 32
	min_spare_servers = 3
	max_spare_servers = 10
	max_requests_per_server = 0
	auto_limit_acct = no
}
client bench {
	ipaddr = 127.0.0.1
	secret = $secret
	require_message_authenticator = yes
}
modules {
	pap {
		normalise = yes
	}
	files {
		filename = \${confdir}/bench-users
	}
}
server default {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $fr_port
	}
	authorize {
		files
		pap
	}
	authenticate {
		Auth-Type PAP {
			pap
		}
	}
}
EOF
  "$gen" accounts --accounts "$n" --seed "$seed" --format freeradius > "$dir/raddb/bench-users"
  freeradius -f -d "$dir/raddb" > "$dir/stdout.log" 2>&1 &
  fr_pid=$!
  pids+=("$fr_pid")
  wait_for "$dir/log/radius.log" "Ready to process requests" "$fr_pid"
}

stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# ---- the runs -------------------------------------------------------------------------------

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# The floor under every durable Accept: one 4 KiB write in place and its flush, on the disk
# the stores are on. At window 1 each login waits for one, so 1 s / p50 bounds otpd there
# whatever the CPU does (docs/performance.md, "What bounds it").
python3 - "$work" <<'EOF'
import os, sys, time
path = os.path.join(sys.argv[1], "flush-probe")
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
page = b"\x5a" * 4096
for i in range(64):
    os.pwrite(fd, page, i * 4096)
os.fsync(fd)
t = []
for i in range(2000):
    start = time.perf_counter()
    os.pwrite(fd, page, (i % 64) * 4096)
    os.fdatasync(fd)
    t.append(time.perf_counter() - start)
os.close(fd)
os.unlink(path)
t.sort()
p50, p99 = t[len(t) // 2] * 1e6, t[len(t) * 99 // 100] * 1e6
with open(os.path.join(sys.argv[1], "disk.json"), "w") as fh:
    fh.write(f'{{"p50_us": {p50:.1f}, "p99_us": {p99:.1f}}}')
print(f"== disk: a 4 KiB write + fdatasync takes {p50:.0f} us (p50), {p99:.0f} us (p99); "
      f"one per login in series caps window 1 at {1e6 / p50:,.0f} logins/s")
EOF
echo "== otpd: $accounts accounts"
start_otpd "$work/otpd" "$accounts"
if [ $freeradius = 1 ]; then
  install_freeradius
  echo "== FreeRADIUS $(freeradius -v 2>/dev/null | head -1 | sed 's/.*Version \([0-9.]*\).*/\1/'): $accounts users"
  start_freeradius "$work/fr" "$accounts"
fi

common=(--accounts "$accounts" --seed "$seed" --secret "$secret" --windows "$windows"
        --duration "$duration" --warmup "$warmup" --json)
for r in $(seq "$rounds"); do
  echo "== round $r of $rounds: otpd"
  replay=(--no-replay-check)
  [ "$r" = "$rounds" ] && replay=()
  "$gen" run "${common[@]}" "${replay[@]}" --radius "127.0.0.1:$otpd_port" --pid "$otpd_pid" \
    --metrics "$otpd_metrics" --label otpd --state "$work/otpd/counters" > "$work/otpd-$r.json" || true
  if [ $freeradius = 1 ]; then
    echo "== round $r of $rounds: FreeRADIUS"
    # FreeRADIUS 3.2.1 (Debian 12) sends no Message-Authenticator in its answers; otpd does.
    "$gen" run "${common[@]}" --static --allow-missing-message-authenticator \
      --radius "127.0.0.1:$fr_port" --pid "$fr_pid" --label freeradius \
      > "$work/fr-$r.json" || true
  fi
done
otpd_rss=$(peak_rss_kib "$otpd_pid")
stop_pid "$otpd_pid"
fr_rss=""
if [ $freeradius = 1 ]; then
  fr_rss=$(peak_rss_kib "$fr_pid")
  stop_pid "$fr_pid"
fi

big_otpd="" big_fr=""
if [ "$big" -gt 0 ]; then
  echo "== peak RSS with $big accounts (window 128 for $duration s)"
  start_otpd "$work/otpd-big" "$big"
  "$gen" run --accounts "$big" --seed "$seed" --secret "$secret" --windows 128 \
    --duration "$duration" --warmup 0 --no-replay-check --radius "127.0.0.1:$otpd_port" \
    --pid "$otpd_pid" --label otpd --json > "$work/otpd-big.json" || true
  big_otpd=$(peak_rss_kib "$otpd_pid")
  stop_pid "$otpd_pid"
  if [ $freeradius = 1 ]; then
    start_freeradius "$work/fr-big" "$big"
    "$gen" run --accounts "$big" --seed "$seed" --secret "$secret" --windows 128 --static \
      --allow-missing-message-authenticator --duration "$duration" --warmup 0 \
      --radius "127.0.0.1:$fr_port" --pid "$fr_pid" --label freeradius --json \
      > "$work/fr-big.json" || true
    big_fr=$(peak_rss_kib "$fr_pid")
    stop_pid "$fr_pid"
  fi
fi

echo
bench/summary.py --work "$work" --rounds "$rounds" --freeradius "$freeradius" \
  --otpd-rss "$otpd_rss" --fr-rss "$fr_rss" --big "$big" --big-otpd "$big_otpd" --big-fr "$big_fr"
