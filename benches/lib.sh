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

# A temporary redis-server on a free loopback port: sets rport and rpid.
start_redis() {
  rport="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
}
