//! Issue 22 item 1 (`replay`): the requests a test sent to a real daemon, replayed with their
//! times, give exactly the daemon's decisions (caps over windows, message caps, oversize,
//! `max_rcpt_per_message`, retries, suspects and locks by addresses and by refusals); the summary
//! counts them; out-of-order input is named.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

const CONFIG: &str = "store = \"memory\"\ntimezone = \"UTC\"\n[limits]\nglobal = 60\nglobal_rates = [\"40/1h\"]\n\
    max_rcpt_per_message = 25\n\
    [[limits.mailbox]]\nemail = \"a@x.org\"\ndaily = 6\nrates = [\"4/1h\"]\n\
    [[limits.mailbox]]\nemail = \"b@x.org\"\ndaily = 3\n\
    [[limits.mailbox]]\nemail = \"c@y.org\"\ndaily = 20\nmax_rcpt_per_message = 0\n\
    [[limits.mailbox]]\nemail = \"d@y.org\"\nrates = [\"4msg/1h\"]\n\
    [[limits.domain]]\ndomain = \"y.org\"\ndaily = 25\n\
    [protect]\nmax_client_ips = 3\nlock = true\nlock_after_refusals = 4\n";

/// One request as JSON line and as the wire text the daemon got.
fn pair(user: &str, rcpt: u32, client: &str, instance: &str, size: u64) -> (serde_json::Value, String) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64();
    let wire = message("END-OF-MESSAGE", user, rcpt, instance, size)
        .replace("client_address=192.0.2.10", &format!("client_address={client}"));
    let json = serde_json::json!({"ts": now, "sasl_username": user, "sender": user, "recipient_count": rcpt,
        "client_address": client, "instance": instance, "size": size.to_string()});
    (json, wire)
}

