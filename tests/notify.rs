//! Notifications end to end: the real daemon (two of them on one real redis-server), a
//! stand-in `sendmail` that files each message it is given, and a loopback HTTP server that
//! records the webhook's requests.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Daemon, Redis, defer_locked, defer_user, eom_from, redis_daemon, wait_for};
use tempfile::TempDir;

/// A stand-in sendmail: each message becomes `mail.*.eml` in a temporary directory.
struct Outbox {
    dir: TempDir,
    script: PathBuf,
}

impl Outbox {
    fn new(exit: u8) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("sendmail");
        let body = if exit == 0 {
            format!(
                "#!/bin/sh\nf=$(mktemp {0}/mail.XXXXXX)\necho \"$@\" > \"$f.args\"\ncat > \"$f.part\" && mv \"$f.part\" \"$f.eml\"\n",
                dir.path().display()
            )
        } else {
            format!("#!/bin/sh\ncat > /dev/null\necho '451 4.3.0 queue file write error' >&2\nexit {exit}\n")
        };
        std::fs::write(&script, body).expect("write script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        Self { dir, script }
    }

    fn mails(&self) -> Vec<Mail> {
        let mut out: Vec<Mail> = std::fs::read_dir(self.dir.path())
            .expect("read outbox")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .map(|e| {
                let mut mail = Mail::parse(&std::fs::read_to_string(e.path()).expect("read mail"));
                let args = e.path().with_extension("args");
                mail.args = std::fs::read_to_string(args).expect("read args").trim_end().to_owned();
                mail
            })
            .collect();
        out.sort_by(|a, b| a.header("Date").cmp(b.header("Date")));
        out
    }

    fn about(&self, to: &str, subject: &str) -> Vec<Mail> {
        self.mails().into_iter().filter(|m| m.header("To") == to && m.header("Subject") == subject).collect()
    }
}

struct Mail {
    headers: Vec<(String, String)>,
    body: String,
    /// The stand-in sendmail's arguments.
    args: String,
}

impl Mail {
    fn parse(text: &str) -> Self {
        let (head, body) = text.split_once("\n\n").expect("headers end with an empty line");
        let headers = head
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("bad header line {l:?}"));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        Self { headers, body: body.to_owned(), args: String::new() }
    }

    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

/// A loopback HTTP server that records each request's body and answers with `status`.
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Hook {
    fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/erl", listener.local_addr().expect("addr"));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                seen.lock().expect("lock").push(String::from_utf8_lossy(&body).into_owned());
                let _ = reader.get_mut().write_all(
                    format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Self { url, bodies }
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .map(|b| serde_json::from_str(b).expect("JSON body"))
            .collect()
    }

    fn about(&self, event: &str, user: &str) -> Vec<serde_json::Value> {
        self.events().into_iter().filter(|e| e["event"] == event && e["user"] == user).collect()
    }
}

fn notify_config(outbox: &Outbox, hook: &str) -> String {
    format!(
        "[notify]\nadmin = [\"postmaster@example.com\", \"abuse@example.com\"]\nsender = true\n\
         sendmail = \"{} -t -i\"\nfrom = \"erl@mx.example.com\"\nwebhook = \"{hook}\"\n",
        outbox.script.display()
    )
}

const ADMINS: &str = "postmaster@example.com, abuse@example.com";

