# Shared by the benches/*.sh scripts (sourced, not run): a temporary work directory,
# the background processes to stop by PID on exit, and small helpers. BENCH_TMP: where the work
# directory goes (default /tmp). A script that defines on_cleanup has it run first on exit.
work="$(mktemp -d "${BENCH_TMP:-/tmp}/erl-bench.XXXXXX")"
chmod 755 "$work"
pids=()
cleanup() {
  if declare -F on_cleanup >/dev/null; then on_cleanup || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# Interrupted (Ctrl-C, kill, timeout): exit, so that the EXIT trap stops everything by PID.
trap "exit 130" INT TERM

# erl-load (built by the script's `cargo build --release`), its RESULT line only.
load() { target/release/erl-load "$@" 2>/dev/null | grep '^RESULT'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }

# A temporary redis-server on a free loopback port, and on a Unix socket too: sets rport, rpid
# and redis_url (the TCP one; with REDIS_SOCKET=1 the Unix socket's).
start_redis() {
  rport="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$rport" --unixsocket "$work/redis.sock" --save '' --appendonly no \
    --dir "$work" >"$work/redis.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
  redis_url="redis://127.0.0.1:$rport/0"
  if [ -n "${REDIS_SOCKET:-}" ]; then redis_url="redis+unix://$work/redis.sock"; fi
}

# utime + stime of a process, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The v2 cap model (benches/v2.sh, profile.sh): mailbox, domain and server caps, daily and
# hourly, all far above the load; the daemon on $work/erl.sock with Redis on $rport; log level $1.
write_v2_config() {
  local big=1000000000
  cat > "$work/config.toml" <<TOML
timezone = "UTC"
[listen]
socket = "$work/erl.sock"
[limits]
global = $big
global_rates = ["$big/1h"]
[[limits.domain]]
domain = "example.com"
daily = $big
rates = ["$big/1h"]
mailbox_daily = $big
mailbox_rates = ["$big/1h"]
[redis]
url = "${redis_url:-redis://127.0.0.1:$rport/0}"
[log]
level = "$1"
TOML
  # ERL_LEARN=1: learned allowances on (every sender here is on a domain's default caps).
  if [ "${ERL_LEARN:-0}" = 1 ]; then
    printf '[learn]\nenabled = true\nknown_networks = true\nceiling = %s\n' "$big" >> "$work/config.toml"
  fi
}

# A temporary mariadbd on a free loopback port with the ISPConfig schema and 100,000 opted-in
# mailboxes (user0..user99999@example.com, far-above-load caps); the daemon reads them as
# erl:erl. Sets mport; sql() runs the mariadb client as root on its socket.
start_mariadb_caps() {
  mport="$(free_port)"
  mkdir -p "$work/run" && chown mysql:mysql "$work/run"
  mariadb-install-db --no-defaults --user=mysql --datadir="$work/db" --auth-root-authentication-method=socket \
    --skip-test-db >"$work/install.log" 2>&1
  mariadbd --no-defaults --user=mysql --datadir="$work/db" --socket="$work/run/sock" --port="$mport" \
    --bind-address=127.0.0.1 --skip-log-bin </dev/null >"$work/mariadb.log" 2>&1 &
  pids+=($!)
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
}
sql() { mariadb --no-defaults -u root --socket="$work/run/sock" "$@"; }

# Changes one database cap and sends the daemon `$1` SIGHUP every second while it runs, so the
# 100,000 caps are re-read and rebuilt each time.
refresh_storm() {
  local i=0
  while kill -0 "$1" 2>/dev/null; do
    i=$((i + 1))
    sql -e "UPDATE dbispconfig.er_mail_user_ratelimit SET daily_limit = 1000000000 + $i WHERE mailuser_id = 1" || true
    kill -HUP "$1" 2>/dev/null || true
    sleep 1
  done
}

# 100,000 mailbox caps far above the load, as config-file entries: $work/mailboxes.toml.
write_mailboxes() {
  python3 - "$work/mailboxes.toml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(100000):
        f.write(f'[[limits.mailbox]]\nemail = "user{i}@example.com"\ndaily = 1000000000\n')
PY
}

# The daemon `$1` with caps from `$2` (file, after write_mailboxes; or database, after
# start_mariadb_caps) under `$secs` seconds of load at 8 connections: prints "cpu_us
# rss_loaded rss_after rss_settled" (CPU per decision in microseconds; RSS in KiB).
footprint() {
  local bin="$1" source="$2" pid r n d0 d1 rss0 rss1 rss2
  rm -f "$work/erl.sock"
  write_v2_config info
  if [ "$source" = file ]; then
    cat "$work/mailboxes.toml" >> "$work/config.toml"
  else
    printf '[database]\nurl = "mysql://erl:erl@127.0.0.1:%s/dbispconfig"\nrefresh_secs = 3600\ncache_file = "%s/limits.json"\n' \
      "$mport" "$work" >> "$work/config.toml"
  fi
  "$bin" serve --config "$work/config.toml" >"$work/footprint.log" 2>&1 &
  pid=$!
  # "Caps loaded": the daemon binds its socket before it builds its limits (it may drop its
  # privileges after binding), so the socket alone says nothing; its serving line comes after
  # the file's caps are built.
  until grep -q "serving on" "$work/footprint.log"; do sleep 0.05; done
  if [ "$source" = database ]; then
    until grep -q "limits loaded from database" "$work/footprint.log"; do sleep 0.05; done
  fi
  rss0="$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
  load --socket "$work/erl.sock" --connections 8 --duration 1 --warmup 0 --senders 100000 >/dev/null
  d0="$(ticks "$pid")"
  r="$(load --socket "$work/erl.sock" --connections 8 --duration "$secs" --warmup 0 --senders 100000)"
  d1="$(ticks "$pid")"
  rss1="$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
  # Settled: what the allocator still holds 11 s later, idle (jemalloc returns freed pages
  # after about 10 s).
  sleep 11
  rss2="$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  n="$(echo "$r" | field rps)"
  if [ "$(echo "$r" | field errors)" != 0 ] || [ "$n" = 0 ]; then echo "unexpected replies: $r" >&2; exit 1; fi
  awk -v a="$d0" -v b="$d1" -v n="$n" -v s="$secs" -v r0="$rss0" -v r1="$rss1" -v r2="$rss2" \
    'BEGIN {printf "%.1f %d %d %d\n", (b - a) * 10000 / (n * s), r0, r1, r2}'
}

# The CPU time the hypervisor gave to others (steal) and the total, all CPUs, in clock ticks:
# "steal total". On a shared VM steal moves between nothing and half the machine within minutes.
steal_ticks() { awk '/^cpu / {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
# The share (%) of CPU time stolen between two steal_ticks readings `$1` and `$2`.
steal_pct() { echo "$1 $2" | awk '{printf "%.1f", ($4 > $2) ? ($3 - $1) * 100 / ($4 - $2) : 0}'; }

# The master.cf services a private Postfix for a benchmark needs besides its smtpd ones (no
# chroot, so that socket paths resolve as written; postlog for maillog_file).
postfix_services() {
  cat <<'CF'
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
CF
}