#[test]
fn a_replay_of_what_the_daemon_saw_decides_as_the_daemon_did() {
    let d = Daemon::start(CONFIG);
    let mut lines = Vec::new();
    let mut replies = Vec::new();
    let mut rng = 7u64;
    let mut next = |below: u64| {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) % below
    };
    let users = ["a@x.org", "b@x.org", "c@y.org", "d@y.org", "e@z.org"];
    let clients = ["192.0.2.1", "192.0.2.2", "198.51.100.3", "203.0.113.4", "192.0.2.9"];
    for i in 0..300u64 {
        let user = users[usize::try_from(next(5)).expect("small")];
        let rcpt = u32::try_from(if next(12) == 0 { 30 } else { 1 + next(3) }).expect("small");
        let client = clients[usize::try_from(if next(15) == 0 { next(5) } else { 0 }).expect("small")];
        // Now and then a retry: the same message again in a new transaction.
        let (instance, size) =
            if next(5) == 0 { (format!("r{i}"), 1000) } else { (format!("t{i}"), 2000 + i) };
        let (json, wire) = pair(user, rcpt, client, &instance, size);
        replies.push(d.connect().ask(&wire));
        lines.push(json.to_string());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").expect("write");
    let decisions = dir.path().join("decisions.jsonl");
    let out = erl()
        .args(["replay", "--config"])
        .arg(&d.config)
        .arg("--decisions")
        .arg(&decisions)
        .args(["--json"])
        .arg(&input)
        .output()
        .expect("replay");
    assert!(out.status.success(), "{out:?}");
    let got: Vec<serde_json::Value> = std::fs::read_to_string(&decisions)
        .expect("decisions")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(got.len(), replies.len());
    let (mut deferred, mut rejected, mut locked, mut per_message, mut messages) = (0, 0, 0, 0, 0);
    for (i, (reply, decision)) in replies.iter().zip(&got).enumerate() {
        let verb = reply.split(' ').next().expect("a verb");
        assert_eq!(decision["i"], i, "{decision}");
        assert_eq!(decision["action"], verb, "request {i}: the daemon said {reply:?}, replay {decision}");
        deferred += usize::from(verb == "DEFER_IF_PERMIT");
        rejected += usize::from(verb == "REJECT");
        locked += usize::from(decision["cap"] == "locked");
        if decision["reason"] == "per_message" {
            per_message += 1;
            assert!(reply.ends_with("recipients per message"), "{reply}");
            assert!(decision.get("cap").is_none() && decision.get("unit").is_none(), "{decision}");
        }
        if decision["unit"] == "msg" {
            messages += 1;
            assert_eq!(decision["cap"], "mailbox/1h", "{decision}");
        }
    }
    eprintln!(
        "deferred {deferred}, rejected {rejected}, locked {locked}, per message {per_message}, msg {messages}"
    );
    assert!(
        deferred > 20 && rejected > 3 && locked > 5 && per_message > 3 && messages > 3,
        "a sequence that tests something: {deferred} {rejected} {locked} {per_message} {messages}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(summary["requests"], 300);
    assert_eq!(summary["rejected"]["oversize"], rejected - per_message);
    assert_eq!(summary["rejected"]["per_message"], per_message);
    assert_eq!(summary["deferred"]["mailbox/1h/msg"], messages);
    let summed: u64 = summary["deferred"]
        .as_object()
        .expect("deferred")
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(summed, u64::try_from(deferred).expect("small"));
    assert!(summary["locks"].as_array().is_some_and(|l| !l.is_empty()), "{summary}");
    assert!(summary["notifications"]["lock"].as_u64().is_some_and(|n| n > 0), "{summary}");
}

#[test]
fn replay_names_a_line_out_of_time_order_and_reads_standard_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[[limits.mailbox]]\nemail = \"a@x.org\"\ndaily = 1\n").expect("write");
    let input = dir.path().join("in.jsonl");
    // DESIGN v4: within 10 minutes, lines out of order are sorted; an older one is an error
    // naming its file and line.
    std::fs::write(
        &input,
        "{\"ts\": 1000, \"sasl_username\": \"a@x.org\"}\n\n{\"ts\": 399, \"sasl_username\": \"a@x.org\"}\n",
    )
    .expect("write");
    let out = erl().args(["replay", "--config"]).arg(&config).arg(&input).output().expect("replay");
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "{}: line 3: more than 10 minutes earlier than a line before it",
            input.display()
        )),
        "{out:?}"
    );
    std::fs::write(
        &input,
        "{\"ts\": 1000, \"sasl_username\": \"a@x.org\"}\n\n{\"ts\": 401, \"sasl_username\": \"a@x.org\"}\n",
    )
    .expect("write");
    let decisions = dir.path().join("d.jsonl");
    let out = erl()
        .args(["replay", "--config"])
        .arg(&config)
        .arg("--decisions")
        .arg(&decisions)
        .arg(&input)
        .output()
        .expect("replay");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&decisions)
        .expect("decisions")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(
        (lines[0]["i"].as_u64(), lines[1]["i"].as_u64()),
        (Some(2), Some(0)),
        "the earlier line first"
    );
    let out = replay_stdin(
        &["--json"],
        &config,
        b"{\"ts\": 100, \"sasl_username\": \"a@x.org\"}\n{\"ts\": 101, \"sasl_username\": \"a@x.org\"}\n{\"ts\": 102, \"client_address\": \"192.0.2.1\"}\n",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["accepted"]["messages"], 1);
    assert_eq!((v["requests"].as_u64(), v["senders"].as_u64()), (Some(3), Some(1)), "no login: no sender");
    assert_eq!(v["deferred"]["mailbox/1d"], 1);
}

/// `replay ARGS --config CONFIG -` with `input` on its standard input.
fn replay_stdin(args: &[&str], config: &std::path::Path, input: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = erl()
        .arg("replay")
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("replay");
    child.stdin.take().expect("stdin").write_all(input).expect("write");
    child.wait_with_output().expect("wait")
}