#[test]
fn one_mail_and_one_post_per_event_even_from_a_storm_on_two_servers() {
    let Some(redis) = Redis::start() else { return };
    let (outbox, hook) = (Outbox::new(0), Hook::start(200));
    let limits = "[limits]\n[[limits.mailbox]]\nemail = \"bob@example.com\"\ndaily = 5\n\
                  [[limits.mailbox]]\nemail = \"carol@example.com\"\ndaily = 1\n\
                  [[limits.mailbox]]\nemail = \"dave@example.com\"\ndaily = 1\n";
    let start = |name: &str| {
        redis_daemon(
            &redis,
            &format!("server_name = \"{name}\"\n{limits}{}", notify_config(&outbox, &hook.url)),
        )
    };
    let servers = [start("mx1"), start("mx2")];
    let bob = "bob@example.com";
    for _ in 0..5 {
        assert_eq!(servers[0].send(bob, 1), "DUNNO");
    }
    // 200 refusals in one window from 32 connections spread over both servers.
    std::thread::scope(|s| {
        for t in 0..32 {
            let d: &Daemon = &servers[t % 2];
            s.spawn(move || {
                let mut conn = d.connect();
                for _ in 0..(200 / 32 + usize::from(t < 200 % 32)) {
                    assert_eq!(conn.ask(&common::eom(bob, 1)), defer_user(bob, 5));
                }
            });
        }
    });
    // One later event per server: once their last mails (the sender's, after the admins') are
    // delivered, every earlier mail has been (each server's mail worker delivers in order; the
    // webhook has its own).
    for (d, user) in servers.iter().zip(["carol@example.com", "dave@example.com"]) {
        assert_eq!(d.send(user, 1), "DUNNO");
        assert_eq!(d.send(user, 1), defer_user(user, 1));
    }
    wait_for("the later events' mails", Duration::from_secs(20), || {
        let own = |u: &str| format!("Your account {u} reached its daily limit of 1");
        (outbox.about("carol@example.com", &own("carol@example.com")).len()
            + outbox.about("dave@example.com", &own("dave@example.com")).len()
            == 2)
            .then_some(())
    });
    wait_for("the later events' posts", Duration::from_secs(20), || {
        (hook.about("refusal", "carol@example.com").len() + hook.about("refusal", "dave@example.com").len()
            == 2)
            .then_some(())
    });
    let admin = outbox.about(ADMINS, "bob@example.com reached its daily limit of 5");
    assert_eq!(admin.len(), 1, "one admin mail for 200 refusals");
    let own = outbox.about(bob, "Your account bob@example.com reached its daily limit of 5");
    assert_eq!(own.len(), 1, "one mail to the sender");
    assert_eq!(outbox.mails().len(), 6, "bob, carol, dave: one admin mail and one own mail each");
    let m = &admin[0];
    assert_eq!(m.header("From"), "email-ratelimit <erl@mx.example.com>");
    assert_eq!(m.header("Auto-Submitted"), "auto-generated");
    assert!(
        m.header("Message-ID").starts_with("<erl.") && m.header("Message-ID").ends_with("@mx.example.com>")
    );
    assert!(chrono::DateTime::parse_from_rfc2822(m.header("Date")).is_ok(), "{}", m.header("Date"));
    assert!(m.body.starts_with("bob@example.com reached its daily limit of 5.\n"), "{}", m.body);
    for part in
        ["Limit:          5 per 1d", "Count:          5 before", "email-ratelimit status bob@example.com"]
    {
        assert!(m.body.contains(part), "{part:?} not in:\n{}", m.body);
    }
    let posts = hook.about("refusal", bob);
    assert_eq!(posts.len(), 1, "{posts:?}");
    let p = &posts[0];
    assert_eq!(
        (
            p["scope"].as_str(),
            p["window"].as_str(),
            p["limit"].as_u64(),
            p["count"].as_u64(),
            p["ip"].as_str()
        ),
        (Some("mailbox"), Some("1d"), Some(5), Some(5), Some("192.0.2.10"))
    );
    assert!(matches!(p["server"].as_str(), Some("mx1" | "mx2")) && p["ts"].as_i64().is_some_and(|t| t > 0));
    assert_eq!(hook.events().len(), 3);
}

#[test]
fn suspects_locks_and_unlocks_are_told() {
    let Some(redis) = Redis::start() else { return };
    let (outbox, hook) = (Outbox::new(0), Hook::start(200));
    let eve = "eve@example.com";
    let d = redis_daemon(
        &redis,
        &format!(
            "server_name = \"mx1\"\n[protect]\nmax_client_ips = 3\nlock = true\n{}",
            notify_config(&outbox, &hook.url)
        ),
    );
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(d.connect().ask(&eom_from(eve, 1, ip)), "DUNNO");
    }
    assert_eq!(d.connect().ask(&eom_from(eve, 1, "198.51.100.4")), defer_locked(eve));
    // Mail and webhook are delivered by their own workers: wait for both.
    wait_for("the lock's post and mails", Duration::from_secs(20), || {
        (hook.about("lock", eve).len() == 1
            && outbox.about(eve, "Sending from eve@example.com is suspended").len() == 1)
            .then_some(())
    });
    let suspect = outbox.about(ADMINS, "eve@example.com is a suspect: 4 client addresses today");
    let lock = outbox.about(ADMINS, "eve@example.com locked: 4 client addresses today");
    assert_eq!((suspect.len(), lock.len()), (1, 1));
    assert!(lock[0].body.contains("email-ratelimit unlock eve@example.com"), "{}", lock[0].body);
    assert_eq!(outbox.about(eve, "Sending from eve@example.com is suspended").len(), 1);
    let s = &hook.about("suspect", eve)[0];
    assert_eq!(
        (s["count"].as_u64(), s["limit"].as_u64(), s["ip"].as_str()),
        (Some(4), Some(3), Some("198.51.100.4"))
    );
    assert_eq!(hook.about("lock", eve)[0]["reason"].as_str(), Some("4 client addresses today"));
    // The admin commands tell too.
    let (ok, out) = d.admin(&["unlock", eve]);
    assert!(ok && out.contains("notified"), "{out}");
    assert_eq!(outbox.about(ADMINS, "eve@example.com unlocked").len(), 1);
    assert_eq!(hook.about("unlock", eve).len(), 1);
    let (ok, out) = d.admin(&["lock", eve, "--reason", "spam run"]);
    assert!(ok && out.contains("notified"), "{out}");
    assert_eq!(outbox.about(ADMINS, "eve@example.com locked: admin: spam run").len(), 1);
    assert_eq!(hook.about("lock", eve).len(), 2);
}

