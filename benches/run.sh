#!/usr/bin/env bash
# One benchmark run on one machine, everything measured in the same session:
#   1. a temporary redis-server; redis-benchmark calling consume.lua by SHA (the physical limit
#      of a Redis-backed decision here) at 1, 8 and 64 clients;
#   2. a temporary mariadbd with 100,000 opted-in mailboxes; the release daemon reading them;
#   3. the load tool (erl-load) against the daemon at 1, 8 and 64 connections, then at 64 again
#      while the 100,000 caps change and are re-read every second (UPDATE + SIGHUP);
#   4. CPU and memory with every v2 feature on (benches/lib.sh's cap model: mailbox, domain and
#      server caps, daily and hourly; client addresses tracked), info logging to a file, and
#      100,000 mailbox caps from each source: the config file, then MariaDB. Per source: the
#      daemon's CPU per decision (utime+stime / decisions) at 8 connections, its RSS once the
#      caps are loaded, after the run and 11 s later, idle. With ERL_BEFORE=<an older build of the daemon>, the same
#      runs alternate between that build and this one, for a before/after table from one run;
# then tables: medians of 3 runs, the daemon/raw-Redis ratio, latency percentiles, the daemon's
# RSS and the 100,000-cap refresh time, CPU per decision and RSS per cap source.
#
#   benches/run.sh [seconds-per-run]        (default 5)
#   ERL_BEFORE=/path/to/old/email-ratelimit benches/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
runs=3
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q

# Redis
rport="$(free_port)"
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done

# MariaDB with 100,000 caps
start_mariadb_caps