/// A New Year's Eve of Postfix's log, rotated: the older part gzipped, the newer plain.
const BEFORE_MIDNIGHT: &str = "\
Dec 31 23:59:58 mx postfix/submission/smtpd[10]: 1AAAA1: client=h[192.0.2.1], sasl_method=LOGIN, sasl_username=a@x.org
Dec 31 23:59:58 mx postfix/qmgr[11]: 1AAAA1: from=<a@x.org>, size=700, nrcpt=2 (queue active)
Dec 31 23:59:59 mx postfix/qmgr[11]: 1AAAA1: removed
";
const AFTER_MIDNIGHT: &str = "\
Jan  1 00:00:02 mx postfix/submission/smtpd[10]: 2BBBB2: client=h[192.0.2.1], sasl_method=LOGIN, sasl_username=b@x.org
Jan  1 00:00:02 mx postfix/submission/smtpd[10]: 2BBBB2: reject: END-OF-MESSAGE from h[192.0.2.1]: 450 4.7.1 <END-OF-MESSAGE>: End-of-data rejected: over; from=<b@x.org> to=<z@z.org> proto=ESMTP helo=<h>
Jan  1 00:00:03 mx postfix/smtpd[12]: 3CCCC3: client=filter[127.0.0.1], sasl_method=PLAIN, sasl_username=carol
Jan  1 00:00:03 mx postfix/qmgr[11]: 3CCCC3: from=<carol@x.org>, size=50, nrcpt=1 (queue active)
Jan  1 00:00:04 mx postfix/smtpd[13]: 4DDDD4: client=localhost[127.0.0.1]
Jan  1 00:00:04 mx postfix/smtp[14]: 3CCCC3: to=<d@z.org>, relay=127.0.0.1[127.0.0.1]:10025, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4DDDD4)
Jan  1 00:00:04 mx postfix/qmgr[11]: 4DDDD4: from=<carol@x.org>, size=90, nrcpt=1 (queue active)
Jan  1 00:00:05 mx postfix/pickup[15]: 5EEEE5: uid=4242 from=<web>
Jan  1 00:00:05 mx postfix/qmgr[11]: 5EEEE5: from=<web@mx>, size=10, nrcpt=1 (queue active)
Jan  1 00:00:06 mx dovecot[16]: imap-login: Login: user=<a@x.org>
";

