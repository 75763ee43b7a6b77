#!/usr/bin/env python3
"""Simulated mail traffic for `email-ratelimit replay`, and what a config does with it.

  benches/traffic.py generate --seed 1 --out DIR [--days 28] [--senders 2000]
  benches/traffic.py report --config CONFIG.toml --in DIR [--trial] [--bin target/release/email-ratelimit]

`generate` writes DIR/requests.jsonl (replay input: END-OF-MESSAGE requests in time order) and
DIR/truth.json (who is who, and the attacks). The first `--days` days are history; the day after
them is the attack day. The legitimate population:

  office    62%  workdays 8-18 h, a median of 6 messages (some users 30+), mostly 1-3
                 recipients, 1% team mails of 11-40; from its office's NAT address (30 offices),
                 sometimes from home
  roaming   15%  phones: a new carrier address every 1-3 hours (3-8 a day, now and then 12)
  webmail   10%  everything from 127.0.0.1
  light     12%  a message every few days
  bulk      10 senders: weekly newsletters (300-1500 recipients in 50-recipient Bcc messages
                 within an hour) and daily billing runs (50-300 one-recipient messages)

with a weekly rhythm (weekends: a tenth of the office mail) and 0.5% growth a week. On the
attack day, 10 accounts with a history are stolen and driven by botnets of 20 to 500 addresses
sending 1 to 50 msg/s with 1 to 50 recipients from a random time of day; one more is stolen by a
slow attacker (a new address per message, one recipient, a message every 2 minutes); and one
customer sends a bought list from a single address (a message of 20 recipients every 10 s).

`report` replays the requests under the config as configured (`--trial`: log-only through the
history days and enforced from the attack day on, as `install.sh enforce --at-midnight` after a
trial; what `config/example.toml` is measured with) and prints, as one Markdown row
and as JSON: the share of legitimate senders deferred or rejected at least once on the attack
day, spam recipients accepted per attacked account (max and each), legitimate senders locked
(any day), and the time from each attack's first request to the first event the admin is told
about (its first refusal, suspect or lock). Same seed, same traffic.
"""

import argparse
import datetime as dt
import json
import math
import os
import random
import subprocess
import sys
import time

DAY = 86400
START = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)  # a Monday


def lognormal_int(rng, median, sigma, lo, hi):
    return max(lo, min(hi, int(round(median * math.exp(rng.gauss(0, sigma))))))


def office_rcpt(rng):
    r = rng.random()
    if r < 0.65:
        return 1
    if r < 0.92:
        return rng.randint(2, 3)
    if r < 0.99:
        return rng.randint(4, 10)
    return rng.randint(11, 40)


class Sender:
    def __init__(self, rng, i, kind, offices):
        self.email = f"u{i}@d{i % 50}.example"
        self.kind = kind
        self.median = {
            "office": lognormal_int(rng, 6, 0.7, 1, 60),
            "roaming": lognormal_int(rng, 5, 0.7, 1, 40),
            "webmail": lognormal_int(rng, 6, 0.7, 1, 40),
            "light": 1,
        }.get(kind, 0)
        self.office = rng.choice(offices)
        self.home = f"198.51.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        self.carrier = rng.choice(["100.64", "100.65", "100.80", "100.96", "100.110"])
        self.bulk = rng.choice(["newsletter", "billing"]) if kind == "bulk" else None
        self.bulk_day = rng.randint(0, 4)
        self.server_ip = f"203.0.113.{rng.randint(1, 254)}"


def phone_ips(rng, s, t0, t1):
    """A phone's addresses over [t0, t1): a new one every 1-3 hours."""
    out = []
    t = t0
    while t < t1:
        out.append((t, f"{s.carrier}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"))
        t += rng.uniform(3600, 3 * 3600)
        if rng.random() < 0.05:  # a bad day: addresses change often
            t -= 2500
    return out


