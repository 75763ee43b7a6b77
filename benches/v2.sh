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
# Medians of 3 runs (ROUNDS=n for more in sections 1 and 2). Usage: benches/v2.sh [seconds-per-run] (default 5)
# With ERL_BEFORE=<an older release build> and ERL_BEFORE_REV=<its git revision> (whose
# consume.lua the raw rows call with that build's own keys and arguments), sections 1 and 2 run
# both builds, alternating round by round, and print both rows and the ratios after/before:
#   ERL_BEFORE=/path/to/old/email-ratelimit ERL_BEFORE_REV=4a3677c benches/v2.sh
# ERL_LEARN=1 runs this build with learned allowances on (its raw rows pass the history's mark);
# ERL_LEARN=1 ERL_LEARN_AB=1 runs this build with learning off ("before") and on ("after").
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
rounds="${ROUNDS:-3}"
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
caps=(1 $big user 1d rcpt 4 $big user 1h rcpt 2 $big domain 1d rcpt 5 $big domain 1h rcpt 3 $big global 1d rcpt 6 $big global 1h rcpt)
ttls=(93600 1 93600 1 93600 1 7200 1 7200 1 7200 1)
caps_21=(1 $big user 1d 4 $big user 1h 2 $big domain 1d 5 $big domain 1h 3 $big global 1d 6 $big global 1h)
ttls_21=(93600 93600 93600 7200 7200 7200)
counters=("erl:$day:$u" "erl:$day:@example.com" "erl:$day:global" "erl:$hour/1h:$u" "erl:$hour/1h:@example.com" "erl:$hour/1h:global")
# This build's call (issue 22: the sender's history, no per-message reject, the history's mark
# ("" with learning off, "x:DATE" with it on) and TTL, the client's network ("" with learning or
# known_networks off), a TTL and an increment per counter, a unit per cap). ERL_LEARN=1 passes
# learning on, with known networks.
mark=""; net=""; [ "${ERL_LEARN:-0}" = 1 ] && { mark="x:$day"; net="203.0.113.0/24"; }
args_after=(16 "${counters[@]}" erl:violations "erl:top:$day" "erl:raise:$u" "erl:lock:$u" "erl:ips:$day:$u"
  "erl:refusals:$day:$u" "erl:fp:$day:$u" erl:locks:auto "erl:lock:@example.com" "erl:hist:$u"
  1 count 1 1000 "$(date +%s)" "$u" 203.0.113.7 "" 93600 30 0 0 mx1 "" 0123456789abcdef 50000 0 691200 0 "$mark" 2592000 "$net" "${ttls[@]}" "${caps[@]}")
# The issue-21 call (4a3677c and before, down to 0e9a9b4's successor): the domain's lock and the
# top senders' TTL; a TTL per counter, 4 per cap.
args_before=(15 "${counters[@]}" erl:violations "erl:top:$day" "erl:raise:$u" "erl:lock:$u" "erl:ips:$day:$u"
  "erl:refusals:$day:$u" "erl:fp:$day:$u" erl:locks:auto "erl:lock:@example.com"
  1 count 1 1000 "$(date +%s)" "$u" 203.0.113.7 "" 93600 30 0 0 mx1 "" 0123456789abcdef 50000 0 691200 "${ttls_21[@]}" "${caps_21[@]}")
builds=(after)
declare -A bin shas
bin[after]=target/release/email-ratelimit
shas[after]="$sha"
if [ -n "${ERL_LEARN_AB:-}" ]; then
  # Learning off (before) and on (after), this build both times, alternating in one run.
  [ "${ERL_LEARN:-0}" = 1 ] || { echo "ERL_LEARN_AB needs ERL_LEARN=1" >&2; exit 2; }
  builds=(before after)
  bin[before]=target/release/email-ratelimit
  shas[before]="$sha"
  args_before=("${args_after[@]}")
  for i in "${!args_before[@]}"; do
    case "${args_before[$i]}" in "$mark"|"$net") args_before[$i]="" ;; esac
  done
elif [ -n "${ERL_BEFORE:-}" ]; then
  builds=(before after)
  bin[before]="$ERL_BEFORE"
  shas[before]="$(redis-cli -p "$rport" script load "$(git show "${ERL_BEFORE_REV:?ERL_BEFORE_REV=<git revision of ERL_BEFORE>}:src/store/consume.lua")")"
fi
raw_once() {
  local b="$1" c="$2"
  local -n args="args_$b"
  redis-benchmark -p "$rport" -c "$c" -n $((c == 1 ? 30000 : 150000)) -r 100000 -q \
    EVALSHA "${shas[$b]}" "${args[@]}" 2>/dev/null | grep -o '[0-9.]* requests per second' | cut -d' ' -f1 >> "$work/raw.$b.$c"
}
declare -A raw
for c in 1 8 64; do
  for _ in $(seq "$rounds"); do for b in "${builds[@]}"; do raw_once "$b" "$c"; done; done
  for b in "${builds[@]}"; do raw[$b.$c]="$(median < "$work/raw.$b.$c")"; done
