#!/usr/bin/env python3
"""Replay input for measuring `email-ratelimit replay`'s speed: N requests (JSON lines) of S
senders in 50 domains, one every 50 ms of virtual time, 1 to 5 recipients, 5 client addresses,
each its own message. Not a traffic model (see issue 22's generator for that): only load.

    benches/replay_input.py 1000000 10000 > /tmp/replay1m.jsonl
"""
import json
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
senders = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
random.seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
names = [f"user{i}@example{i % 50}.com" for i in range(senders)]
t = 1795372800.0
out = sys.stdout
for i in range(n):
    t += 0.05
    out.write(json.dumps({
        "ts": round(t, 3),
        "sasl_username": random.choice(names),
        "recipient_count": random.randint(1, 5),
        "client_address": f"192.0.2.{random.randrange(5)}",
        "size": str(2000 + i),
        "instance": f"i{i}",
    }) + "\n")
