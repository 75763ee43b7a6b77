#!/usr/bin/env bash
# What the metrics cost the request path: two daemons on one Redis, the same caps, one with
# [metrics] listen (scraped every second during the runs, as Prometheus would), one without;
# erl-load closed loop at 8 connections, 4 rounds in ABBA order (off-on, on-off, ...: the
# second run of a pair was measured to pay ~10% more, so each side goes first twice); medians;
# the CPU per decision.
# Usage: benches/metrics.sh [seconds-per-run] (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q

start_redis
mport="$(free_port)"
declare -A dpid
for who in off on; do
  mkdir -p "$work/$who"
  metrics=""
  [ "$who" = on ] && metrics="[metrics]
listen = \"127.0.0.1:$mport\""
  cat > "$work/$who/config.toml" <<TOML
[listen]
socket = "$work/$who/erl.sock"
[limits]
global = 1000000000
[redis]
url = "redis://127.0.0.1:$rport/0"
$metrics
[log]
level = "info"
TOML
  target/release/email-ratelimit serve --config "$work/$who/config.toml" >"$work/$who/daemon.log" 2>&1 &
  dpid[$who]=$!
  pids+=($!)
  until [ -S "$work/$who/erl.sock" ]; do sleep 0.05; done
done
# A scraper, once a second.
( while sleep 1; do curl -s "http://127.0.0.1:$mport/metrics" >/dev/null || true; done ) &
pids+=($!)

for i in 1 2 3 4; do
  order="off on"; [ $((i % 2)) = 0 ] && order="on off"
  for who in $order; do
    d0="$(ticks "${dpid[$who]}")"
    r="$(target/release/erl-load --socket "$work/$who/erl.sock" --connections 8 --duration "$secs" --warmup 0 2>/dev/null | grep '^RESULT')"
    d1="$(ticks "${dpid[$who]}")"
    n="$(echo "$r" | field rps)"
    echo "$n" >> "$work/$who.rps"
    echo "$r" | field p99_us >> "$work/$who.p99"
    awk -v a="$d0" -v b="$d1" -v t="$(awk -v n="$n" -v s="$secs" 'BEGIN {print n * s}')" \
      'BEGIN {printf "%.1f\n", (b - a) * 10000 / t}' >> "$work/$who.cpu"
  done
done
o() { median < "$work/$1.$2"; }
echo
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%FT%TZ); closed loop, 8 connections, medians of 4 (ABBA)"
echo "| metrics | req/s | p99 ms | daemon CPU per decision (us) |"
echo "|---|---:|---:|---:|"
for who in off on; do
  printf '| %s | %s | %.3f | %s |\n' "$who" "$(o "$who" rps)" "$(o "$who" p99)e-3" "$(o "$who" cpu)"
done
awk -v a="$(o on rps)" -v b="$(o off rps)" 'BEGIN {printf "throughput on / off = %.3f\n", a / b}'
awk -v a="$(o on cpu)" -v b="$(o off cpu)" 'BEGIN {printf "CPU per decision on / off = %.3f\n", a / b}'
curl -s "http://127.0.0.1:$mport/metrics" | grep '^email_ratelimit_decisions_total'
