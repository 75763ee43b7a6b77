#!/usr/bin/env python3
"""The tables of benches/postfix.sh from its runs (one line a run: loop, service, sessions,
round, msgs/s, p50 and p99 in us, messages sent, CPU ticks of the machine, the policy server and
Redis, late starts, steal %, the open loop's rate): medians over the rounds of the runs with at
most --steal-max % of the CPU stolen, ratios against no hook paired within a round, and the
targets of issue 23."""
import argparse
import json
import os
import statistics

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("runs", help="benches/postfix.sh's runs: one line each")
parser.add_argument("--steal-max", type=float, default=5.0,
                    help="leave out runs with more CPU stolen by the hypervisor (percent)")
parser.add_argument("--out", help="also write the medians and ratios here, as JSON")
args = parser.parse_args()
steal_max, out, hz = args.steal_max, args.out, os.sysconf("SC_CLK_TCK")
ORDER = ["nohook", "dunno", "ping", "script", "memory", "hook", "logonly", "sentinel"]
rows = [l.split() for l in open(args.runs) if l.strip()]
modes = [m for m in ORDER if any(r[1] == m for r in rows)]
rate = max(float(r[13]) for r in rows)
R = {}
for loop, m, c, rnd, msgs, p50, p99, sent, mach, dae, red, late, steal, _rate in rows:
    R[(loop, m, int(c), int(rnd))] = dict(msgs=float(msgs), p50=int(p50) / 1000, p99=int(p99) / 1000,
        sent=int(sent), mach=int(mach), dae=int(dae), red=int(red), late=int(late), steal=float(steal))
steals = sorted(r["steal"] for r in R.values())
quiet_runs = sum(s <= steal_max for s in steals)
print(f"CPU stolen by the hypervisor during a run: median {statistics.median(steals):.1f}%, max {steals[-1]:.1f}%;"
      f" {quiet_runs} of {len(steals)} runs at most {steal_max:g}% (only those count below; n = how many)")
rounds = sorted({k[3] for k in R})
nan = float("nan")
def med(values):
    values = list(values)
    return statistics.median(values) if values else nan
def quiet(*keys):
    return all(R[k]["steal"] <= steal_max for k in keys)
def col(loop, m, c, key):
    return med(R[(loop, m, c, r)][key] for r in rounds if quiet((loop, m, c, r)))
def pairs(loop, m, c):  # the rounds where this run and its no-hook run were both quiet
    return [r for r in rounds if quiet((loop, m, c, r), (loop, "nohook", c, r))]
def ratio(loop, m, c):  # paired within each round, then the median
    return med(R[(loop, m, c, r)]["msgs"] / R[(loop, "nohook", c, r)]["msgs"] for r in pairs(loop, m, c))
def cpu(loop, m, c, key):  # microseconds of CPU per message sent
    return med(R[(loop, m, c, r)][key] * 1e6 / hz / max(R[(loop, m, c, r)]["sent"], 1)
               for r in rounds if quiet((loop, m, c, r)))
names = dict(nohook="no hook", dunno="floor: DUNNO server", ping="floor: one Redis PING",
             script="floor: one consume.lua call",
             memory="the daemon, no Redis (store = memory)",
             hook="hook, Redis socket", logonly="hook, log-only", sentinel="hook, via Sentinel")
hooked = [m for m in modes if m != "nohook"]
print()
print("| sessions | " + " | ".join(f"{names[m]} msg/s" for m in modes) + " | " +
      " | ".join(f"{names[m]} / no hook" for m in hooked) + " |")
print("|---:|" + "---:|" * (len(modes) + len(hooked)))
summary = {"closed": {}, "open": {}}
for c in (1, 8, 64):
    print(f"| {c} | " + " | ".join(f"{col('closed', m, c, 'msgs'):.0f}" for m in modes) + " | " +
          " | ".join(f"{ratio('closed', m, c):.3f} (n={len(pairs('closed', m, c))})" for m in hooked) + " |")
    summary["closed"][c] = {m: {"msgs_s": col("closed", m, c, "msgs"), "ratio": ratio("closed", m, c),
                                "p50_ms": col("closed", m, c, "p50"), "p99_ms": col("closed", m, c, "p99"),
                                "cpu_machine_us": cpu("closed", m, c, "mach"), "cpu_daemon_us": cpu("closed", m, c, "dae"),
                                "cpu_redis_us": cpu("closed", m, c, "red")} for m in modes}
print()
print("End of DATA to the 250 reply, p50 / p99 ms:")
print()
print("| sessions | " + " | ".join(names[m] for m in modes) + " |")
print("|---:|" + "---:|" * len(modes))
for c in (1, 8, 64):
    print(f"| {c} | " + " | ".join(f"{col('closed', m, c, 'p50'):.2f} / {col('closed', m, c, 'p99'):.2f}" for m in modes) + " |")
print()
print(f"Open loop, {rate:.0f} msg/s (50% of the best no-hook throughput), 64 sessions:")
print()
print("| service | p50 ms | p99 ms | p99 - no hook, ms | late starts |")
print("|---|---:|---:|---:|---:|")
for m in modes:
    d = med(R[("open", m, 64, r)]["p99"] - R[("open", "nohook", 64, r)]["p99"] for r in pairs("open", m, 64))
    late = med(R[("open", m, 64, r)]["late"] for r in rounds if quiet(("open", m, 64, r)))
    delta = "" if m == "nohook" else f"{d:+.2f} (n={len(pairs('open', m, 64))})"
    print(f"| {names[m]} | {col('open', m, 64, 'p50'):.2f} | {col('open', m, 64, 'p99'):.2f} | {delta} | {late:.0f} |")
    summary["open"][m] = {"p50_ms": col("open", m, 64, "p50"), "p99_ms": col("open", m, 64, "p99"), "p99_delta_ms": d,
                          "cpu_machine_us": cpu("open", m, 64, "mach"), "cpu_daemon_us": cpu("open", m, 64, "dae"),
                          "cpu_redis_us": cpu("open", m, 64, "red")}
print()
print("CPU per message, microseconds: the whole machine, the policy server, Redis (and Sentinel):")
print()
print("| service | 8 sessions: machine | server | Redis | open loop: machine | server | Redis |")
print("|---|---:|---:|---:|---:|---:|---:|")
for m in modes:
    o, c = summary["open"][m], summary["closed"][8][m]
    print(f"| {names[m]} | {c['cpu_machine_us']:.0f} | {c['cpu_daemon_us']:.0f} | {c['cpu_redis_us']:.0f} | "
          f"{o['cpu_machine_us']:.0f} | {o['cpu_daemon_us']:.0f} | {o['cpu_redis_us']:.0f} |")
print()
worst = {m: min(summary["closed"][c][m]["ratio"] for c in (1, 8, 64)) for m in hooked}
def verdict(ok, value):
    return "not measured (no quiet pair of runs)" if value != value else ("met" if ok else "NOT MET")
for m in [h for h in hooked if h in ("hook", "sentinel")]:
    print(f"target, {names[m]}: throughput >= 0.95 of no hook at 1, 8 and 64 sessions: worst {worst[m]:.3f}: "
          f"{verdict(worst[m] >= 0.95, worst[m])}")
    d = summary["open"][m]["p99_delta_ms"]
    print(f"target, {names[m]}: open-loop p99 at most 1 ms above no hook: {d:+.2f} ms: {verdict(d <= 1, d)}")
summary.update(rate=rate, worst_ratio=worst, rounds=len(rounds), steal_median=statistics.median(steals))
if out:
    with open(out, "w") as f:
        json.dump(summary, f, indent=1)