def day_events(rng, s, day, base):
    """(ts, request) of one legitimate sender on day `day` (0-based) starting at unix `base`."""
    weekday = (START + dt.timedelta(days=day)).weekday()
    weekend = weekday >= 5
    growth = 1 + 0.005 * day / 7
    ev = []
    if s.kind == "bulk":
        if s.bulk == "newsletter" and weekday == s.bulk_day:
            total = rng.randint(300, 1500)
            t = base + rng.uniform(9, 15) * 3600
            while total > 0:
                n = min(50, total)
                total -= n
                ev.append((t, n, s.server_ip))
                t += rng.uniform(5, 60)
        elif s.bulk == "billing" and not weekend:
            t = base + rng.uniform(5, 7) * 3600
            for _ in range(rng.randint(50, 300)):
                ev.append((t, 1, s.server_ip))
                t += rng.uniform(1, 20)
        return ev
    if s.kind == "light":
        if rng.random() < 0.3:
            ev.append((base + rng.uniform(7, 22) * 3600, rng.randint(1, 3), s.home))
        return ev
    activity = {"office": 0.1 if weekend else 1.0, "roaming": 0.4 if weekend else 1.0,
                "webmail": 0.5 if weekend else 1.0}[s.kind]
    if rng.random() > min(1.0, activity * 1.2):
        return ev
    n = lognormal_int(rng, s.median * growth * activity, 0.6, 0, 400)
    if n == 0:
        return ev
    if s.kind == "office":
        times = sorted(base + rng.uniform(8, 18) * 3600 for _ in range(n))
        for t in times:
            ip = s.office if rng.random() < 0.9 else s.home
            ev.append((t, office_rcpt(rng), ip))
    elif s.kind == "roaming":
        t0, t1 = base + 7 * 3600, base + 23 * 3600
        ips = phone_ips(rng, s, t0, t1)
        times = sorted(rng.uniform(t0, t1) for _ in range(n))
        k = 0
        for t in times:
            while k + 1 < len(ips) and ips[k + 1][0] <= t:
                k += 1
            ev.append((t, office_rcpt(rng) if rng.random() < 0.5 else 1, ips[k][1]))
    else:  # webmail
        for t in sorted(base + rng.uniform(7, 23) * 3600 for _ in range(n)):
            ev.append((t, office_rcpt(rng), "127.0.0.1"))
    return ev


def botnet(rng, size):
    return [f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            for _ in range(size)]


def attacks(rng, senders, base):
    """The attack day's attacks: (truth, events)."""
    candidates = [s for s in senders if s.kind in ("office", "roaming", "webmail")]
    stolen = rng.sample(candidates, 12)
    out, truth = [], []
    sizes = [20, 30, 50, 75, 100, 150, 200, 300, 400, 500]
    for s, size in zip(stolen[:10], sizes):
        rate = math.exp(rng.uniform(math.log(1), math.log(50)))
        rcpt = rng.randint(1, 50)
        start = base + rng.uniform(0, 20) * 3600
        ips = botnet(rng, size)
        t = start
        ev = []
        for _ in range(2000):
            if t >= base + DAY:
                break
            ev.append((t, rcpt if rng.random() < 0.7 else rng.randint(1, 50), rng.choice(ips)))
            t += rng.expovariate(rate)
        truth.append({"user": s.email, "attack": f"botnet-{size}", "start": start,
                      "rate": round(rate, 1), "rcpt": rcpt})
        out += [(e, s.email, True) for e in ev]
    slow = stolen[10]
    start = base + rng.uniform(0, 12) * 3600
    ev = [(t, 1, f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}")
          for t in (start + 120 * k for k in range(500)) if t < base + DAY]
    truth.append({"user": slow.email, "attack": "slow", "start": start})
    out += [(e, slow.email, True) for e in ev]
    single = stolen[11]
    start = base + rng.uniform(0, 16) * 3600
    ip = f"192.0.2.{rng.randint(1, 254)}"
    ev = [(t, 20, ip) for t in (start + 10 * k for k in range(2000)) if t < base + DAY]
    truth.append({"user": single.email, "attack": "single-address", "start": start})
    out += [(e, single.email, True) for e in ev]
    return truth, out


def generate(args):
    rng = random.Random(args.seed)
    offices = [f"192.0.2.{i}" for i in range(1, 31)]
    kinds = []
    n = args.senders
    for i in range(n):
        r = i / n
        kinds.append("office" if r < 0.62 else "roaming" if r < 0.77 else "webmail" if r < 0.87 else "light")
    for i in rng.sample(range(n), 10):
        kinds[i] = "bulk"
    senders = [Sender(rng, i, k, offices) for i, k in enumerate(kinds)]
    os.makedirs(args.out, exist_ok=True)
    base0 = int(START.timestamp())
    lines = 0
    with open(os.path.join(args.out, "requests.jsonl"), "w") as f:
        for day in range(args.days + 1):
            base = base0 + day * DAY
            events = []
            for s in senders:
                events += [(e, s.email, False) for e in day_events(rng, s, day, base)]
            if day == args.days:
                truth, attack = attacks(rng, senders, base)
                events += attack
            events.sort(key=lambda e: e[0][0])
            for (t, rcpt, ip), user, _spam in events:
                lines += 1
                f.write(json.dumps({"ts": round(t, 3), "sasl_username": user, "sender": user,
                                    "client_address": ip, "recipient_count": rcpt,
                                    "instance": f"{lines:x}", "size": 2000 + lines}) + "\n")
    with open(os.path.join(args.out, "truth.json"), "w") as f:
        json.dump({"seed": args.seed, "days": args.days, "attack_day": base0 + args.days * DAY,
                   "kinds": {s.email: s.kind for s in senders}, "attacks": truth}, f)
    print(f"{lines} requests, {n} senders, {args.days} days + the attack day -> {args.out}", file=sys.stderr)


