#!/usr/bin/env bash
# One benchmark run on one machine, everything measured in the same session:
#   1. a temporary redis-server; redis-benchmark calling consume.lua by SHA (the physical limit
#      of a Redis-backed decision here) at 1, 8 and 64 clients;
#   2. a temporary mariadbd with 100,000 opted-in mailboxes; the release daemon reading them;
#   3. the load tool (erl-load) against the daemon at 1, 8 and 64 connections, then at 64 again
#      while the 100,000 caps change and are re-read every second (UPDATE + SIGHUP);
# then a table: medians of 3 runs, the daemon/raw-Redis ratio, latency percentiles, the
# daemon's RSS and the 100,000-cap refresh time.
#
#   benches/run.sh [seconds-per-run]        (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
runs=3
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q

load() { target/release/erl-load "$@" 2>/dev/null | grep "^RESULT"; }

# Redis
rport="$(free_port)"
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done

# MariaDB with 100,000 caps
mport="$(free_port)"
mkdir -p "$work/run" && chown mysql:mysql "$work/run"
mariadb-install-db --no-defaults --user=mysql --datadir="$work/db" --auth-root-authentication-method=socket --skip-test-db >"$work/install.log" 2>&1
mariadbd --no-defaults --user=mysql --datadir="$work/db" --socket="$work/run/sock" --port="$mport" \
  --bind-address=127.0.0.1 --skip-log-bin </dev/null >"$work/mariadb.log" 2>&1 &
pids+=($!)
sql() { mariadb --no-defaults -u root --socket="$work/run/sock" "$@"; }
until sql -e 'select 1' >/dev/null 2>&1; do sleep 0.1; done
{
  echo "CREATE DATABASE dbispconfig; USE dbispconfig;"
  echo "CREATE TABLE mail_user (mailuser_id INT UNSIGNED PRIMARY KEY, email VARCHAR(255));"
  cat scripts/sql/schema.sql
  echo "CREATE USER 'erl'@'127.0.0.1' IDENTIFIED BY 'erl'; GRANT SELECT ON dbispconfig.* TO 'erl'@'127.0.0.1';"
} | sql
python3 - "$work/caps.sql" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("USE dbispconfig;\n")
    for start in range(0, 100000, 5000):
        rows = range(start, start + 5000)
        f.write("INSERT INTO mail_user VALUES " + ",".join(f"({i+1},'user{i}@example.com')" for i in rows) + ";\n")
        f.write("INSERT INTO er_mail_user_ratelimit VALUES " + ",".join(f"({i+1},'y',1000000000)" for i in rows) + ";\n")
    f.write("UPDATE er_global_ratelimit SET global_limit = 1000000000 WHERE server_id = 0;\n")
PY
sql < "$work/caps.sql"

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
    line="$(redis-benchmark -p "$rport" -c "$c" -n "$n" -r 10000 --csv EVALSHA "$sha" 9 \
      "erl:$day:$u" "erl:$day:@example.com" "erl:$day:global" erl:violations "erl:top:$day" \
      "erl:raise:$u" "erl:lock:$u" "erl:ips:$day:$u" "erl:refusals:$day:$u" \
      1 count 1 1000 "$(date +%s)" "$u" 203.0.113.7 "" 93600 30 0 0 mx1 93600 93600 93600 \
      1 1000000000 user 1d 3 1000000000 global 1d | tail -1)"
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
(
  i=0
  while kill -0 "$dpid" 2>/dev/null; do
    i=$((i + 1))
    sql -e "UPDATE dbispconfig.er_mail_user_ratelimit SET daily_limit = 1000000000 + $i WHERE mailuser_id = 1" || true
    kill -HUP "$dpid" 2>/dev/null || true
    sleep 1
  done
) &
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
