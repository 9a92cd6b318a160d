#!/usr/bin/env bash
# The benchmark of docs/performance.md: otpd validating PIN + HOTP over RADIUS (every Accept
# needs a durable counter write) against FreeRADIUS 3 checking a static PAP password from a
# users file, on this machine, with the same load generator, the same accounts and windows.
#
#   bench/run.sh                      10,000 accounts, windows 1 8 32 128, 5 s each, 3 rounds
#   bench/run.sh --accounts 20000 --duration 10 --rounds 5 --windows 8,32
#   bench/run.sh --no-freeradius      otpd only
#   bench/run.sh --fronts radius      RADIUS only (default radius,socket,http: the same daemon
#                                     also over its Unix socket and HTTP, rounds of their own)
#   bench/run.sh --big 0              skip the peak-RSS run with 100,000 accounts
#   bench/run.sh --store postgres     otpd on SQLite, on PostgreSQL with one node and with two
#                                     nodes, side by side (no FreeRADIUS, no big run)
#   bench/run.sh --store postgres --pg-standby none    PostgreSQL without its standby
#   bench/run.sh --store postgres --pg-stats   also what each statement cost PostgreSQL
#   bench/run.sh --store postgres --pg-set commit_delay=100   a setting of the primary
#                                     (repeatable; passed to postgres as -c NAME=VALUE)
#
# Rounds alternate otpd and FreeRADIUS (or the stores) so all see the same machine; the
# summary quotes medians. With --store postgres, a PostgreSQL primary and a synchronous standby
# (Debian's packages, run as the postgres user) are started on this machine, the accounts are
# moved there with `otpd store copy`, and two nodes share them: each gets its own accounts
# from a load generator of its own, both at the same time. Everything runs on 127.0.0.1 on free ports from a private temporary directory;
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
store=sqlite
pg_standby=sync
pg_stats=0
pg_set=()
fronts=radius,socket,http
while [ $# -gt 0 ]; do
  case "$1" in
    --accounts) accounts=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --windows) windows=$2; shift 2 ;;
    --big) big=$2; shift 2 ;;
    --no-freeradius) freeradius=0; shift ;;
    --fronts) fronts=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --store) store=$2; shift 2 ;;
    --pg-standby) pg_standby=$2; shift 2 ;;
    --pg-stats) pg_stats=1; shift ;;
    --pg-set)
      case "$2" in
        *[[:space:]]*) echo "bench/run.sh: --pg-set takes NAME=VALUE without spaces, not '$2'" >&2; exit 2 ;;
        [a-z]*=*) pg_set+=("-c $2") ;;
        *) echo "bench/run.sh: --pg-set takes NAME=VALUE, not $2" >&2; exit 2 ;;
      esac
      shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$store" in
  sqlite) ;;
  postgres) freeradius=0; big=0 ;;
  *) echo "bench/run.sh: --store is sqlite or postgres, not $store" >&2; exit 2 ;;
esac
socket_rounds=0 http_rounds=0
IFS=, read -ra front_list <<< "$fronts"
for fe in "${front_list[@]}"; do
  case "$fe" in
    radius) ;;
    socket) socket_rounds=1 ;;
    http) http_rounds=1 ;;
    *) echo "bench/run.sh: --fronts lists radius, socket and http, not $fe" >&2; exit 2 ;;
  esac
done
case "$pg_standby" in
  sync|none) ;;
  *) echo "bench/run.sh: --pg-standby is sync or none, not $pg_standby" >&2; exit 2 ;;
esac

secret=bench-secret-0123456789
seed=otpd-bench

echo "== building (release)"
cargo build --release --quiet --bin otpd --bin otpd-bench
otpd=$PWD/target/release/otpd
gen=$PWD/target/release/otpd-bench

