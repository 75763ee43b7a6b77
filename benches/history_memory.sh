#!/usr/bin/env bash
# Redis memory of learned allowances' history (DESIGN v3 target: under 200 MB for 100,000
# senders over 28 days), and what the daemon folds and computes from it: N senders
# (default 100,000) each with `days` (28) daily totals, 2 excluded-day marks and NETWORKS
# (default 3) known networks ("n:<network>" = "FIRST LAST") in erl:hist:<email>, as the daemon
# writes them; used_memory before and after; then the release daemon on that Redis with [learn]
# on (known_networks on when NETWORKS > 0) and N senders capped by a domain's default: its RSS
# and the time it took to compute the allowances (LEARN=false: the same daemon, learning off).
#   benches/history_memory.sh [senders] [days]
set -euo pipefail
cd "$(dirname "$0")/.."
senders="${1:-100000}"
days="${2:-28}"
# shellcheck source=benches/lib.sh
. benches/lib.sh
cargo build --release --locked -q
start_redis
before="$(redis-cli -p "$rport" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')"
networks="${NETWORKS:-3}"
python3 - "$senders" "$days" "$networks" > "$work/hist.resp" <<'PY'
import sys, datetime as dt, random
n, days, networks = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1)
today = dt.date.today()
def resp(*args):
    out = [f"*{len(args)}\r\n"]
    for a in args:
        a = str(a)
        out.append(f"${len(a.encode())}\r\n{a}\r\n")
    return "".join(out)
w = sys.stdout.write
for i in range(n):
    key = f"erl:hist:user{i}@example.com"
    fields = []
    for back in range(1, days + 1):
        fields += [(today - dt.timedelta(days=back)).isoformat(), rng.randint(1, 400)]
    for back in rng.sample(range(1, days + 1), 2):
        fields += [f"x:{(today - dt.timedelta(days=back)).isoformat()}", 1]
    for _ in range(networks):
        first = (today - dt.timedelta(days=rng.randint(2, days))).isoformat()
        last = (today - dt.timedelta(days=1)).isoformat()
        fields += [f"n:{rng.randint(1, 223)}.{rng.randint(0, 255)}.0.0/16", f"{first} {last}"]
    w(resp("HSET", key, *fields))
    w(resp("EXPIRE", key, (days + 2) * 86400))
PY
redis-cli -p "$rport" --pipe < "$work/hist.resp" >/dev/null
after="$(redis-cli -p "$rport" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')"
keys="$(redis-cli -p "$rport" dbsize)"
echo "history: $keys keys, $(( (after - before) / 1024 / 1024 )) MiB of Redis memory ($(( (after - before) / keys )) bytes a sender)"
cat > "$work/config.toml" <<TOML
[listen]
socket = "$work/erl.sock"
[[limits.domain]]
domain = "example.com"
mailbox_daily = 50
mailbox_rates = ["20/1h"]
[learn]
enabled = ${LEARN:-true}
days = $days
known_networks = $([ "$networks" -gt 0 ] && echo true || echo false)
ipv4_prefix = 16
[redis]
url = "redis://127.0.0.1:$rport/0"
TOML
target/release/email-ratelimit serve --config "$work/config.toml" > "$work/daemon.log" 2>&1 &
dpid=$!
pids+=("$dpid")
if [ "${LEARN:-true}" = true ]; then
  until grep -q "learned allowances:" "$work/daemon.log"; do sleep 0.2; done
  grep -o "learned allowances: .*" "$work/daemon.log"
fi
sleep "${SETTLE:-15}"   # jemalloc returns freed pages within ~10 s
if [ -n "${SMAPS:-}" ]; then
  awk '/^[0-9a-f]+-[0-9a-f]+ / {m=$0} /^Rss:/ && $2 > 500 {print $2" kB", m}' "/proc/$dpid/smaps" | sort -rn | head -8
fi
echo "daemon RSS after computing: $(awk '/VmRSS/ {print $2, $3}' "/proc/$dpid/status"), peak $(awk '/VmHWM/ {print $2, $3}' "/proc/$dpid/status")"