#[test]
fn failing_sendmail_and_webhook_change_no_reply_and_are_not_retried_forever() {
    let Some(redis) = Redis::start() else { return };
    let outbox = Outbox::new(75);
    let hook = Hook::start(500);
    let d = redis_daemon(
        &redis,
        &format!(
            "[limits]\n[[limits.domain]]\ndomain = \"example.com\"\nmailbox_daily = 1\n[protect]\nmax_client_ips = 2\n{}",
            notify_config(&outbox, &hook.url)
        ),
    );
    // 50 senders each at their cap: 50 refusal events, plus one suspect.
    for i in 0..50 {
        let user = format!("u{i}@example.com");
        assert_eq!(d.send(&user, 1), "DUNNO");
        assert_eq!(d.send(&user, 1), defer_user(&user, 1));
    }
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(d.connect().ask(&eom_from("x@other.example", 1, ip)), "DUNNO");
    }
    d.wait_log("notify: sendmail failed", 1);
    d.wait_log("after 3 tries: HTTP 500", 1);
    assert!(d.log().contains("451 4.3.0 queue file write error"), "{}", d.log());
    // The first event's webhook was tried exactly 3 times before the failure was logged.
    assert!(hook.events()[..3].iter().all(|e| e["user"] == "u0@example.com"), "{:?}", hook.events());
    assert_eq!(hook.about("refusal", "u0@example.com").len(), 3);
    assert_eq!(d.log().matches("notify: sendmail failed").count(), 1, "logged once a minute");
    assert_eq!(outbox.mails().len(), 0);
}

/// Issue 20 item 6: every notification names its recipients as sendmail arguments (a `-t` in
/// the setting is dropped, with a warning), and a sender whose name is not a plain address gets
/// no mail of its own: a `,` in a SASL username must not add recipients.
#[test]
fn recipients_are_arguments_and_a_bad_sender_name_gets_no_mail() {
    let Some(redis) = Redis::start() else { return };
    let (outbox, hook) = (Outbox::new(0), Hook::start(200));
    let d = redis_daemon(
        &redis,
        &format!(
            "[limits]\n[[limits.domain]]\ndomain = \"example.com\"\nmailbox_daily = 1\n{}",
            notify_config(&outbox, &hook.url)
        ),
    );
    d.wait_log("notify.sendmail: -t dropped", 1);
    let users = ["carl@example.com", "x,victim@example.com"];
    for user in users {
        assert_eq!(d.send(user, 1), "DUNNO");
        assert_eq!(d.send(user, 1), defer_user(user, 1));
    }
    wait_for("both refusals posted", Duration::from_secs(20), || {
        users.iter().all(|u| hook.about("refusal", u).len() == 1).then_some(())
    });
    wait_for("the mails", Duration::from_secs(20), || (outbox.mails().len() == 3).then_some(()));
    let mails = outbox.mails();
    for m in &mails {
        assert!(!m.args.split(' ').any(|a| a == "-t"), "{}", m.args);
        assert!(m.args.contains("-i -f erl@mx.example.com -- "), "{}", m.args);
    }
    let admin: Vec<&Mail> = mails.iter().filter(|m| m.header("To") == ADMINS).collect();
    assert_eq!(admin.len(), 2, "the admins hear of both");
    assert!(admin.iter().all(|m| m.args.ends_with("-- postmaster@example.com abuse@example.com")));
    let own: Vec<&Mail> = mails.iter().filter(|m| m.header("To") != ADMINS).collect();
    assert_eq!(own.len(), 1, "only carl is told");
    assert_eq!(
        (own[0].header("To"), own[0].args.rsplit("-- ").next()),
        ("carl@example.com", Some("carl@example.com"))
    );
}

