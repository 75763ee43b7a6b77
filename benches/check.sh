#!/usr/bin/env bash
# The regression guard (issue 23): measures four figures in one run and compares them with the
# ones committed in benches/baseline.json. Run it by hand, on a quiet machine, before and after
# a change that could cost speed or memory; it is not part of .ci/run (shared CI machines are too
# noisy for it to mean anything there).
#
#   benches/check.sh            measure, compare, exit 1 when a figure is worse than its tolerance
#   benches/check.sh --record   measure and write benches/baseline.json (a new machine, or an
#                               accepted change), keeping the tolerances
#
# The figures (medians of ROUNDS rounds, default 5; every ratio within one round, the two sides
# run back to back, so the machine's speed of the moment cancels out; a round during which the
# hypervisor stole more than STEAL_MAX% (5) of the CPU is run again; exit 2 when the machine is
# too busy to tell):
#   cpu_vs_dunno      the daemon's CPU per decision (benches/lib.sh's v2 cap model, info
#                     logging to a file, 8 connections, closed loop) / the CPU per request of
#                     erl-load's DUNNO-only server under the same load: what our own code costs,
#                     in units of the cheapest possible policy server on this machine today;
#   daemon_vs_script  the daemon's requests/s at 64 connections / those of erl-load's server
#                     making the same consume.lua call per request and nothing else;
#   rss_settled_mib   the daemon's RSS with 100,000 mailbox caps from the config file, 11 s after
#                     a load (memory does not depend on the machine's speed);
#   postfix_ratio     messages/s through a real Postfix with the hook / without, at 8 sessions
#                     (benches/postfix.sh with FLOORS=0 SENTINEL=0, 5 rounds of 5 s runs).
# Also printed, never checked: the absolute CPU per decision (it moves with the machine).
# SECS=n: seconds per load run (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
record=0
case "${1:-}" in
  --record) record=1 ;;
  "") ;;
  *) echo "usage: benches/check.sh [--record]" >&2; exit 2 ;;
esac
secs="${SECS:-3}"
rounds="${ROUNDS:-5}"
steal_max="${STEAL_MAX:-5}"
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q --bins

REDIS_SOCKET=1 start_redis
write_v2_config info
target/release/email-ratelimit serve --config "$work/config.toml" >"$work/daemon.log" 2>&1 &
dpid=$!
pids+=("$dpid")
target/release/erl-load --serve-dunno "$work/dunno.sock" 2>/dev/null &
pids+=($!)
declare -A spid=([daemon]=$dpid [dunno]=$!)
target/release/erl-load --serve-dunno "$work/script.sock" --ping-redis "$redis_url" --eval-consume 2>/dev/null &
pids+=($!)
spid[script]=$!
until [ -S "$work/erl.sock" ] && [ -S "$work/dunno.sock" ] && [ -S "$work/script.sock" ]; do sleep 0.05; done
declare -A sock=([daemon]="$work/erl.sock" [dunno]="$work/dunno.sock" [script]="$work/script.sock")

# CPU per request of `$1` at 8 connections, and its requests/s.
cpu_run() {
  local who="$1" t0 t1 r n
  load --socket "${sock[$who]}" --connections 8 --duration 1 --warmup 0 >/dev/null
  t0="$(ticks "${spid[$who]}")"
  r="$(load --socket "${sock[$who]}" --connections 8 --duration "$secs" --warmup 0)"
  t1="$(ticks "${spid[$who]}")"
  n="$(echo "$r" | field rps)"
  [ "$(echo "$r" | field errors)" = 0 ] && [ "$n" != 0 ] || { echo "unexpected replies ($who): $r" >&2; exit 1; }
  awk -v a="$t0" -v b="$t1" -v n="$n" -v s="$secs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f\n", (b - a) * 1e6 / hz / (n * s)}'
}
# A round during which the hypervisor stole more than STEAL_MAX% of the CPU is measured again
# (up to 3 x ROUNDS rounds in all): the figures are ratios, but steal that comes and goes
# within a round skews them.
quiet=0 tried=0
while [ "$quiet" -lt "$rounds" ] && [ "$tried" -lt $((3 * rounds)) ]; do
  tried=$((tried + 1))
  st0="$(steal_ticks)"
  d="$(cpu_run daemon)"; u="$(cpu_run dunno)"
  a="$(load --socket "${sock[daemon]}" --connections 64 --duration "$secs" | field rps)"
  b="$(load --socket "${sock[script]}" --connections 64 --duration "$secs" | field rps)"
  stolen="$(steal_pct "$st0" "$(steal_ticks)")"
  echo "round $tried: steal $stolen%" >&2
  echo "$stolen" >> "$work/steal"
  awk -v s="$stolen" -v m="$steal_max" 'BEGIN {exit !(s > m)}' && continue
  quiet=$((quiet + 1))
  echo "$d" >> "$work/cpu.daemon"
  awk -v d="$d" -v u="$u" 'BEGIN {printf "%.3f\n", d / u}' >> "$work/cpu_vs_dunno"
  awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f\n", a / b}' >> "$work/daemon_vs_script"
