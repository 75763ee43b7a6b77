#!/usr/bin/env bash
# The v2 cap model under load, everything in one session on one machine:
#   1. redis-benchmark running the daemon's own consume.lua by SHA with exactly the keys and
#      arguments the daemon sends for this config (6 counters: mailbox, domain and server, each
#      daily and hourly; 6 caps; the lock, address and refusal keys; client addresses tracked
#      with the default max_client_ips = 30) at 1, 8 and 64 clients: the physical limit of one
#      script call per decision here;
#   2. the release daemon with that config under erl-load (closed loop) at 8 and 64
#      connections, and the CPU time per decision of the daemon and of Redis at 8 (utime+stime
#      from /proc/PID/stat before and after);
#   3. open loop at 2,000 req/s on 64 connections, alternating the daemon, erl-load's
#      DUNNO-only server and erl-load's DUNNO server that first sends one Redis PING per request
#      (the floor of any answer that needs a Redis round trip) and the same server making the
#      daemon's own consume.lua call instead (erl-load --eval-consume: the floor of any answer
#      that makes it), 3 runs each: p50/p99/p99.9 and the p99 ratios.
# Medians of 3 runs. Usage: benches/v2.sh [seconds-per-run] (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q

start_redis

big=1000000000
write_v2_config info

# 1. The script alone, with the daemon's keys and arguments for this config.
sha="$(redis-cli -p "$rport" script load "$(cat src/store/consume.lua)")"
day="$(date -u +%F)"
hour="$(date -u +%FT%H00)"
u='user__rand_int__@example.com'
raw_row() {
  local c="$1" out=()
  for _ in 1 2 3; do
    redis-benchmark -p "$rport" -c "$c" -n $((c == 1 ? 30000 : 150000)) -r 100000 -q \
      EVALSHA "$sha" 12 "erl:$day:$u" "erl:$day:@example.com" "erl:$day:global" \
      "erl:$hour/1h:$u" "erl:$hour/1h:@example.com" "erl:$hour/1h:global" \
      erl:violations "erl:top:$day" "erl:raise:$u" "erl:lock:$u" "erl:ips:$day:$u" "erl:refusals:$day:$u" \
      1 count 1 1000 "$(date +%s)" "$u" 203.0.113.7 "" 93600 30 0 0 mx1 93600 93600 93600 7200 7200 7200 \
      1 $big user 1d 4 $big user 1h 2 $big domain 1d 5 $big domain 1h 3 $big global 1d 6 $big global 1h \
      2>/dev/null | grep -o '[0-9.]* requests per second' | cut -d' ' -f1 >> "$work/raw.$c"
  done
  median < "$work/raw.$c"
}
declare -A raw
for c in 1 8 64; do raw[$c]="$(raw_row "$c")"; done
redis-cli -p "$rport" flushall >/dev/null

# 2. The daemon, closed loop.
target/release/email-ratelimit serve --config "$work/config.toml" >"$work/daemon.log" 2>&1 &
dpid=$!
pids+=($dpid)
until [ -S "$work/erl.sock" ]; do sleep 0.05; done
declare -A rps p99 cpu_d cpu_r
for c in 8 64; do
  for i in 1 2 3; do
    d0="$(ticks "$dpid")"; r0="$(ticks "$rpid")"
    r="$(load --socket "$work/erl.sock" --connections "$c" --duration "$secs" --warmup 0)"
    d1="$(ticks "$dpid")"; r1="$(ticks "$rpid")"
    n="$(echo "$r" | field rps)"
    echo "$n" >> "$work/rps.$c"
    echo "$r" | field p99_us >> "$work/p99.$c"
    total=$(awk -v n="$n" -v s="$secs" 'BEGIN {print n * s}')
    awk -v a="$d0" -v b="$d1" -v t="$total" 'BEGIN {printf "%.1f\n", (b - a) * 10000 / t}' >> "$work/cpud.$c"
    awk -v a="$r0" -v b="$r1" -v t="$total" 'BEGIN {printf "%.1f\n", (b - a) * 10000 / t}' >> "$work/cpur.$c"
  done
  rps[$c]="$(median < "$work/rps.$c")"; p99[$c]="$(median < "$work/p99.$c")"
  cpu_d[$c]="$(median < "$work/cpud.$c")"; cpu_r[$c]="$(median < "$work/cpur.$c")"