# raw Redis: the same script, same keys shape, by SHA
sha="$(redis-cli -p "$rport" SCRIPT LOAD "$(cat src/store/consume.lua)")"
day="$(date +%F)"
declare -A raw_rps raw_p50 raw_p99
for c in 1 8 64; do
  n=$(( c == 1 ? 40000 : (c == 8 ? 150000 : 300000) ))
  rps=(); p50=(); p99=()
  for _ in $(seq $runs); do
    # The daemon's keys and arguments for a mailbox with a daily cap (consume.lua's header):
    # the mailbox's, its domain's and the server's daily counters; two caps.
    u="user__rand_int__@example.com"
    line="$(redis-benchmark -p "$rport" -c "$c" -n "$n" -r 10000 --csv EVALSHA "$sha" 13 \
      "erl:$day:$u" "erl:$day:@example.com" "erl:$day:global" erl:violations "erl:top:$day" \
      "erl:raise:$u" "erl:lock:$u" "erl:ips:$day:$u" "erl:refusals:$day:$u" "erl:fp:$day:$u" erl:locks:auto \
      "erl:lock:@example.com" "erl:hist:$u" \
      1 count 1 1000 "$(date +%s)" "$u" 203.0.113.7 "" 93600 30 0 0 mx1 "" 0123456789abcdef 50000 0 691200 0 "" 0 "" \
      93600 1 93600 1 93600 1 1 1000000000 user 1d rcpt 3 1000000000 global 1d rcpt | tail -1)"
    rps+=("$(echo "$line" | cut -d, -f2 | tr -d '"')")
    p50+=("$(echo "$line" | cut -d, -f5 | tr -d '"')")
    p99+=("$(echo "$line" | cut -d, -f7 | tr -d '"')")
  done
  raw_rps[$c]="$(printf '%s\n' "${rps[@]}" | median)"
  raw_p50[$c]="$(printf '%s\n' "${p50[@]}" | median)"
  raw_p99[$c]="$(printf '%s\n' "${p99[@]}" | median)"
done
redis-cli -p "$rport" FLUSHALL >/dev/null

# the daemon
cat > "$work/config.toml" <<TOML
[listen]
socket = "$work/erl.sock"
[redis]
url = "redis://127.0.0.1:$rport/0"
[database]
url = "mysql://erl:erl@127.0.0.1:$mport/dbispconfig"
refresh_secs = 3600
[log]
level = "info,email_ratelimit::limits=debug"
TOML
target/release/email-ratelimit serve --config "$work/config.toml" >"$work/daemon.log" 2>&1 &
dpid=$!
pids+=($dpid)
until grep -q "limits loaded from database" "$work/daemon.log" 2>/dev/null; do sleep 0.1; done
grep "limits loaded from database" "$work/daemon.log" >&2
rss_loaded="$(awk '/VmRSS/ {print $2}' /proc/$dpid/status)"

declare -A d_rps d_p50 d_p99 d_p999
for c in 1 8 64; do
  rps=(); p50=(); p99=(); p999=()
  for _ in $(seq $runs); do
    r="$(load --socket "$work/erl.sock" --connections "$c" --duration "$secs" --senders 100000)"
    rps+=("$(echo "$r" | field rps)"); p50+=("$(echo "$r" | field p50_us)")
    p99+=("$(echo "$r" | field p99_us)"); p999+=("$(echo "$r" | field p999_us)")
    if [ "$(echo "$r" | field dunno)" = 0 ] || [ "$(echo "$r" | field errors)" != 0 ]; then
      echo "unexpected replies: $r" >&2; exit 1
    fi
  done
  d_rps[$c]="$(printf '%s\n' "${rps[@]}" | median)"
  d_p50[$c]="$(printf '%s\n' "${p50[@]}" | median)"
  d_p99[$c]="$(printf '%s\n' "${p99[@]}" | median)"
  d_p999[$c]="$(printf '%s\n' "${p999[@]}" | median)"
done
rss_steady="$(awk '/VmRSS/ {print $2}' /proc/$dpid/status)"

# 64 connections while the caps change and are rebuilt every second
refresh_storm "$dpid" &
refresher=$!
pids+=($refresher)
rps=(); p99=(); p999=()
for _ in $(seq $runs); do
  r="$(load --socket "$work/erl.sock" --connections 64 --duration "$secs" --senders 100000)"
  rps+=("$(echo "$r" | field rps)"); p99+=("$(echo "$r" | field p99_us)"); p999+=("$(echo "$r" | field p999_us)")
done
kill "$refresher" 2>/dev/null || true
r_rps="$(printf '%s\n' "${rps[@]}" | median)"
r_p99="$(printf '%s\n' "${p99[@]}" | median)"
r_p999="$(printf '%s\n' "${p999[@]}" | median)"
rss_peak="$(awk '/VmHWM/ {print $2}' /proc/$dpid/status)"
sleep 0.5
refreshes="$(grep -c 'limits refreshed from database' "$work/daemon.log" || true)"
refresh_ms="$(grep -o 'limits refreshed from database.* in [0-9]* ms' "$work/daemon.log" | grep -o '[0-9]* ms$' | tr -d ' ms' | median)"
refresh_max="$(grep -o 'limits refreshed from database.* in [0-9]* ms' "$work/daemon.log" | grep -o '[0-9]* ms$' | tr -d ' ms' | sort -n | tail -1)"

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); redis $(redis-server --version | grep -o 'v=[0-9.]*'); $(date -u +%FT%TZ)"
echo "medians of $runs runs of ${secs}s (daemon) / fixed request counts (redis-benchmark); 100,000 caps loaded from MariaDB"
echo
printf '| connections | raw Redis req/s | raw p50 / p99 ms | daemon req/s | daemon/raw | daemon p50 / p99 / p99.9 ms |\n'
printf '|---:|---:|---:|---:|---:|---:|\n'
for c in 1 8 64; do
  ratio="$(awk -v d="${d_rps[$c]}" -v r="${raw_rps[$c]}" 'BEGIN {printf "%.2f", d / r}')"
  printf '| %s | %.0f | %s / %s | %s | %s | %.2f / %.2f / %.2f |\n' "$c" "${raw_rps[$c]}" "${raw_p50[$c]}" "${raw_p99[$c]}" \
    "${d_rps[$c]}" "$ratio" "$(awk -v v="${d_p50[$c]}" 'BEGIN{print v/1000}')" \
    "$(awk -v v="${d_p99[$c]}" 'BEGIN{print v/1000}')" "$(awk -v v="${d_p999[$c]}" 'BEGIN{print v/1000}')"
done
printf '| 64, caps rebuilt every second | | | %s | | - / %.2f / %.2f |\n' "$r_rps" \
  "$(awk -v v="$r_p99" 'BEGIN{print v/1000}')" "$(awk -v v="$r_p999" 'BEGIN{print v/1000}')"
echo
echo "daemon RSS with 100,000 caps: $((rss_loaded / 1024)) MiB after loading, $((rss_steady / 1024)) MiB after the steady runs, peak (VmHWM) $((rss_peak / 1024)) MiB"
echo "100,000-cap rebuilds from MariaDB: $refreshes, median ${refresh_ms} ms, max ${refresh_max} ms (read, normalize, sort, swap; off the request path)"

# 4. CPU per decision and RSS per cap source (and per build, with ERL_BEFORE)
kill "$dpid"
wait "$dpid" 2>/dev/null || true
redis-cli -p "$rport" FLUSHALL >/dev/null
write_mailboxes
builds=(after)
declare -A bin=([after]=target/release/email-ratelimit)
if [ -n "${ERL_BEFORE:-}" ]; then
  builds=(before after)
  bin[before]="$ERL_BEFORE"
fi
declare -A fp_cpu fp_rss0 fp_rss1 fp_rss2
for source in file database; do
  for b in "${builds[@]}"; do : >"$work/fp.$source.$b"; done
  for _ in $(seq $runs); do
    for b in "${builds[@]}"; do footprint "${bin[$b]}" "$source" >>"$work/fp.$source.$b"; done
  done
  for b in "${builds[@]}"; do
    fp_cpu[$source.$b]="$(cut -d' ' -f1 "$work/fp.$source.$b" | median)"
    fp_rss0[$source.$b]="$(cut -d' ' -f2 "$work/fp.$source.$b" | median)"
    fp_rss1[$source.$b]="$(cut -d' ' -f3 "$work/fp.$source.$b" | median)"
    fp_rss2[$source.$b]="$(cut -d' ' -f4 "$work/fp.$source.$b" | median)"
  done
done
echo
echo "CPU and memory, every v2 feature on, info logging to a file, 100,000 mailbox caps; medians of $runs runs${ERL_BEFORE:+, the builds alternating (before: $ERL_BEFORE)}"
echo
printf '| build | caps from | CPU per decision, 8 connections | RSS: caps loaded | after the run | 11 s later, idle |\n'
printf '|---|---|---:|---:|---:|---:|\n'
for source in file database; do
  for b in "${builds[@]}"; do
    printf '| %s | %s | %s us | %.1f MiB | %.1f MiB | %.1f MiB |\n' "$b" "$source" "${fp_cpu[$source.$b]}" \
      "$(awk -v k="${fp_rss0[$source.$b]}" 'BEGIN {print k / 1024}')" "$(awk -v k="${fp_rss1[$source.$b]}" 'BEGIN {print k / 1024}')" \
      "$(awk -v k="${fp_rss2[$source.$b]}" 'BEGIN {print k / 1024}')"
  done
done
