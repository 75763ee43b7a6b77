#!/usr/bin/env bash
# How soon is the admin told? (issue 22 item 5: within 60 s of the first refusal or lock.) The
# release daemon (memory store: no Redis needed) with `[notify] admin` and a sendmail that
# writes the time it was started; each of N senders sends a message that fits and one that its
# daily cap of 1 refuses (a first refusal: an event), and, with a second client address, is
# locked (max_client_ips = 1, lock = true: a suspect and a lock, one mail each). Prints the
# median and the largest time from the refusing reply to the start of its mail, and the same
# for locks.
# Usage: benches/notify_latency.sh [senders] (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
senders="${1:-20}"
# shellcheck source=benches/lib.sh
. benches/lib.sh

echo "building (release)..." >&2
cargo build --release --locked -q --bin email-ratelimit

cat > "$work/sendmail" <<SH
#!/bin/sh
# One line a mail: when it started, and its subject.
t="\$(date +%s.%N)"
subject="\$(grep -m1 '^Subject:' | cut -c10-)"
echo "\$t \$subject" >> "$work/sent"
SH
chmod 755 "$work/sendmail"
cat > "$work/config.toml" <<TOML
timezone = "UTC"
store = "memory"
[listen]
socket = "$work/erl.sock"
[[limits.domain]]
domain = "*"
mailbox_daily = 1
[protect]
max_client_ips = 1
lock = true
[notify]
admin = ["postmaster@example.com"]
sendmail = "$work/sendmail -t -i"
TOML
target/release/email-ratelimit serve --config "$work/config.toml" >"$work/daemon.log" 2>&1 &
pids+=($!)
until [ -S "$work/erl.sock" ]; do sleep 0.05; done

python3 - "$work" "$senders" <<'PY'
import os, socket, statistics, sys, time
work, senders = sys.argv[1], int(sys.argv[2])

def ask(user, client, n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(work, "erl.sock"))
    s.sendall((f"request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nclient_address={client}\n"
               f"sasl_username={user}\nrecipient_count=1\ninstance={user}.{n}\nsize={n}\n\n").encode())
    reply = s.recv(4096).decode()
    s.close()
    return reply

def mails():
    try:
        return [line.split(" ", 1) for line in open(os.path.join(work, "sent")).read().splitlines()]
    except FileNotFoundError:
        return []

def wait_mail(count):
    deadline = time.time() + 30
    while len(mails()) < count and time.time() < deadline:
        time.sleep(0.001)
    return mails()

refusal, lock = [], []
expected = 0
for i in range(senders):
    user = f"u{i}@example.com"
    assert "DUNNO" in ask(user, "192.0.2.1", 1)
    reply = ask(user, "192.0.2.1", 2)
    told = time.time()
    assert "DEFER_IF_PERMIT" in reply, reply
    expected += 1
    got = wait_mail(expected)
    refusal.append(float(got[expected - 1][0]) - told)
    reply = ask(user, "198.51.100.1", 3)  # a second address: a suspect, locked
    told = time.time()
    expected += 2  # the suspect and the lock
    got = wait_mail(expected)
    lock.append(max(float(t) for t, _ in got[expected - 2:expected]) - told)
ms = lambda xs: f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"
print(f"{senders} senders: refusal -> admin mail started: {ms(refusal)}")
print(f"{senders} senders: lock -> admin mails started: {ms(lock)}")
PY