done

# 3. Open loop at 2,000 req/s: the daemon, the DUNNO-only server, the DUNNO server with one
#    Redis PING per request and the one with the daemon's script call, alternating.
target/release/erl-load --serve-dunno "$work/dunno.sock" 2>/dev/null &
pids+=($!)
target/release/erl-load --serve-dunno "$work/ping.sock" --ping-redis "redis://127.0.0.1:$rport/" 2>/dev/null &
pids+=($!)
target/release/erl-load --serve-dunno "$work/script.sock" --ping-redis "redis://127.0.0.1:$rport/" --eval-consume \
  2>/dev/null &
pids+=($!)
until [ -S "$work/dunno.sock" ] && [ -S "$work/ping.sock" ] && [ -S "$work/script.sock" ]; do sleep 0.05; done
for i in 1 2 3; do
  for who in daemon dunno ping script; do
    sock="$work/$who.sock"; [ "$who" = daemon ] && sock="$work/erl.sock"
    r="$(load --socket "$sock" --connections 64 --duration "$secs" --rate 2000)"
    for q in p50_us p99_us p999_us; do echo "$r" | field "$q" >> "$work/open.$who.$q"; done
  done
done
o() { median < "$work/open.$1.$2"; }

echo
echo "machine: $(nproc) cores, $(uname -r); redis $(redis-server --version | grep -o 'v=[0-9.]*'); $(date -u +%FT%TZ)"
echo "config: mailbox 1d+1h (domain default), domain 1d+1h, server 1d+1h: 6 counters, 6 caps per decision"
echo
echo "| connections | raw script req/s | daemon req/s | daemon/raw | daemon p99 ms | CPU per decision: daemon / Redis (us) |"
echo "|---:|---:|---:|---:|---:|---:|"
echo "| 1 | ${raw[1]} | | | | |"
for c in 8 64; do
  ratio=$(awk -v a="${rps[$c]}" -v b="${raw[$c]}" 'BEGIN {printf "%.2f", a / b}')
  cpu=""; [ "$c" = 8 ] && cpu="${cpu_d[$c]} / ${cpu_r[$c]}"
  echo "| $c | ${raw[$c]} | ${rps[$c]} | $ratio | $(awk -v p="${p99[$c]}" 'BEGIN {printf "%.2f", p / 1000}') | $cpu |"
done
echo
echo "| open loop, 2,000 req/s, 64 connections | p50 ms | p99 ms | p99.9 ms |"
echo "|---|---:|---:|---:|"
for who in daemon dunno ping script; do
  printf '| %s | %.3f | %.3f | %.3f |\n' "$who" "$(o "$who" p50_us)e-3" "$(o "$who" p99_us)e-3" "$(o "$who" p999_us)e-3"
done
ratio() { awk -v a="$(o "$1" p99_us)" -v b="$(o "$2" p99_us)" 'BEGIN {printf "%.2f", a / b}'; }
echo "(ping = DUNNO after one Redis PING: the floor of any answer that needs a Redis round trip;"
echo " script = DUNNO after the daemon's own consume.lua call: the floor of any answer that makes it)"
echo "p99 ratios: daemon / DUNNO = $(ratio daemon dunno) (target <= 2); ping / DUNNO = $(ratio ping dunno); script / DUNNO = $(ratio script dunno); daemon / script = $(ratio daemon script)"
grep -c 'erl ok' "$work/daemon.log" | xargs -I{} echo "decisions logged: {}; fail-open lines: $(grep -c 'fail-open' "$work/daemon.log" || true)"