/// Issue 35: `--input maillog` reads Postfix's log as a new user has it: rotated files (gzip
/// among them) over a New Year, a login without a domain, an end-of-data reject, a content
/// filter's hop, website mail; stdin in `journalctl -o short-iso`'s style; an input without a
/// request, and a log given to `--input jsonl`, are named.
#[test]
fn replay_reads_postfixs_log_rotated_gzip_and_from_stdin() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "store = \"memory\"\ntimezone = \"UTC\"\nmode = \"log-only\"\nenforce_from = \"2027-01-01\"\n\
         [[limits.mailbox]]\nemail = \"b@x.org\"\ndaily = 1\n[limits.local]\ndaily = 5\n",
    )
    .expect("config");
    let older = dir.path().join("mail.log.1.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(BEFORE_MIDNIGHT.as_bytes()).expect("gzip");
    std::fs::write(&older, gz.finish().expect("gzip")).expect("write");
    let newer = dir.path().join("mail.log");
    std::fs::write(&newer, AFTER_MIDNIGHT).expect("write");
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "shop:x:4242:4242::/var/www/shop:/usr/sbin/nologin\n").expect("passwd");
    let decisions = dir.path().join("d.jsonl");
    let out = erl()
        .args([
            "replay",
            "--input",
            "maillog",
            "--json",
            "--mode",
            "as-configured",
            "--year",
            "2027",
            "--config",
        ])
        .arg(&config)
        .arg("--passwd")
        .arg(&passwd)
        .arg("--decisions")
        .arg(&decisions)
        // Newest first, as a shell's mail.log* gives them: merged by time all the same.
        .args([&newer, &older])
        .output()
        .expect("replay");
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let got: Vec<(u64, String, String)> = std::fs::read_to_string(&decisions)
        .expect("decisions")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .map(|d| {
            (
                d["i"].as_u64().unwrap_or(99),
                d["queue_id"].as_str().unwrap_or("").into(),
                d["action"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let want = |i: u64, q: &str, a: &str| (i, q.to_owned(), a.to_owned());
    // The hop's second leg (4DDDD4) is the same message, not another request.
    assert_eq!(
        got,
        [
            want(0, "1AAAA1", "DUNNO"),
            want(1, "2BBBB2", "DUNNO"),
            want(2, "3CCCC3", "DUNNO"),
            want(3, "5EEEE5", "DUNNO")
        ]
    );
    // Dec 31 is 2026: the log-only year ends before Jan 1 2027, when enforce_from switches.
    assert_eq!(v["mode_switches"], serde_json::json!([{"ts": 1_798_761_602, "mode": "enforce"}]), "{v:#}");
    assert_eq!(v["inputs"]["lines"], 13, "{v:#}");
    assert_eq!(v["inputs"]["understood"], 13, "{v:#}");
    assert_eq!(v["inputs"]["refused_one_recipient"], 1, "{v:#}");
    assert_eq!(v["senders"], 4, "a@x.org, b@x.org, carol and local:shop: {v:#}");
    assert_eq!(v["accepted"]["recipients"], 5, "2 + 1 + 1 + 1: {v:#}");

    // journalctl -o short-iso, on stdin.
    let out = replay_stdin(
        &["--input", "maillog", "--json"],
        &config,
        b"2026-12-07T10:00:00+0100 mx postfix/submission/smtpd[1]: 9ZZZZ9: client=h[192.0.2.1], sasl_method=PLAIN, sasl_username=b@x.org\n\
          2026-12-07T10:00:01+0100 mx postfix/qmgr[2]: 9ZZZZ9: from=<b@x.org>, size=5, nrcpt=3 (queue active)\n",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["requests"], 1, "{v:#}");

    // No request in it: said, with the file and the formats read.
    let dovecot = dir.path().join("dovecot.log");
    std::fs::write(&dovecot, "Jan  1 00:00:06 mx dovecot[16]: imap-login: Login: user=<a@x.org>\n")
        .expect("write");
    let out = erl()
        .args(["replay", "--input", "maillog", "--config"])
        .arg(&config)
        .arg(&dovecot)
        .output()
        .expect("replay");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.starts_with(&format!("email-ratelimit: {}: no request in 1 lines", dovecot.display())),
        "{said}"
    );
    assert!(said.contains("--input maillog reads Postfix's log"), "{said}");
    // Postfix's log given to the default input: the line, the file, and which input reads it.
    let out = erl().args(["replay", "--config"]).arg(&config).arg(&newer).output().expect("replay");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        said.lines().next(),
        Some(
            format!(
                "email-ratelimit: {}: line 1 is a log line, not JSON: Postfix's log is read with --input maillog",
                newer.display()
            )
            .as_str()
        ),
        "{said}"
    );
}

/// Issue 35: the allowances learned by the end of a replay are listed, each with the day it
/// began (a mailbox of steady habits earns one once it has `min_days` days of mail).
#[test]
fn replay_lists_the_allowances_learned_by_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "store = \"memory\"\ntimezone = \"UTC\"\n[[limits.domain]]\ndomain = \"*\"\nmailbox_daily = 10\n\
         [learn]\nenabled = true\nmin_days = 3\nfactor = 3.0\nceiling = 100\n",
    )
    .expect("config");
    // 8 recipients a day from 2026-11-01 to 2026-11-08, at noon.
    let first = 1_793_534_400; // 2026-11-01T12:00:00Z
    let input: String = (0..8)
        .map(|day| {
            let ts = first + day * 86_400;
            format!("{{\"ts\": {ts}, \"sasl_username\": \"steady@x.org\", \"recipient_count\": 8, \"instance\": \"i{day}\"}}\n")
        })
        .collect();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, input).expect("write");
    let out = erl().args(["replay", "--json", "--config"]).arg(&config).arg(&file).output().expect("replay");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let learned = v["learned"].as_array().expect("learned");
    assert_eq!(learned.len(), 1, "{v:#}");
    assert_eq!(learned[0]["user"], "steady@x.org", "{v:#}");
    assert!(learned[0]["daily"].as_u64().is_some_and(|d| d > 10), "more than the default: {v:#}");
    // Learned from its 3 days before: in force from the 4th day on.
    assert_eq!(learned[0]["from"], "2026-11-04", "{v:#}");
    let out = erl().args(["replay", "--config"]).arg(&config).arg(&file).output().expect("replay");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  steady@x.org: learned "), "{text}");
    assert!(text.contains("/1d from 2026-11-04\n"), "{text}");
}