work=$(mktemp -d /tmp/otpd-bench.XXXXXX)
pids=()
pg_dirs=()
cleanup() {
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  # The PostgreSQL servers started here, by their data directories.
  for d in "${pg_dirs[@]}"; do
    as_postgres "$pg_bin/pg_ctl" -D "$d" -m immediate stop > /dev/null 2>&1 || true
  done
  if [ $keep = 0 ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

# N free TCP ports, all different: each is held while the next is chosen. Two calls of
# free_tcp_port in a row may give the same port, since nothing listens on the first yet (a run
# once stopped with otpd's HTTP and metrics endpoints on one port).
free_tcp_ports() {
  python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}
free_tcp_port() {
  free_tcp_ports 1
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
  local tcp
  read -r -a tcp <<< "$(free_tcp_ports 2)"
  otpd_metrics=127.0.0.1:${tcp[0]}
  otpd_http=127.0.0.1:${tcp[1]}
  otpd_socket=$dir/otpd.sock
  cat > "$dir/otpd.toml" <<EOF
data_dir = "$dir/data"
[log]
# The audit goes to the database either way; a log line per login (otpd::audit) to a file
# would measure the file. The front-ends' own lines ("otpd ready") stay.
level = "warn,otpd::front=info,otpd::daemon=info"
[socket]
# The PAM module's way in, for the socket's rounds (the generator runs as this user).
path = "$otpd_socket"
allow_uids = [$(id -u)]
max_connections = 1024
[http]
# privacyIDEA's /validate/check, for the HTTP rounds; all load from one address, as above.
listen_plain = ["$otpd_http"]
max_in_flight = 1024
max_in_flight_per_source = 1024
[[http.clients]]
name = "bench"
address = "127.0.0.1"
service = "vpn"
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

# ---- PostgreSQL (--store postgres) ----------------------------------------------------------

pg_bin=""
# PostgreSQL refuses to run as root: its programs run as the postgres user then.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_sql() {
  "$pg_bin/psql" -X -q -A -t -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "$1"
}
pg_sql_db() {
  "$pg_bin/psql" -X -q -A -t -h 127.0.0.1 -p "$pg_port" -U postgres -d "$1" -c "$2"
}

# pg_statements: what PostgreSQL executed for otpd since the last reset, the costliest first:
# calls, total and mean time per statement (pg_stat_statements; --pg-stats).
pg_statements() {
  "$pg_bin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d otpd -c "
    SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
           round((mean_exec_time * 1000)::numeric, 1) AS mean_us, rows,
           left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement
    FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20"
}

# start_postgres DIR: a primary (and, unless --pg-standby none, a synchronous standby `s1`
# copied with pg_basebackup) on free ports, both with their WAL on this machine's disk. Sets
# pg_port.
start_postgres() {
  local dir=$1
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "PostgreSQL is missing: apt-get install -y postgresql (tests/run.sh installs it)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  chmod 711 "$work"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  pg_port=$(free_tcp_port)
  as_postgres "$pg_bin/initdb" -D "$dir/primary" -A trust -U postgres -E UTF8 --locale C \
    > "$dir/initdb.log"
  pg_dirs+=("$dir/primary")
  local stats=""
  [ "$pg_stats" = 1 ] && stats="-c shared_preload_libraries=pg_stat_statements"
  # otpd's nodes take connections + 1 sessions each.
  as_postgres "$pg_bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w \
    -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 $stats ${pg_set[*]}" \
    start > /dev/null
  pg_sql "CREATE DATABASE otpd"
  [ "$pg_stats" = 1 ] && pg_sql_db otpd "CREATE EXTENSION pg_stat_statements"
  if [ "$pg_standby" = sync ]; then
    local port2
    port2=$(free_tcp_port)
    as_postgres "$pg_bin/pg_basebackup" -D "$dir/standby" -R -X stream -c fast \
      -d "host=127.0.0.1 port=$pg_port user=postgres application_name=s1"
    pg_dirs+=("$dir/standby")
    as_postgres "$pg_bin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w \
      -o "-p $port2 -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" \
      start > /dev/null
    # Two calls: ALTER SYSTEM refuses to run inside psql's one transaction per -c.
    pg_sql "ALTER SYSTEM SET synchronous_standby_names = 's1'"
    pg_sql "SELECT pg_reload_conf()" > /dev/null
    local state=""
    for _ in $(seq 300); do
      state=$(pg_sql "SELECT sync_state FROM pg_stat_replication WHERE application_name = 's1'")
      [ "$state" = sync ] && break
      sleep 0.1
    done
    if [ "$state" != sync ]; then
      echo "the standby did not become synchronous ($state)" >&2
      tail -20 "$dir/standby.log" >&2
      exit 1
    fi
  fi
  echo "== PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on this machine:" \
    "primary on port $pg_port, standby: $pg_standby${pg_set[*]:+, primary with ${pg_set[*]}}"
}

# prepare_pg N: the accounts of both nodes (prefixes a and b, N each) made in SQLite and moved
# to PostgreSQL with `otpd store copy`. Sets key_file (the nodes share it).
prepare_pg() {
  local n=$1 stage=$work/pg-stage
  start_postgres "$work/pg"
  mkdir -p "$stage"
  printf 'data_dir = "%s/data"\n[socket]\npath = ""\n[radius]\nlisten = []\n' "$stage" \
    > "$stage/otpd.toml"
  "$otpd" --config "$stage/otpd.toml" init > /dev/null
  for prefix in a b; do
    # Token serials do not carry the prefix: each node's accounts get serials of their own.
    "$gen" accounts --accounts "$n" --seed "$seed" --prefix "$prefix" --format otpd \
      | sed "s/\"serial\":\"BENCH/\"serial\":\"BENCH-$prefix-/" > "$stage/accounts-$prefix.jsonl"
    "$otpd" --config "$stage/otpd.toml" user import "$stage/accounts-$prefix.jsonl" > /dev/null
  done
  "$otpd" --config "$stage/otpd.toml" store copy --from "sqlite:$stage/data/otpd.db" \
    --to "postgres:postgresql://postgres@127.0.0.1:$pg_port/otpd" | sed 's/^/   /'
  key_file=$stage/data/otpd.key
}

# start_pg_node DIR NAME: one otpd node on the PostgreSQL database. Sets otpd_pid, otpd_port,
# otpd_metrics.
start_pg_node() {
  local dir=$1 name=$2 allow=""
  mkdir -p "$dir/data"
  otpd_port=$(free_udp_port)
  otpd_metrics=127.0.0.1:$(free_tcp_port)
  [ "$pg_standby" = none ] && allow="allow_async_replication = true"
  cat > "$dir/otpd.toml" <<EOF
data_dir = "$dir/data"
key_file = "$key_file"
[log]
level = "warn,otpd::front=info,otpd::daemon=info"
[store]
kind = "postgres"
url = "postgresql://postgres@127.0.0.1:$pg_port/otpd"
node_name = "$name"
$allow
[socket]
path = ""
[metrics]
listen = "$otpd_metrics"
[radius]
listen = ["127.0.0.1:$otpd_port"]
max_in_flight_per_source = 1024
[[radius.clients]]
name = "bench"
address = "127.0.0.1"
secret = "$secret"
service = "vpn"
EOF
  "$otpd" --config "$dir/otpd.toml" serve > "$dir/otpd.log" 2>&1 &
  otpd_pid=$!
  pids+=("$otpd_pid")
  wait_for "$dir/otpd.log" "otpd ready" "$otpd_pid"
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
if [ "$store" = postgres ]; then
  sqlite_pid=$otpd_pid sqlite_port=$otpd_port sqlite_metrics=$otpd_metrics
  echo "== otpd on PostgreSQL: $accounts accounts per node (prefixes a and b), two nodes"
  prepare_pg "$accounts"
  start_pg_node "$work/pg-a" a
  pga_pid=$otpd_pid pga_port=$otpd_port pga_metrics=$otpd_metrics
  start_pg_node "$work/pg-b" b
  pgb_pid=$otpd_pid pgb_port=$otpd_port
  otpd_pid=$sqlite_pid otpd_port=$sqlite_port otpd_metrics=$sqlite_metrics
fi

# The replay checks come after all rounds (below), not inside them.
common=(--accounts "$accounts" --seed "$seed" --secret "$secret" --windows "$windows"
        --duration "$duration" --warmup "$warmup" --no-replay-check --json)
# Every account once before the measured rounds, so that each daemon's account cache holds
# what a server that has been running holds, in every configuration alike: the second
# PostgreSQL node otherwise met half its accounts for the first time in round 1's window 8,
# after the first node had met all of its own in the one-node rounds.
warm() {
  "$gen" run --accounts "$accounts" --seed "$seed" --secret "$secret" --windows 128 \
    --duration 3 --warmup 0 --no-replay-check --label warm "$@" > /dev/null 2>&1 || true
}
echo "== every account once, before the rounds"
warm --radius "127.0.0.1:$otpd_port" --state "$work/otpd/counters"
if [ "$store" = postgres ]; then
  warm --prefix a --radius "127.0.0.1:$pga_port" --state "$work/pg-a/counters" &
  warm_a=$!
  warm --prefix b --radius "127.0.0.1:$pgb_port" --state "$work/pg-b/counters"
  wait "$warm_a"
fi
pg_one_node() {
  local r=$1 stats_now=0
  echo "== round $r of $rounds: otpd on PostgreSQL, one node"
  [ "$pg_stats" = 1 ] && [ "$r" = "$rounds" ] && stats_now=1
  [ $stats_now = 1 ] && pg_sql_db otpd "SELECT pg_stat_statements_reset()" > /dev/null
  "$gen" run "${common[@]}" --prefix a --radius "127.0.0.1:$pga_port" \
    --pid "$pga_pid" --metrics "$pga_metrics" --label pg1 --state "$work/pg-a/counters" \
    > "$work/pg1-$r.json" || true
  if [ $stats_now = 1 ]; then
    echo "== what PostgreSQL executed in round $r, one node (all windows):"
    pg_statements
  fi
}
pg_two_nodes() {
  local r=$1 gen_a gen_b
  echo "== round $r of $rounds: otpd on PostgreSQL, two nodes at once"
  # Each node its own accounts and load generator; the windows run side by side.
  "$gen" run "${common[@]}" --prefix a --radius "127.0.0.1:$pga_port" \
    --pid "$pga_pid" --label pg2a --state "$work/pg-a/counters" > "$work/pg2a-$r.json" &
  gen_a=$!
  "$gen" run "${common[@]}" --prefix b --radius "127.0.0.1:$pgb_port" \
    --pid "$pgb_pid" --label pg2b --state "$work/pg-b/counters" > "$work/pg2b-$r.json" &
  gen_b=$!
  wait "$gen_a" || true
  wait "$gen_b" || true
}
for r in $(seq "$rounds"); do
  echo "== round $r of $rounds: otpd"
  "$gen" run "${common[@]}" --radius "127.0.0.1:$otpd_port" --pid "$otpd_pid" \
    --metrics "$otpd_metrics" --label otpd --state "$work/otpd/counters" > "$work/otpd-$r.json" || true
  # The same daemon, store and accounts over its other front-ends, each account's counter
  # going on from the state file.
  if [ "$store" = sqlite ] && [ $socket_rounds = 1 ]; then
    echo "== round $r of $rounds: otpd over its Unix socket"
    "$gen" run "${common[@]}" --socket "$otpd_socket" --pid "$otpd_pid" \
      --label socket --state "$work/otpd/counters" > "$work/socket-$r.json" || true
  fi
  if [ "$store" = sqlite ] && [ $http_rounds = 1 ]; then
    echo "== round $r of $rounds: otpd over HTTP"
    # One thread per 32 connections at most: the generator shares the machine's cores.
    "$gen" run "${common[@]}" --sockets 4 --http "$otpd_http" --pid "$otpd_pid" \
      --label http --state "$work/otpd/counters" > "$work/http-$r.json" || true
  fi
  if [ "$store" = postgres ]; then
    # Whichever ran second in a round was slower in three of four rounds, by up to 13 %
    # (docs/performance.md, 2026-12-07 15:23); with one order in every round that was
    # always the two nodes. Odd rounds run one node first, even rounds two nodes first.
    if [ $((r % 2)) = 1 ]; then
      pg_one_node "$r"
      pg_two_nodes "$r"
    else
      pg_two_nodes "$r"
      pg_one_node "$r"
    fi
  fi
  if [ $freeradius = 1 ]; then
    echo "== round $r of $rounds: FreeRADIUS"
    # FreeRADIUS 3.2.1 (Debian 12) sends no Message-Authenticator in its answers; otpd does.
    "$gen" run "${common[@]}" --static --allow-missing-message-authenticator \
      --radius "127.0.0.1:$fr_port" --pid "$fr_pid" --label freeradius \
      > "$work/fr-$r.json" || true
  fi
done
# Every account's last accepted code sent again once all measured rounds are over, through
# each front-end and node: refused, it counts as a failure, and the account's next Accept
# must clear that (a write of its own, and on PostgreSQL an announcement to every node's
# cache), which inside the rounds fell on whatever configuration ran next on those accounts.
echo "== every account's last accepted code again (each must be refused)"
replay_check() {
  local name=$1
  shift
  "$gen" run --accounts "$accounts" --seed "$seed" --secret "$secret" --windows 1 \
    --requests 1 --json "$@" > "$work/$name-replay.json" || true
}
replay_check otpd --radius "127.0.0.1:$otpd_port" --state "$work/otpd/counters"
if [ "$store" = sqlite ] && [ $socket_rounds = 1 ]; then
  replay_check socket --socket "$otpd_socket" --state "$work/otpd/counters"
fi
if [ "$store" = sqlite ] && [ $http_rounds = 1 ]; then
  replay_check http --sockets 4 --http "$otpd_http" --state "$work/otpd/counters"
fi
if [ "$store" = postgres ]; then
  # Node a's accounts served the one-node rounds and half of the two-node rounds.
  replay_check pg1 --prefix a --radius "127.0.0.1:$pga_port" --state "$work/pg-a/counters"
  replay_check pg2b --prefix b --radius "127.0.0.1:$pgb_port" --state "$work/pg-b/counters"
fi
otpd_rss=$(peak_rss_kib "$otpd_pid")
stop_pid "$otpd_pid"
if [ "$store" = postgres ]; then
  pg_rss="$(peak_rss_kib "$pga_pid") $(peak_rss_kib "$pgb_pid")"
  stop_pid "$pga_pid"
  stop_pid "$pgb_pid"
fi
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
if [ "$store" = postgres ]; then
python3 - "$work" "$rounds" "$pg_standby" "$otpd_rss" $pg_rss <<'EOF'
import json, statistics, sys
sys.path.insert(0, "bench")
from replay import after_rounds, describe
work, rounds, standby, sqlite_rss, rss_a, rss_b = sys.argv[1:7]
rounds = int(rounds)
def load(name):
    runs, ok, replays = {}, True, []
    for r in range(1, rounds + 1):
        try:
            s = json.load(open(f"{work}/{name}-{r}.json"))
        except Exception as e:
            print(f"{name} round {r}: no result ({e})")
            ok = False
            continue
        for run in s["runs"]:
            runs.setdefault(r, {})[run["window"]] = run
        ok &= s["ok"]
        if s.get("replay"):
            replays.append(s["replay"])
    # The replay check after all rounds (node a's, pg1, stands for the one-node rounds and
    # for node a of the two-node rounds).
    checked, after = after_rounds(work, name)
    if after:
        replays.append(after)
    return runs, ok and checked, replays
sq, sq_ok, sq_rep = load("otpd")
p1, p1_ok, p1_rep = load("pg1")
pa, pa_ok, _ = load("pg2a")
pb, pb_ok, pb_rep = load("pg2b")
# Two nodes: per round and window, the accepts of both generators add up; p50 is their mean
# and p99 the larger of the two.
p2 = {}
for r in set(pa) & set(pb):
    for w in set(pa[r]) & set(pb[r]):
        a, b = pa[r][w], pb[r][w]
        p2.setdefault(r, {})[w] = {
            "accepts_per_s": a["accepts_per_s"] + b["accepts_per_s"],
            "p50_ms": (a["p50_ms"] + b["p50_ms"]) / 2,
            "p99_ms": max(a["p99_ms"], b["p99_ms"]),
        }
def med(runs, w, key):
    v = [runs[r][w][key] for r in runs if w in runs[r] and runs[r][w].get(key) is not None]
    return statistics.median(v) if v else None
def f(v, fmt):
    return format(v, fmt) if v is not None else "-"
windows = sorted({w for runs in (sq, p1, p2) for r in runs for w in runs[r]})
print(f"medians of {rounds} rounds; PIN + HOTP over RADIUS, accept/s and latency in ms; "
      f"PostgreSQL standby: {standby}")
print(f"{'window':>6} | {'SQLite':>9} {'p50':>6} {'p99':>6} | {'PG 1 node':>9} {'p50':>6} "
      f"{'p99':>6} | {'PG 2 nodes':>10} {'p50':>6} {'p99':>6} | {'2 / 1':>5}")
two_over_one = {}
for w in windows:
    cells = []
    for runs, width in ((sq, 9), (p1, 9), (p2, 10)):
        cells.append(f"{f(med(runs, w, 'accepts_per_s'), f'{width}.0f')} "
                     f"{f(med(runs, w, 'p50_ms'), '6.2f')} {f(med(runs, w, 'p99_ms'), '6.2f')}")
    one, two = med(p1, w, "accepts_per_s"), med(p2, w, "accepts_per_s")
    if one and two:
        two_over_one[w] = two / one
    cells.append(f"{two / one:5.2f}" if one and two else f"{'-':>5}")
    print(f"{w:>6} | " + " | ".join(cells))
def totals(name, *sets):
    runs = [run for s in sets for r in s for run in s[r].values()]
    acc = sum(r["accepted"] for r in runs)
    rej = sum(r["rejected"] + r["other"] for r in runs)
    lost = sum(r["lost"] for r in runs)
    bad = sum(r["bad_replies"] for r in runs)
    return f"{name}: {acc} accepted, {rej} rejected, {lost} lost, {bad} bad answers"
from split import print_splits
print_splits("otpd on SQLite", [x for r in sq for x in sq[r].values()], windows)
print_splits("otpd on PostgreSQL, one node", [x for r in p1 for x in p1[r].values()], windows)
print(totals("SQLite", sq) + describe(sq_rep))
print(totals("PostgreSQL, one node", p1) + describe(p1_rep))
print(totals("PostgreSQL, two nodes", pa, pb) + describe(p1_rep + pb_rep))
mib = lambda k: f"{int(k) / 1024:.1f} MiB" if k else "-"
print(f"peak RSS: otpd on SQLite {mib(sqlite_rss)}, PostgreSQL nodes {mib(rss_a)} and {mib(rss_b)}")
ok = sq_ok and p1_ok and pa_ok and pb_ok
# Issue 17's targets, from this run's medians.
targets = []
one128, one8_p99 = med(p1, 128, "accepts_per_s"), med(p1, 8, "p99_ms")
if one128 is not None:
    targets.append((f"one node >= 20,000 accepts/s at window 128 ({one128:,.0f})", one128 >= 20000))
if one8_p99 is not None:
    targets.append((f"one node p99 <= 5 ms at window 8 ({one8_p99:.2f} ms)", one8_p99 <= 5.0))
for w, r in sorted(two_over_one.items()):
    targets.append((f"two nodes >= one at window {w} ({r:.3f})", r >= 1.0))
if targets:
    print("targets met: " + ("; ".join(t for t, good in targets if good) or "none"))
    print("targets not met: " + ("; ".join(t for t, good in targets if not good) or "none"))
print("verdict:", "OK" if ok else "NOT OK (lost, rejected, bad or double-accepted answers above)")
EOF
exit 0
fi
bench/summary.py --work "$work" --rounds "$rounds" --freeradius "$freeradius" \
  --socket "$socket_rounds" --http "$http_rounds" \
  --otpd-rss "$otpd_rss" --fr-rss "$fr_rss" --big "$big" --big-otpd "$big_otpd" --big-fr "$big_fr"