def report(args):
    truth = json.load(open(os.path.join(args.inp, "truth.json")))
    requests = os.path.join(args.inp, "requests.jsonl")
    decisions = os.path.join(args.inp, "decisions.jsonl")
    config = args.config
    if args.trial:
        # The config as installed (log-only), enforced from the attack day on.
        day = dt.datetime.fromtimestamp(truth["attack_day"], dt.timezone.utc).date()
        lines = [l for l in open(args.config).read().splitlines()
                 if not l.startswith(("mode =", "enforce_from =", "timezone ="))]
        config = os.path.join(args.inp, "config.trial.toml")
        with open(config, "w") as f:
            f.write(f'mode = "log-only"\nenforce_from = "{day}"\ntimezone = "UTC"\n' + "\n".join(lines) + "\n")
    started = time.time()
    # As configured: a config may run log-only through the history and enforce from the attack
    # day on (`enforce_from`), as `install.sh enforce --at-midnight` does after a trial.
    out = subprocess.run([args.bin, "replay", "--json", "--mode", "as-configured", "--config", config,
                          "--decisions", decisions, requests], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"replay failed: {out.stderr}")
    took = time.time() - started
    summary = json.loads(out.stdout)
    attack_day = truth["attack_day"]
    attacked = {a["user"]: a for a in truth["attacks"]}
    legit_active, legit_refused = set(), set()
    spam = {u: 0 for u in attacked}
    first_event = {}
    with open(requests) as rq, open(decisions) as dc:
        for line, dline in zip(rq, dc):
            r, d = json.loads(line), json.loads(dline)
            user, ts = r["sasl_username"], r["ts"]
            refused = d["action"] != "DUNNO"
            if user in attacked and ts >= attacked[user]["start"]:
                if not refused:
                    spam[user] += int(r["recipient_count"])
                elif user not in first_event:
                    first_event[user] = ts - attacked[user]["start"]
            elif ts >= attack_day and user not in attacked:
                legit_active.add(user)
                if refused:
                    legit_refused.add(user)
    # The summary's times are whole seconds: an attack's own second counts as the attack's.
    for lock in summary["locks"] + summary["suspects"]:
        u = lock["user"]
        if u in attacked and lock["ts"] >= int(attacked[u]["start"]):
            since = max(0.0, lock["ts"] - attacked[u]["start"])
            first_event[u] = min(first_event.get(u, 1e18), since)
    false_locks = [l["user"] for l in summary["locks"] if l["user"] not in attacked
                   or l["ts"] < int(attacked[l["user"]]["start"])]
    share = 100.0 * len(legit_refused) / max(1, len(legit_active))
    result = {
        "config": args.config, "seed": truth["seed"], "requests": summary["requests"],
        "replay_secs": round(took, 1),
        "legit_refused_pct": round(share, 2), "legit_refused": len(legit_refused),
        "legit_active": len(legit_active),
        # The targets: every botnet and the slow attacker; the single-address customer apart.
        "spam_max": max(n for u, n in spam.items() if attacked[u]["attack"] != "single-address"),
        "spam_single_address": sum(n for u, n in spam.items() if attacked[u]["attack"] == "single-address"),
        "spam": {attacked[u]["attack"]: n for u, n in spam.items()},
        "false_locks": len(false_locks),
        "notify_secs_max": max(first_event.get(u, float("inf")) for u in attacked),
        "notify_secs": {attacked[u]["attack"]: round(first_event.get(u, float("inf")), 1) for u in attacked},
        "notifications": summary["notifications"],
    }
    print(json.dumps(result))
    print(f"| {os.path.basename(args.config)} | {truth['seed']} | {result['legit_refused_pct']}% "
          f"({len(legit_refused)}/{len(legit_active)}) | {result['spam_max']} | {result['spam_single_address']} "
          f"| {result['false_locks']} | {result['notify_secs_max']:.0f} s |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--days", type=int, default=28)
    g.add_argument("--senders", type=int, default=2000)
    g.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("--config", required=True)
    r.add_argument("--in", dest="inp", required=True)
    r.add_argument("--trial", action="store_true",
                   help="log-only through the history, enforce from the attack day (as installed)")
    r.add_argument("--bin", default="target/release/email-ratelimit")
    args = p.parse_args()
    generate(args) if args.cmd == "generate" else report(args)


if __name__ == "__main__":
    main()
