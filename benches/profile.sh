#!/usr/bin/env bash
# Where the daemon's CPU goes per decision: the v2 config of benches/v2.sh (mailbox, domain and
# server caps, daily and hourly; client addresses tracked), info logging to a file, erl-load
# closed loop at 8 connections. Prints the daemon's CPU per decision, `perf stat` (context
# switches, migrations, syscalls) per decision, and the top of a `perf report` by symbol
# (self time, children folded in the caller's shared object). Needs perf.
# Usage: benches/profile.sh [seconds] [perf-report-lines] (default 10, 40); ERL_LOG_LEVEL
# overrides the log level (to measure what logging costs); NO_PERF=1 skips the profile.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
lines="${2:-40}"
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q

start_redis
write_v2_config "${ERL_LOG_LEVEL:-info}"
target/release/email-ratelimit serve --config "$work/config.toml" >"$work/daemon.log" 2>&1 &
dpid=$!
pids+=($dpid)
until [ -S "$work/erl.sock" ]; do sleep 0.05; done
load() { target/release/erl-load "$@" 2>/dev/null | grep '^RESULT'; }
# Warm up (first-of-the-day keys, the script cached).
load --socket "$work/erl.sock" --connections 8 --duration 1 --warmup 0 >/dev/null

d0="$(ticks "$dpid")"
perf stat -e task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter -p "$dpid" \
  -o "$work/stat.txt" -- sleep "$secs" &
statpid=$!
r="$(load --socket "$work/erl.sock" --connections 8 --duration "$secs" --warmup 0)"
wait "$statpid" || true
d1="$(ticks "$dpid")"
n="$(echo "$r" | field rps)"
total=$(awk -v n="$n" -v s="$secs" 'BEGIN {print n * s}')
echo "$r"
awk -v a="$d0" -v b="$d1" -v t="$total" 'BEGIN {printf "daemon CPU per decision: %.1f us (%d decisions)\n", (b - a) * 10000 / t, t}'
awk -v t="$total" '/context-switches|cpu-migrations|sys_enter/ {gsub(",", "", $1); printf "%s per decision: %.2f\n", $2, $1 / t}' "$work/stat.txt"

[ -n "${NO_PERF:-}" ] && exit 0
perf record -F 2999 --call-graph dwarf,32768 -p "$dpid" -o "$work/perf.data" -- sleep 4 2>/dev/null &
recpid=$!
load --socket "$work/erl.sock" --connections 8 --duration 4 --warmup 0 >/dev/null
wait "$recpid" || true
echo
echo "perf report, self time by symbol:"
perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -"$lines"
echo
echo "perf report, inclusive time (children) by symbol:"
perf report -i "$work/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -"$lines"