/// A webhook that accepts connections and never answers (holds them open).
fn hanging_hook() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/services/T0/B0/SECRETTOKEN", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    url
}

/// Issue 20 item 10: a dead webhook holds no mail back (mail and webhook have their own queues
/// and workers), and its failure never shows the secret in its URL (item 5).
#[test]
fn a_dead_webhook_delays_no_mail() {
    let Some(redis) = Redis::start() else { return };
    let outbox = Outbox::new(0);
    let hook = hanging_hook();
    let d = redis_daemon(
        &redis,
        &format!(
            "[limits]\n[[limits.domain]]\ndomain = \"example.com\"\nmailbox_daily = 1\n{}",
            notify_config(&outbox, &hook)
        ),
    );
    for i in 0..4 {
        let user = format!("w{i}@example.com");
        assert_eq!(d.send(&user, 1), "DUNNO");
        assert_eq!(d.send(&user, 1), defer_user(&user, 1));
    }
    // Each webhook event takes 3 x 5 s + 3 s to fail; the 8 mails must not wait for them.
    wait_for("every admin and sender mail", Duration::from_secs(10), || {
        (outbox.mails().len() == 8).then_some(())
    });
    d.wait_log("notify: webhook failed", 1);
    assert!(!d.log().contains("SECRETTOKEN") && !d.log().contains("/services/"), "{}", d.log());
    assert!(d.log().contains("http://127.0.0.1:"), "{}", d.log());
}

/// Issue 20 item 14: with 1-minute caps a bot at its cap makes a new first refusal every minute;
/// `[notify] max_per_day` mails about one sender a day go out, the last says so, the rest are
/// counted as suppressed (the webhook still gets every event, each with its own id).
#[test]
fn mails_about_one_sender_are_capped_per_day() {
    let Some(redis) = Redis::start() else { return };
    let (outbox, hook) = (Outbox::new(0), Hook::start(200));
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("now");
    let start = chrono::Utc::now().timestamp() / 86_400 * 86_400 + 3600;
    std::fs::write(&clock, start.to_string()).expect("clock");
    let port = common::free_port();
    let d = Daemon::start_with(
        &format!(
            "timezone = \"UTC\"\n[limits]\n[[limits.mailbox]]\nemail = \"bot@example.com\"\nrates = [\"1/1m\"]\n\
             {}max_per_day = 3\n[redis]\nurl = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            notify_config(&outbox, &hook.url),
            redis.url()
        ),
        &[("EMAIL_RATELIMIT_TEST_CLOCK", clock.to_str().expect("utf-8"))],
    );
    let bot = "bot@example.com";
    let refused = "DEFER_IF_PERMIT bot@example.com: Your limit of 1 recipient per minute reached";
    for minute in 0..5 {
        std::fs::write(&clock, (start + 60 * minute).to_string()).expect("clock");
        assert_eq!(d.send(bot, 1), "DUNNO", "minute {minute}");
        assert_eq!(d.send(bot, 1), refused, "minute {minute}");
    }
    wait_for("5 posts", Duration::from_secs(20), || (hook.about("refusal", bot).len() == 5).then_some(()));
    let ids: std::collections::HashSet<String> =
        hook.about("refusal", bot).iter().map(|e| e["id"].as_str().expect("an id").to_owned()).collect();
    assert_eq!(ids.len(), 5, "one id per event");
    wait_for("the suppressed mails counted", Duration::from_secs(20), || {
        let (_, body) = common::http_get(port, "/metrics", None);
        body.contains("email_ratelimit_notifications_total{result=\"suppressed\"} 4").then_some(())
    });
    let mails = outbox.mails();
    let admin: Vec<&Mail> = mails.iter().filter(|m| m.header("To") == ADMINS).collect();
    let own: Vec<&Mail> = mails.iter().filter(|m| m.header("To") == bot).collect();
    assert_eq!((admin.len(), own.len()), (3, 3), "3 events mailed, each to the admins and the sender");
    let last =
        admin.iter().filter(|m| m.body.contains("This is mail 3 of 3 about bot@example.com today")).count();
    assert_eq!(last, 1, "the third says more are suppressed");
    assert_eq!(
        redis.get(&format!(
            "erl:notified:{}:{bot}",
            chrono::DateTime::from_timestamp(start, 0).expect("t").format("%Y-%m-%d")
        )),
        Some(5)
    );
    d.wait_log("notify: more than 3 mails today about bot@example.com", 1);
}