done
redis-cli -p "$rport" flushall >/dev/null

# 2. The daemon, closed loop. With ERL_BEFORE both builds run side by side (this one on
#    erl.sock and Redis db 0, the older one on erl-before.sock and db 1) and the rounds alternate;
#    each round warms its daemon for 1 s, then measures req/s and CPU over the measured seconds.
declare -A rps p99 cpu_d cpu_r dpid sock
# (The older build knows no [learn]: it is left out of its config.)
sed -e "s|$work/erl.sock|$work/erl-before.sock|" -e "s|:$rport/0|:$rport/1|" -e '/^\[learn\]/,$d' "$work/config.toml" > "$work/config-before.toml"
sock[after]="$work/erl.sock"; sock[before]="$work/erl-before.sock"
for b in "${builds[@]}"; do
  conf="$work/config.toml"; [ "$b" = before ] && conf="$work/config-before.toml"
  "${bin[$b]}" serve --config "$conf" >"$work/daemon.$b.log" 2>&1 &
  dpid[$b]=$!
  pids+=("${dpid[$b]}")
  until [ -S "${sock[$b]}" ]; do sleep 0.05; done
done
for c in 8 64; do
  for _ in $(seq "$rounds"); do
    for b in "${builds[@]}"; do
      load --socket "${sock[$b]}" --connections "$c" --duration 1 --warmup 0 >/dev/null
      d0="$(ticks "${dpid[$b]}")"; r0="$(ticks "$rpid")"
      r="$(load --socket "${sock[$b]}" --connections "$c" --duration "$secs" --warmup 0)"
      d1="$(ticks "${dpid[$b]}")"; r1="$(ticks "$rpid")"
      n="$(echo "$r" | field rps)"
      echo "$n" >> "$work/rps.$b.$c"
      echo "$r" | field p99_us >> "$work/p99.$b.$c"
      total=$(awk -v n="$n" -v s="$secs" 'BEGIN {print n * s}')
      awk -v a="$d0" -v b="$d1" -v t="$total" 'BEGIN {printf "%.1f\n", (b - a) * 10000 / t}' >> "$work/cpud.$b.$c"
      awk -v a="$r0" -v b="$r1" -v t="$total" 'BEGIN {printf "%.1f\n", (b - a) * 10000 / t}' >> "$work/cpur.$b.$c"
    done
  done
  for b in "${builds[@]}"; do
    rps[$b.$c]="$(median < "$work/rps.$b.$c")"; p99[$b.$c]="$(median < "$work/p99.$b.$c")"
    cpu_d[$b.$c]="$(median < "$work/cpud.$b.$c")"; cpu_r[$b.$c]="$(median < "$work/cpur.$b.$c")"
  done
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
for b in "${builds[@]}"; do
  echo "build: $b (${bin[$b]})"
  echo "| connections | raw script req/s | daemon req/s | daemon/raw | daemon p99 ms | CPU per decision: daemon / Redis (us) |"
  echo "|---:|---:|---:|---:|---:|---:|"
  echo "| 1 | ${raw[$b.1]} | | | | |"
  for c in 8 64; do
    ratio=$(awk -v a="${rps[$b.$c]}" -v r="${raw[$b.$c]}" 'BEGIN {printf "%.2f", a / r}')
    cpu=""; [ "$c" = 8 ] && cpu="${cpu_d[$b.$c]} / ${cpu_r[$b.$c]}"
    echo "| $c | ${raw[$b.$c]} | ${rps[$b.$c]} | $ratio | $(awk -v p="${p99[$b.$c]}" 'BEGIN {printf "%.2f", p / 1000}') | $cpu |"
  done
  echo
done
if [ -n "${ERL_BEFORE:-}" ]; then
  rel() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
  echo "after / before: raw script req/s at 1/8/64: $(rel "${raw[after.1]}" "${raw[before.1]}") / $(rel "${raw[after.8]}" "${raw[before.8]}") / $(rel "${raw[after.64]}" "${raw[before.64]}");" \
    "daemon req/s at 8/64: $(rel "${rps[after.8]}" "${rps[before.8]}") / $(rel "${rps[after.64]}" "${rps[before.64]}");" \
    "daemon CPU per decision at 8: $(rel "${cpu_d[after.8]}" "${cpu_d[before.8]}"); Redis CPU per decision at 8: $(rel "${cpu_r[after.8]}" "${cpu_r[before.8]}")"
fi
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
grep -c 'erl ok' "$work/daemon.after.log" | xargs -I{} echo "decisions logged (this build): {}; fail-open lines: $(grep -c 'fail-open' "$work/daemon.after.log" || true)"
