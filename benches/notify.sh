#!/usr/bin/env bash
# Do failing notifications cost the request path anything? One session, one Redis, two daemons
# with the same caps: "quiet" without [notify], "dead" with a webhook that accepts connections
# and never answers (each try waits out the 5 s timeout) and a sendmail that always fails
# (/bin/false), so every event fails slowly and the queue overflows. Every sender may send 1
# message a day (a domain mailbox default), so after the first message each sender is refused
# and its first refusal is an event: 1,000 events per run. Open loop at 2,000 req/s on 64
# connections, the two daemons alternating, 3 runs each, Redis flushed before each run.
# Usage: benches/notify.sh [seconds-per-run] (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q

start_redis
hport="$(free_port)"
python3 -c "import socket, time
s = socket.socket(); s.bind(('127.0.0.1', $hport)); s.listen(4096); time.sleep(86400)" &
pids+=($!)

for who in quiet dead; do
  mkdir -p "$work/$who"
  notify=""
  [ "$who" = dead ] && notify="[notify]
admin = [\"postmaster@example.com\"]
sendmail = \"/bin/false\"
webhook = \"http://127.0.0.1:$hport/hook\""
  cat > "$work/$who/config.toml" <<TOML
[listen]
socket = "$work/$who/erl.sock"
[limits]
global = 1000000000
[[limits.domain]]
domain = "example.com"
mailbox_daily = 1
[redis]
url = "redis://127.0.0.1:$rport/0"
$notify
[log]
level = "info"
TOML
  target/release/email-ratelimit serve --config "$work/$who/config.toml" >"$work/$who/daemon.log" 2>&1 &
  pids+=($!)
  until [ -S "$work/$who/erl.sock" ]; do sleep 0.05; done
done

for i in 1 2 3; do
  for who in quiet dead; do
    redis-cli -p "$rport" flushall >/dev/null
    r="$(target/release/erl-load --socket "$work/$who/erl.sock" --connections 64 --duration "$secs" \
      --rate 2000 --senders 1000 --warmup 0 2>/dev/null | grep '^RESULT')"
    for q in p50_us p99_us p999_us dunno defer errors; do echo "$r" | field "$q" >> "$work/$who.$q"; done
  done
done
o() { median < "$work/$1.$2"; }

echo
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%FT%TZ); open loop 2,000 req/s, 64 connections, medians of 3"
echo "| daemon | p50 ms | p99 ms | p99.9 ms | accepted | deferred | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for who in quiet dead; do
  printf '| %s | %.3f | %.3f | %.3f | %s | %s | %s |\n' "$who" "$(o "$who" p50_us)e-3" "$(o "$who" p99_us)e-3" \
    "$(o "$who" p999_us)e-3" "$(o "$who" dunno)" "$(o "$who" defer)" "$(o "$who" errors)"
done
awk -v a="$(o dead p99_us)" -v b="$(o quiet p99_us)" 'BEGIN {printf "p99 dead / quiet = %.2f\n", a / b}'
echo "notification failures logged by the dead daemon: $(grep -c 'notify:' "$work/dead/daemon.log" || true)"
grep 'notify:' "$work/dead/daemon.log" | cut -c1-200 || true
