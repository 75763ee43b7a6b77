# Shared by benches/run.sh and benches/v2.sh (sourced, not run): a temporary work directory,
# the background processes to stop by PID on exit, and small helpers.
work="$(mktemp -d /tmp/erl-bench.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

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
}
