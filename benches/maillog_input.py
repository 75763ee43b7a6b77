#!/usr/bin/env python3
"""A mail.log for measuring `email-ratelimit replay --input maillog`: N lines of Postfix's log
as syslog writes it (traditional stamps, several syslog_names), about 9 lines a message: SMTP
logins of S senders (1 to 4 recipients, delivered, now and then deferred or bounced, with the
bounce's notification), website mail through pickup, unauthenticated inbound mail, END-OF-MESSAGE
rejects, connect/disconnect lines and Dovecot's lines in between. Not a traffic model: only load.

    benches/maillog_input.py 1000000 10000 > /tmp/maillog1m
"""
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
senders = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
random.seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
names = [f"user{i}@example{i % 50}.com" for i in range(senders)]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
out = sys.stdout
written = 0
t = 0.0  # seconds since Nov 1 00:00
qid_n = 0x10000000


def stamp():
    day = 1 + int(t // 86400)
    s = int(t % 86400)
    return f"Nov {day:2d} {s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def line(prog, text):
    global written
    out.write(f"{stamp()} mx1 {prog}[{random.randint(1000, 99999)}]: {text}\n")
    written += 1


def qid():
    global qid_n
    qid_n += 7
    return f"{qid_n:X}"


while written < n:
    t += random.uniform(0.02, 0.4)
    q = qid()
    kind = random.random()
    ip = f"192.0.2.{random.randrange(1, 250)}"
    rcpts = [f"r{random.randrange(100000)}@dest{random.randrange(500)}.net" for _ in range(random.randint(1, 4))]
    if kind < 0.70:
        user = random.choice(names)
        line("postfix/submission/smtpd", f"connect from client[{ip}]")
        line("postfix/submission/smtpd", f"{q}: client=client[{ip}], sasl_method=LOGIN, sasl_username={user}")
        if random.random() < 0.03:
            line("postfix/submission/smtpd", f"{q}: reject: END-OF-MESSAGE from client[{ip}]: 450 4.7.1 <END-OF-MESSAGE>: End-of-data rejected: {user}: over; from=<{user}> to=<{rcpts[0]}> proto=ESMTP helo=<pc>")
            line("postfix/submission/smtpd", f"disconnect from client[{ip}] ehlo=1 auth=1 mail=1 rcpt=1 data=0/1 quit=1 commands=5/6")
            continue
        line("postfix/cleanup", f"{q}: message-id=<{q}@example.com>")
        line("postfix/qmgr", f"{q}: from=<{user}>, size={random.randint(800, 90000)}, nrcpt={len(rcpts)} (queue active)")
        line("postfix/submission/smtpd", f"disconnect from client[{ip}] ehlo=1 auth=1 mail=1 rcpt={len(rcpts)} data=1 quit=1 commands=7")
        bounced = None
        for r in rcpts:
            roll = random.random()
            if roll < 0.02:
                line("postfix/smtp", f"{q}: to=<{r}>, relay=mx.dest.net[198.51.100.7]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.1.1, status=bounced (host mx.dest.net[198.51.100.7] said: 550 5.1.1 <{r}>: Recipient address rejected: User unknown (in reply to RCPT TO command))")
                bounced = user
            elif roll < 0.05:
                line("postfix/smtp", f"{q}: to=<{r}>, relay=mx.dest.net[198.51.100.7]:25, delay=30, delays=0.1/0/30/0, dsn=4.4.1, status=deferred (connect to mx.dest.net[198.51.100.7]:25: Connection timed out)")
            else:
                line("postfix/smtp", f"{q}: to=<{r}>, relay=mx.dest.net[198.51.100.7]:25, delay=0.9, delays=0.1/0/0.3/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as ABC)")
        if bounced:
            b = qid()
            line("postfix/cleanup", f"{b}: message-id=<{b}@mx1>")
            line("postfix/bounce", f"{q}: sender non-delivery notification: {b}")
            line("postfix/qmgr", f"{b}: from=<>, size=3000, nrcpt=1 (queue active)")
            line("postfix/virtual", f"{b}: to=<{bounced}>, relay=virtual, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (delivered to maildir)")
            line("postfix/qmgr", f"{b}: removed")
        line("postfix/qmgr", f"{q}: removed")
    elif kind < 0.80:
        uid = random.choice([33, 1001, 1002, 1003])
        line("postfix/pickup", f"{q}: uid={uid} from=<web{uid}>")
        line("postfix/cleanup", f"{q}: message-id=<{q}@mx1>")
        line("postfix/qmgr", f"{q}: from=<web{uid}@mx1>, size={random.randint(800, 9000)}, nrcpt={len(rcpts)} (queue active)")
        for r in rcpts:
            line("postfix/smtp", f"{q}: to=<{r}>, relay=mx.dest.net[198.51.100.7]:25, delay=0.9, delays=0.1/0/0.3/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok)")
        line("postfix/qmgr", f"{q}: removed")
    else:
        line("postfix/smtpd", f"connect from mail.remote.org[{ip}]")
        line("postfix/smtpd", f"{q}: client=mail.remote.org[{ip}]")
        line("postfix/cleanup", f"{q}: message-id=<{q}@remote.org>")
        line("postfix/qmgr", f"{q}: from=<someone@remote.org>, size=5000, nrcpt=1 (queue active)")
        line("postfix/smtpd", f"disconnect from mail.remote.org[{ip}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
        line("dovecot", f"lmtp({random.choice(names)})<{random.randrange(99999)}>: saved mail to INBOX")
        line("postfix/lmtp", f"{q}: to=<{random.choice(names)}>, relay=mx1[private/dovecot-lmtp], delay=0.05, delays=0/0/0/0.05, dsn=2.0.0, status=sent (250 2.0.0 Saved)")
        line("postfix/qmgr", f"{q}: removed")
