#!/usr/bin/env bash
# What re-reading 100,000 database caps costs the requests being answered meanwhile.
#
# A temporary redis-server and mariadbd (100,000 opted-in mailboxes); the release daemon reads
# them. Per round: erl-load at 64 connections, once quiet and once while one cap changes and
# the daemon is sent SIGHUP every second (each SIGHUP re-reads and rebuilds the 100,000 caps).
# Reported, medians of 3 rounds: throughput, p99 and p99.9 quiet and during the storm, and the
# CPU per decision of the request thread (the main thread), quiet and during the storm. With
# ERL_BEFORE=<an older build>, the rounds alternate between that build and this one.
#
#   benches/refresh.sh [seconds-per-run]        (default 5)
#   ERL_BEFORE=/path/to/old/email-ratelimit benches/refresh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
runs=3
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q

start_redis
start_mariadb_caps

# Clock ticks `$1` -> `$2` over a run of $secs at `$3` req/s, in us per decision.
per_decision() { awk -v a="$1" -v b="$2" -v n="$3" -v s="$secs" 'BEGIN {printf "%.1f", (b - a) * 10000 / (n * s)}'; }

# One round of build `$1`: prints "rps_quiet p99_quiet p999_quiet rps_storm p99_storm
# p999_storm main_us_per_decision_storm refreshes main_us_per_decision_quiet".
round() {
  local bin="$1" pid storm r q t0 t1 n q0 q1
  rm -f "$work/erl.sock"
  cat > "$work/config.toml" <<TOML
[listen]
socket = "$work/erl.sock"
[redis]
url = "$redis_url"
[database]
url = "mysql://erl:erl@127.0.0.1:$mport/dbispconfig"
refresh_secs = 3600
cache_file = "$work/limits.json"
[log]
level = "info,email_ratelimit::limits=debug"
TOML
  "$bin" serve --config "$work/config.toml" >"$work/daemon.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  until grep -q "limits loaded from database" "$work/daemon.log" 2>/dev/null; do sleep 0.05; done
  load --socket "$work/erl.sock" --connections 64 --duration 1 --warmup 0 --senders 100000 >/dev/null
  q0="$(ticks "$pid/task/$pid")"
  q="$(load --socket "$work/erl.sock" --connections 64 --duration "$secs" --warmup 0 --senders 100000)"
  q1="$(ticks "$pid/task/$pid")"
  refresh_storm "$pid" &
  storm=$!
  pids+=("$storm")
  t0="$(ticks "$pid/task/$pid")"
  r="$(load --socket "$work/erl.sock" --connections 64 --duration "$secs" --warmup 0 --senders 100000)"
  t1="$(ticks "$pid/task/$pid")"
  kill "$storm"
  wait "$storm" 2>/dev/null || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  for x in "$q" "$r"; do
    if [ "$(echo "$x" | field dunno)" = 0 ] || [ "$(echo "$x" | field errors)" != 0 ]; then
      echo "unexpected replies: $x" >&2; exit 1
    fi
  done
  n="$(echo "$r" | field rps)"
  echo "$(echo "$q" | field rps) $(echo "$q" | field p99_us) $(echo "$q" | field p999_us)" \
    "$n $(echo "$r" | field p99_us) $(echo "$r" | field p999_us)" \
    "$(per_decision "$t0" "$t1" "$n")" \
    "$(grep -c 'limits refreshed from database' "$work/daemon.log" || true)" \
    "$(per_decision "$q0" "$q1" "$(echo "$q" | field rps)")"
}

builds=(after)
declare -A bin=([after]=target/release/email-ratelimit)
if [ -n "${ERL_BEFORE:-}" ]; then
  builds=(before after)
  bin[before]="$ERL_BEFORE"
fi
for b in "${builds[@]}"; do : >"$work/rounds.$b"; done
for _ in $(seq $runs); do
  for b in "${builds[@]}"; do round "${bin[$b]}" >>"$work/rounds.$b"; done
done

col() { cut -d' ' -f"$1" "$work/rounds.$2" | median; }
echo
echo "machine: $(nproc) cores; $(date -u +%FT%TZ); 100,000 caps from MariaDB; erl-load at 64 connections, ${secs}s per run; medians of $runs rounds${ERL_BEFORE:+, the builds alternating (before: $ERL_BEFORE)}"
echo
printf '| build | quiet: req/s | p99 | p99.9 | request thread CPU per decision | storm (a 100,000-cap re-read every second): req/s | p99 | p99.9 | request thread CPU per decision | re-reads |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for b in "${builds[@]}"; do
  printf '| %s | %s | %s us | %s us | %s us | %s | %s us | %s us | %s us | %s |\n' "$b" \
    "$(col 1 "$b")" "$(col 2 "$b")" "$(col 3 "$b")" "$(col 9 "$b")" "$(col 4 "$b")" "$(col 5 "$b")" \
    "$(col 6 "$b")" "$(col 7 "$b")" "$(col 8 "$b")"
done
