#!/usr/bin/env bash
# What the milter costs website mail (issue 24): messages/s through sendmail -> postdrop ->
# pickup -> cleanup -> a discard transport, on a private Postfix 3.7 under /dev/shm, with and
# without the milter. Each message is what PHP's mail() hands over: `sendmail -i -f` run as the
# web server's user (www-data; setpriv with no_new_privs and the postdrop group), about 3 KB to
# 1-3 recipients. SUBMITTERS (default 8) such processes run in a loop at once; a run is
# MESSAGES (default 2000) messages, timed from the first submission to the last "removed".
# Cases, one Postfix with a reload between them:
#   plain    pickup -> cleanup, no milter (what Postfix costs by itself)
#   checks   pickup -> its own cleanup with postfix/pickup_header_checks, no milter (the
#            marker header alone)
#   milter   the shipped setup (postfix/milter.cf.fragment): the marker header, and the milter
#            of a daemon on the shipped config (config/example.toml's [limits.local] caps, far
#            above the load), Redis on a Unix socket
#   memory   the same with store = "memory" (no Redis)
# ROUNDS rounds (default 5), the cases in an order that rotates by one each round; a ratio is
# case / plain within one round; the tables give medians. A run during which the hypervisor
# stole more than STEAL_MAX% (default 5) of the CPU is left out with its pair.
#
#   benches/pickup.sh                      MESSAGES=4000 SUBMITTERS=16 ROUNDS=7 benches/pickup.sh
#   CASES="plain milter" benches/pickup.sh
#   DAEMON_NICE=-5 benches/pickup.sh      (the daemon at another scheduling priority)
# Needs postfix, redis-server, python3, setpriv; runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
messages="${MESSAGES:-2000}"
submitters="${SUBMITTERS:-8}"
rounds="${ROUNDS:-5}"
steal_max="${STEAL_MAX:-5}"
read -ra cases <<< "${CASES:-plain checks milter memory}"
[ "${cases[0]}" = plain ] || cases=(plain "${cases[@]}")
export BENCH_TMP="${BENCH_TMP:-/dev/shm}"
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q --bins
big=1000000000
pf="$work/postfix"
REDIS_SOCKET=1 start_redis

mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
chown postfix:postfix "$pf/data"
cat > "$pf/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
biff = no
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
alias_maps =
alias_database =
default_transport = discard:benchmark
CF
{
  postfix_services
  echo "email-ratelimit-cleanup unix n - n - 0 cleanup"
} > "$pf/etc/master.cf"
cp postfix/pickup_header_checks "$pf/etc/pickup_header_checks"
postconf -c "$pf/etc" -P "email-ratelimit-cleanup/unix/header_checks=regexp:$pf/etc/pickup_header_checks"
on_cleanup() { postfix -c "$pf/etc" stop >/dev/null 2>&1; }
postfix -c "$pf/etc" check
postfix -c "$pf/etc" start >/dev/null 2>&1

# The daemons: the shipped config with every cap far above the load; one listens on the
# milter socket at a time (the case's), the other on a socket Postfix never uses.
declare -A dpid
for store in redis memory; do
  sed -e "s|^url = \"redis://127.0.0.1:6379/0\"|url = \"redis+unix://$work/redis.sock\"\nkey_prefix = \"erl-$store\"|" \
      -e '/^key_prefix = "erl"$/d' \
      -e "s|^socket = .*|socket = \"$work/policy-$store.sock\"|" \
      -e "s|^daily = 500 .*|daily = $big|" -e "s|^rates = \[\"100/1h\"\] .*|rates = [\"$big/1h\"]|" \
      -e "/^\[milter\]/,/^\[/ s|^listen = \"\".*|listen = \"$work/milter-$store.sock\"|" \
      config/example.toml > "$work/$store.toml"
  printf 'store = "%s"\ntimezone = "UTC"\n%s' "$store" "$(grep -v '^store = \|^timezone = ' "$work/$store.toml")" \
    > "$work/$store.toml.new"
  mv "$work/$store.toml.new" "$work/$store.toml"
  sed -i 's|^# socket_group = "postfix".*|socket_group = "postfix"|' "$work/$store.toml"
  target/release/email-ratelimit check-config --quiet --config "$work/$store.toml"
  nice -n "${DAEMON_NICE:-0}" target/release/email-ratelimit serve --config "$work/$store.toml" >"$work/erl-$store.log" 2>&1 &
  dpid[$store]=$!
  pids+=("${dpid[$store]}")
  until [ -S "$work/milter-$store.sock" ]; do
    kill -0 "${dpid[$store]}" 2>/dev/null || { cat "$work/erl-$store.log" >&2; exit 1; }
    sleep 0.05
  done
done

# One message as PHP's mail() writes it, about 3 KB.
{
  printf 'To: customer@example.net\nSubject: Your order 12345\nFrom: shop@site.bench.test\n'
  printf 'MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\n'
  for _ in $(seq 40); do printf 'Thank you for your order. This line is here to make the message about 3 KB.\n'; done
} > "$work/message"
chmod 644 "$work/message"

