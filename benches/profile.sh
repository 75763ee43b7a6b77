#!/usr/bin/env bash
# Where the daemon's CPU goes per decision: the v2 config of benches/v2.sh (mailbox, domain and
# server caps, daily and hourly; client addresses tracked), info logging to a file, erl-load
# closed loop at 8 connections. Prints the daemon's CPU per decision, `perf stat` (context
# switches, migrations, syscalls) per decision, and the top of a `perf report` by symbol
# (self time, children folded in the caller's shared object). Needs perf.
# Usage: benches/profile.sh [seconds] [perf-report-lines] (default 10, 40); ERL_LOG_LEVEL
# overrides the log level (to measure what logging costs); NO_PERF=1 skips the profile; ERL_BIN
# runs another build of the daemon (a baseline) instead of this tree's; FLOOR=dunno, ping or script
# measures erl-load's zero-work servers instead (the protocol floor, the Redis round-trip floor,
# the script-call floor); REDIS_SOCKET=1 puts Redis on a Unix socket.
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
case "${FLOOR:-}" in
  # The floors instead of the daemon: erl-load's DUNNO-only server, or the same after one Redis
  # PING per request (the least any Redis-backed answer costs).
  dunno) target/release/erl-load --serve-dunno "$work/erl.sock" >"$work/daemon.log" 2>&1 & ;;
  ping) target/release/erl-load --serve-dunno "$work/erl.sock" --ping-redis "$redis_url" \
    >"$work/daemon.log" 2>&1 & ;;
  # ... or after the daemon's own script call (same keys and arguments): what any server making
  # this call pays here, with Redis as busy as under the daemon.
  script) target/release/erl-load --serve-dunno "$work/erl.sock" --ping-redis "$redis_url" \
    --eval-consume >"$work/daemon.log" 2>&1 & ;;
  *) "${ERL_BIN:-target/release/email-ratelimit}" serve --config "$work/config.toml" >"$work/daemon.log" 2>&1 & ;;
esac
dpid=$!
pids+=($dpid)
until [ -S "$work/erl.sock" ]; do sleep 0.05; done
# Warm up (first-of-the-day keys, the script cached).
load --socket "$work/erl.sock" --connections 8 --duration 1 --warmup 0 >/dev/null

# Per thread: name and utime+stime ticks.
threads() { for t in /proc/"$dpid"/task/*; do printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"; done | sort; }
threads >"$work/threads0"
switches() { awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {printf "%s ", $2}' /proc/"$dpid"/task/*/status | awk '{v = 0; n = 0; for (i = 1; i <= NF; i += 2) {v += $i; n += $(i + 1)}; print v, n}'; }
sw0="$(switches)"
d0="$(ticks "$dpid")"
u0="$(awk '{print $14}' "/proc/$dpid/stat")"
perf stat -e task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter -p "$dpid" \
  -o "$work/stat.txt" -- sleep "$secs" &
statpid=$!
r="$(load --socket "$work/erl.sock" --connections 8 --duration "$secs" --warmup 0)"
wait "$statpid" || true
d1="$(ticks "$dpid")"
u1="$(awk '{print $14}' "/proc/$dpid/stat")"
threads >"$work/threads1"
sw1="$(switches)"
n="$(echo "$r" | field rps)"
total=$(awk -v n="$n" -v s="$secs" 'BEGIN {print n * s}')
echo "$r"
awk -v a="$d0" -v b="$d1" -v u="$((u1 - u0))" -v t="$total" 'BEGIN {printf "daemon CPU per decision: %.1f us (user %.1f, system %.1f; %d decisions)\n", (b - a) * 10000 / t, u * 10000 / t, (b - a - u) * 10000 / t, t}'
awk -v t="$total" 'NR == FNR {a[$1] += $2; next} {b[$1] += $2} END {for (k in b) if (b[k] - a[k] > 0) printf "  thread %s: %.1f us per decision\n", k, (b[k] - a[k]) * 10000 / t}' "$work/threads0" "$work/threads1"
awk -v t="$total" '/task-clock/ {gsub(",", "", $1); printf "task-clock per decision: %.1f us (perf: on-CPU time, all threads)\n", $1 * 1000 / t}' "$work/stat.txt"
echo "$sw0 $sw1" | awk -v t="$total" '{printf "voluntary / involuntary context switches per decision: %.2f / %.2f\n", ($3 - $1) / t, ($4 - $2) / t}'
awk -v t="$total" '/context-switches|cpu-migrations|sys_enter/ {gsub(",", "", $1); printf "%s per decision: %.2f\n", $2, $1 / t}' "$work/stat.txt"

[ -n "${NO_PERF:-}" ] && exit 0
perf record -F 2999 --call-graph dwarf,32768 -p "$dpid" -o "$work/perf.data" -- sleep 4 2>/dev/null &
recpid=$!
load --socket "$work/erl.sock" --connections 8 --duration 4 --warmup 0 >/dev/null
wait "$recpid" || true
echo
echo "perf report, self time by symbol:"
perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//' | cut -c1-150 | head -"$lines"
echo
echo "perf report, inclusive time (children) by symbol:"
perf report -i "$work/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//' | cut -c1-150 | head -"$lines"