done
if [ "$quiet" -lt 3 ]; then
  echo "the machine is not quiet: $quiet of $tried rounds had at most $steal_max% of the CPU stolen; try later" >&2
  exit 2
fi
kill "$dpid"
wait "$dpid" 2>/dev/null || true

echo "memory with 100,000 caps..." >&2
write_mailboxes
rss="$(footprint target/release/email-ratelimit file | cut -d' ' -f4)"

echo "the Postfix ratio (benches/postfix.sh)..." >&2
FLOORS=0 SENTINEL=0 ROUNDS=5 STEAL_MAX="$steal_max" OUT="$work/postfix.json" benches/postfix.sh 5 \
  >"$work/postfix.out" 2>&1 || { cat "$work/postfix.out" >&2; exit 1; }

python3 - "$record" "$(git rev-parse --short HEAD)" "$(nproc) cores, $(uname -r)" \
  "$(median < "$work/cpu.daemon")" "$(median < "$work/cpu_vs_dunno")" "$(median < "$work/daemon_vs_script")" \
  "$rss" "$work/postfix.json" "$(median < "$work/steal")" <<'PY'
import datetime, json, sys
record, commit, machine = sys.argv[1] == "1", sys.argv[2], sys.argv[3]
cpu, cpu_vs_dunno, daemon_vs_script, rss_kib, postfix, steal = sys.argv[4:10]
now = {
    "cpu_vs_dunno": float(cpu_vs_dunno),
    "daemon_vs_script": float(daemon_vs_script),
    "rss_settled_mib": int(rss_kib) / 1024,
    "postfix_ratio": json.load(open(postfix))["closed"]["8"]["hook"]["ratio"],
}
if now["postfix_ratio"] != now["postfix_ratio"]:  # NaN: no quiet pair of runs
    sys.exit("the machine is not quiet: benches/postfix.sh found no pair of runs with little steal; try later")
# Which way is worse, and the default tolerances (relative); see BENCHMARKS.md "Regression guard".
rules = {
    "cpu_vs_dunno": ("higher", 0.20),
    "daemon_vs_script": ("lower", 0.15),
    "rss_settled_mib": ("higher", 0.10),
    "postfix_ratio": ("lower", 0.05),
}
path = "benches/baseline.json"
try:
    base = json.load(open(path))
except FileNotFoundError:
    base = {"figures": {}}
postfix_steal = json.load(open(postfix))["steal_median"]
print(f"CPU per decision (not checked: it moves with the machine): {float(cpu):.1f} us; CPU stolen by the"
      f" hypervisor: median {float(steal):.1f}% a round here, {postfix_steal:.1f}% a run in postfix.sh")
print()
print("| figure | baseline | now | change | tolerance | |")
print("|---|---:|---:|---:|---:|---|")
failed = []
for name, value in now.items():
    worse, default_tol = rules[name]
    b = base["figures"].get(name)
    tol = b["tolerance"] if b else default_tol
    if b is None:
        print(f"| {name} | - | {value:.3f} | | {tol:.0%} | no baseline |")
        continue
    change = value / b["value"] - 1
    bad = change > tol if worse == "higher" else change < -tol
    if bad:
        failed.append(name)
    print(f"| {name} | {b['value']:.3f} | {value:.3f} | {change:+.1%} | {tol:.0%} ({worse} is worse) | {'REGRESSION' if bad else 'ok'} |")
if record:
    figures = {n: {"value": round(v, 3), "worse": rules[n][0],
                   "tolerance": base["figures"].get(n, {}).get("tolerance", rules[n][1])} for n, v in now.items()}
    json.dump({"recorded": {"date": datetime.date.today().isoformat(), "commit": commit, "machine": machine,
                            "cpu_per_decision_us": round(float(cpu), 1),
                            "steal_percent": {"rounds": float(steal), "postfix_runs": postfix_steal}},
               "figures": figures}, open(path, "w"), indent=2)
    open(path, "a").write("\n")
    print(f"\nwrote {path}")
elif failed:
    print(f"\nregression: {', '.join(failed)}")
    sys.exit(1)
PY