/// Issue 32 item 2: with the RCPT hook on, a cap that fills exactly is refused at RCPT from then
/// on. The first RCPT refusal of the window is the one that is recorded and notified (the
/// once-per-window marker it shares with END-OF-MESSAGE); later RCPT refusals record and mail
/// nothing; an END-OF-MESSAGE refusal is still recorded (a new message) but not mailed again.
/// RCPT never counts, and never counts toward a lock.
#[test]
fn the_first_refusal_at_rcpt_is_recorded_and_notified_once() {
    let Some(redis) = Redis::start() else { return };
    let (outbox, hook) = (Outbox::new(0), Hook::start(200));
    let dave = "dave@example.com";
    let d = redis_daemon(
        &redis,
        &format!(
            "[limits]\n[[limits.mailbox]]\nemail = \"{dave}\"\ndaily = 2\n\
             [[limits.mailbox]]\nemail = \"carol@example.com\"\ndaily = 1\n\
             [protect]\nlock = true\nlock_after_refusals = 1\n{}",
            notify_config(&outbox, &hook.url)
        ),
    );
    let records = || -> Vec<serde_json::Value> {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg("erl:violations")
            .arg(0)
            .arg(-1)
            .query(&mut redis.conn())
            .expect("LRANGE");
        raw.iter().map(|r| serde_json::from_str(r).expect("JSON")).collect()
    };
    // The cap fills exactly: no refusal yet.
    assert_eq!(d.send(dave, 1), "DUNNO");
    assert_eq!(d.send(dave, 1), "DUNNO");
    // Two messages refused at RCPT (one recipient each, in two connections).
    for t in ["r1.1", "r2.1"] {
        let mut conn = d.connect();
        assert_eq!(conn.ask(&common::message("RCPT", dave, 0, t, 0)), defer_user(dave, 2));
        assert_eq!(conn.ask(&common::message("RCPT", dave, 0, t, 0)), defer_user(dave, 2));
    }
    let after_rcpt = records();
    assert_eq!(after_rcpt.len(), 1, "the first RCPT refusal of the window is recorded, once: {after_rcpt:?}");
    let r = &after_rcpt[0];
    assert_eq!(
        (
            r["type"].as_str(),
            r["user"].as_str(),
            r["limit"].as_u64(),
            r["count"].as_u64(),
            r["window"].as_str()
        ),
        (Some("user"), Some(dave), Some(2), Some(2), Some("1d"))
    );
    assert_eq!(r["enforced"].as_bool(), Some(true));
    assert_eq!(
        redis.get(&format!("erl:refusals:{}:{dave}", common::today())),
        None,
        "RCPT counts toward no lock"
    );
    assert_eq!(redis.get(&common::key(dave)), Some(2), "RCPT never counts");
    // A message refused at END-OF-MESSAGE (the RCPT hook let it through, say it was off): a new
    // message, recorded; the window was already notified.
    assert_eq!(d.send(dave, 1), defer_user(dave, 2));
    assert_eq!(records().len(), 2, "END-OF-MESSAGE refusals are recorded as before");
    assert_eq!(redis.get(&format!("erl:refusals:{}:{dave}", common::today())), Some(1));
    // A later event as a barrier: once its mails and post are out, every earlier one is.
    assert_eq!(d.send("carol@example.com", 1), "DUNNO");
    assert_eq!(d.send("carol@example.com", 1), defer_user("carol@example.com", 1));
    wait_for("carol's mail and post", Duration::from_secs(20), || {
        let own = "Your account carol@example.com reached its daily limit of 1";
        (outbox.about("carol@example.com", own).len() == 1
            && hook.about("refusal", "carol@example.com").len() == 1)
            .then_some(())
    });
    let admin = outbox.about(ADMINS, "dave@example.com reached its daily limit of 2");
    assert_eq!(admin.len(), 1, "one admin mail for the window");
    assert_eq!(outbox.about(dave, "Your account dave@example.com reached its daily limit of 2").len(), 1);
    assert_eq!(hook.about("refusal", dave).len(), 1, "one post for the window");
}