# Points pickup and non_smtpd_milters at a case, reloads, and warms it up.
setup() {
  local c="$1"
  case "$c" in
    plain) postconf -c "$pf/etc" -PX pickup/unix/cleanup_service_name 2>/dev/null || true
           postconf -c "$pf/etc" -X non_smtpd_milters email_ratelimit_milter ;;
    checks) postconf -c "$pf/etc" -P pickup/unix/cleanup_service_name=email-ratelimit-cleanup
            postconf -c "$pf/etc" -X non_smtpd_milters email_ratelimit_milter ;;
    milter | memory)
      local store=redis; [ "$c" = memory ] && store=memory
      postconf -c "$pf/etc" -P pickup/unix/cleanup_service_name=email-ratelimit-cleanup
      # The shipped milter line, pointed at this daemon's socket.
      postconf -c "$pf/etc" "$(sed -n "s|^email_ratelimit_milter = \(.*\)unix:private/email-ratelimit-milter|email_ratelimit_milter=\1unix:$work/milter-$store.sock|p" postfix/milter.cf.fragment)" \
        'non_smtpd_milters=$email_ratelimit_milter' ;;
  esac
  postfix -c "$pf/etc" reload >/dev/null 2>&1
  submit 100 4 >/dev/null
}

# The machine's busy CPU time (all CPUs), in clock ticks.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# `submit N P`: N messages from P sendmail loops; waits until all are removed from the queue;
# prints the seconds it took.
submit() {
  local n="$1" p="$2" offset t0 t1 per i loops=()
  offset="$(stat -c %s "$pf/maillog" 2>/dev/null || echo 0)"
  per=$((n / p))
  t0="$(date +%s.%N)"
  for i in $(seq "$p"); do
    (
      for j in $(seq "$per"); do
        MAIL_CONFIG="$pf/etc" setpriv --no-new-privs --reuid=www-data --regid=www-data --groups=postdrop \
          /usr/sbin/sendmail -i -f shop@site.bench.test -- "r$(((i + j) % 3))@remote.bench.test" "r$((j % 7))@remote.bench.test" \
          < "$work/message" || echo "sendmail failed" >&2
      done
    ) &
    loops+=($!)
  done
  wait_removed "$offset" $((per * p))
  t1="$(date +%s.%N)"
  wait "${loops[@]}"
  echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
}
# Counts the "removed" lines written since byte `offset`, reading each new byte once (a grep of
# the whole run's log every poll cost a noticeable share of a core).
wait_removed() {
  local at="$1" want="$2" n=0 size chunk LC_ALL=C
  while :; do
    size="$(stat -c %s "$pf/maillog")"
    if [ "$size" -gt "$at" ]; then
      # Whole lines only: up to the last newline (a sentinel keeps the command substitution
      # from dropping it).
      chunk="$(tail -c +"$((at + 1))" "$pf/maillog" | head -c "$((size - at))"; echo .)"
      chunk="${chunk%.}"
      case "$chunk" in *$'\n'*) chunk="${chunk%$'\n'*}"$'\n' ;; *) chunk="" ;; esac
      if [ -n "$chunk" ]; then
        n=$((n + $(printf '%s' "$chunk" | grep -c ': removed$' || true)))
        at=$((at + ${#chunk}))
      fi
    fi
    [ "$n" -ge "$want" ] && return
    sleep 0.05
  done
}

: > "$work/results"
for round in $(seq "$rounds"); do
  n=${#cases[@]}
  for k in $(seq 0 $((n - 1))); do
    c="${cases[$(((k + round) % n))]}"
    setup "$c"
    store=redis; [ "$c" = memory ] && store=memory
    b0="$(busy)"; st0="$(steal_ticks)"; d0="$(ticks "${dpid[$store]}")"
    secs="$(submit "$messages" "$submitters")"
    b1="$(busy)"; st1="$(steal_ticks)"; d1="$(ticks "${dpid[$store]}")"
    [ "$c" = milter ] || [ "$c" = memory ] || d1="$d0"
    rate="$(awk -v n="$messages" -v s="$secs" 'BEGIN {printf "%.1f", n / s}')"
    steal="$(steal_pct "$st0" "$st1")"
    echo "$round $c $rate $((b1 - b0)) $((d1 - d0)) $steal" >> "$work/results"
    echo "  round $round $c: $rate msg/s ($messages in $secs s), steal $steal%" >&2
  done
done
grep -h 'warning\|fatal\|panic' "$pf/maillog" | grep -v 'dict_\|file system clock\|resetting file time stamps' | head -5 >&2 || true
for store in redis memory; do
  f="$(grep -c 'fail-open' "$work/erl-$store.log" || true)"
  [ "$f" = 0 ] || echo "warning: the $store daemon failed open $f times" >&2
done
hz="$(getconf CLK_TCK)"
echo
echo "pickup path, $messages messages a run from $submitters sendmail loops, $rounds rounds, runs with more than $steal_max% steal left out"
printf '%-8s %10s %12s %14s %14s %8s\n' case msg/s "vs plain" "CPU/msg us" "daemon us" runs
for c in "${cases[@]}"; do
  awk -v c="$c" -v q="$steal_max" -v hz="$hz" -v n="$messages" '
    { rate[$1, $2] = $3; cpu[$1, $2] = $4; d[$1, $2] = $5; st[$1, $2] = $6; rounds[$1] = 1 }
    END {
      for (r in rounds) {
        if (!((r, c) in rate) || st[r, c] > q || st[r, "plain"] > q) continue
        k++; rs[k] = rate[r, c]; ratio[k] = rate[r, c] / rate[r, "plain"]
        cu[k] = cpu[r, c] * 1e6 / hz / n; du[k] = d[r, c] * 1e6 / hz / n
      }
      if (!k) { printf "%-8s %10s\n", c, "(no quiet run)"; exit }
      printf "%-8s %10.1f %12.3f %14.0f %14.0f %8d\n", c, med(rs, k), med(ratio, k), med(cu, k), med(du, k), k
    }
    function med(a, k,   i, j, t) {
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return a[int((k + 1) / 2)]
    }' "$work/results"
done
[ -z "${OUT:-}" ] || cp "$work/results" "$OUT"
