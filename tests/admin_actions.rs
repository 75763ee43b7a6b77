//! Issue 21 items 4 and 5: `reset` of a sender during a raise (every window of the caps in
//! force, and its top score), of a domain and of the server; `lock @domain`; a second lock
//! keeps the first; every admin action leaves a syslog line (facility mail) and a
//! `"type": "admin"` record, naming who did it.

mod common;

use std::os::unix::net::UnixDatagram;

use common::*;

/// A daemon in UTC on a clock the test sets, and a stand-in syslog socket.
struct Setup {
    d: Daemon,
    clock: std::path::PathBuf,
    syslog: UnixDatagram,
    syslog_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start(redis: &Redis, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = dir.path().join("now");
        // 2026-11-22 18:40:00 UTC
        std::fs::write(&clock, "1795372800").expect("clock");
        let syslog_path = dir.path().join("syslog");
        let syslog = UnixDatagram::bind(&syslog_path).expect("bind");
        syslog.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        let d = Daemon::start_with(
            &format!("timezone = \"UTC\"\n{extra}\n[redis]\nurl = \"{}\"\n", redis.url()),
            &[("EMAIL_RATELIMIT_TEST_CLOCK", clock.to_str().expect("utf-8"))],
        );
        Self { d, clock, syslog, syslog_path, _dir: dir }
    }

    /// Runs an admin command as the admin `carol` behind sudo: exit status, stdout, stderr.
    fn admin(&self, args: &[&str]) -> (bool, String, String) {
        let out = erl()
            .args(args)
            .arg("--config")
            .arg(&self.d.config)
            .env("EMAIL_RATELIMIT_TEST_CLOCK", &self.clock)
            .env("EMAIL_RATELIMIT_TEST_SYSLOG", &self.syslog_path)
            .env("SUDO_USER", "carol")
            .output()
            .expect("run an admin command");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.admin(args);
        assert!(ok, "{args:?}: {out}{err}");
        out
    }

    /// The next syslog line the commands wrote.
    fn logged(&self) -> String {
        let mut buf = [0u8; 2048];
        let n = self.syslog.recv(&mut buf).expect("a syslog line");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

fn admin_records(s: &Setup) -> Vec<serde_json::Value> {
    s.ok(&["violations", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .filter(|v| v["type"] == "admin")
        .collect()
}

#[test]
fn reset_clears_every_window_in_force_and_the_top_score_for_a_sender_a_domain_and_the_server() {
    let Some(redis) = Redis::start() else { return };
    let s = Setup::start(
        &redis,
        "[limits]\nglobal = 500\nglobal_rates = [\"200/1h\"]\n\
         [[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 50\nrates = [\"4/1h\"]\n\
         [[limits.domain]]\ndomain = \"example.com\"\nrates = [\"30/1h\"]\n",
    );
    assert_eq!(s.d.send("alice@example.com", 3), "DUNNO");
    assert_eq!(s.d.send("bob@example.com", 2), "DUNNO");
    // A raise of the daily cap only: its window counters are the daily ones.
    s.ok(&["raise", "alice@example.com", "100/1d", "--for", "2h"]);
    assert!(
        s.logged()
            .ends_with("erl admin action=raise user=alice@example.com by=carol reason=\"100/1d for 2h\"")
    );
    assert_eq!(s.d.send("alice@example.com", 1), "DUNNO");
    let said = s.ok(&["reset", "alice@example.com"]);
    for line in [
        "reset alice@example.com: today's counter was 4, now 0",
        "  erl:2026-11-22T1800/1h:alice@example.com was 3, now 0",
        "  today's top score was 4, now 0",
    ] {
        assert!(said.lines().any(|l| l == line), "{line:?} not in:\n{said}");
    }
    assert_eq!(redis.get("erl:2026-11-22T1800/1h:alice@example.com"), None, "the config cap's window");
    let top: serde_json::Value = serde_json::from_str(&s.ok(&["top", "--json"])).expect("JSON");
    assert_eq!(top, serde_json::json!([{"user": "bob@example.com", "sent": 2}]));
    assert!(s.logged().ends_with("erl admin action=reset user=alice@example.com by=carol reason=\"\""));
    // The domain's own counters, then the server's.
    let said = s.ok(&["reset", "@Example.com"]);
    assert!(said.contains("reset @example.com: today's counter was 6, now 0"), "{said}");
    assert!(said.contains("erl:2026-11-22T1800/1h:@example.com was 6, now 0"), "{said}");
    assert_eq!(redis.get("erl:2026-11-22:@example.com"), None);
    assert_eq!(redis.get("erl:2026-11-22:bob@example.com"), Some(2), "its senders keep theirs");
    let said = s.ok(&["reset", "--server"]);
    assert!(said.contains("reset global: today's counter was 6, now 0"), "{said}");
    assert!(said.contains("erl:2026-11-22T1800/1h:global was 6, now 0"), "{said}");
    assert_eq!(redis.get("erl:2026-11-22:global"), None);
    let (ok, _, err) = s.admin(&["reset"]);
    assert!(!ok && err.contains("--server"), "{err}");
    let users: Vec<_> = admin_records(&s).iter().map(|v| (v["action"].clone(), v["user"].clone())).collect();
    assert_eq!(
        users,
        [
            ("reset", "global"),
            ("reset", "@example.com"),
            ("reset", "alice@example.com"),
            ("raise", "alice@example.com")
        ]
        .map(|(a, u)| (serde_json::json!(a), serde_json::json!(u)))
    );
    assert!(admin_records(&s).iter().all(|v| v["by"] == "carol" && v["ts"] == 1_795_372_800));
    // Issue 21 item 9: times for people carry their zone (here UTC, marked).
    let text = s.ok(&["violations", "--limit", "1"]);
    assert!(text.starts_with("2026-11-22 18:40:00 UTC  admin   global  reset by=carol"), "{text}");
}

#[test]
fn a_locked_domain_stops_all_its_senders_and_a_second_lock_keeps_the_first() {
    let Some(redis) = Redis::start() else { return };
    let s = Setup::start(&redis, "");
    let said = s.ok(&["lock", "@Example.com", "--reason", "spam wave"]);
    assert!(said.contains("locked @example.com until unlocked"), "{said}");
    let line = s.logged();
    assert!(line.starts_with("<21>email-ratelimit["), "mail.notice: {line}");
    assert!(
        line.ends_with("]: erl admin action=lock user=@example.com by=carol reason=\"spam wave\""),
        "{line}"
    );
    for user in ["bob@example.com", "eve@example.com"] {
        assert_eq!(s.d.send(user, 1), defer_locked(user));
    }
    assert_eq!(s.d.send("carol@example.org", 1), "DUNNO", "another domain");
    assert!(s.ok(&["locks"]).contains("@example.com  locked "), "listed");
    assert!(s.ok(&["status", "@example.com"]).contains("spam wave"));
    // A second lock keeps the first (its reason and who) and adds to its history.
    let said = s.ok(&["lock", "@example.com", "--reason", "still at it", "--for", "1h"]);
    assert!(said.contains("@example.com was already locked") && said.contains("spam wave"), "{said}");
    s.logged();
    let locks: serde_json::Value = serde_json::from_str(&s.ok(&["locks", "--json"])).expect("JSON");
    assert_eq!(locks[0]["reason"], "spam wave");
    assert_eq!(locks[0]["history"][0]["reason"], "still at it");
    assert_eq!(locks[0]["history"][0]["by"], "carol");
    assert!(
        matches!(redis.cmd(&["TTL", "erl:lock:@example.com"]), redis::Value::Int(-1)),
        "the longer lasts"
    );
    let said = s.ok(&["unlock", "@example.com"]);
    assert!(said.contains("unlocked @example.com (locked ") && said.contains("again "), "{said}");
    assert!(s.logged().ends_with("erl admin action=unlock user=@example.com by=carol reason=\"\""));
    assert_eq!(s.d.send("bob@example.com", 1), "DUNNO");
    // Nothing to unlock: exit 1, nothing recorded.
    let before = admin_records(&s).len();
    let (ok, _, err) = s.admin(&["unlock", "@example.com"]);
    assert!(!ok && err.contains("@example.com is not locked; nothing changed"), "{err}");
    assert_eq!(admin_records(&s).len(), before);
    let (ok, _, err) = s.admin(&["raise", "@example.com", "100/1d", "--for", "1h"]);
    assert!(!ok && err.contains("raise applies to one sender"), "{err}");
    // A sender's lock: the lock's own `by` stays "admin"; the violations list names carol.
    s.ok(&["lock", "eve@example.com"]);
    let records = admin_records(&s);
    assert_eq!(
        (records[0]["action"].as_str(), records[0]["user"].as_str(), records[0]["by"].as_str()),
        (Some("lock"), Some("eve@example.com"), Some("carol"))
    );
}

/// Issue 21 item 11: `top --date` reads an earlier day, kept 8 days.
#[test]
fn top_reads_an_earlier_day() {
    let Some(redis) = Redis::start() else { return };
    let s = Setup::start(&redis, "");
    assert_eq!(s.d.send("alice@example.com", 3), "DUNNO");
    // The next day (2026-11-23 09:00 UTC).
    std::fs::write(&s.clock, "1795424400").expect("clock");
    assert_eq!(s.d.send("bob@example.com", 2), "DUNNO");
    let top = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&s.ok(&[&["top", "--json"][..], args].concat())).expect("JSON")
    };
    assert_eq!(top(&[]), serde_json::json!([{"user": "bob@example.com", "sent": 2}]));
    assert_eq!(top(&["--date", "2026-11-22"]), serde_json::json!([{"user": "alice@example.com", "sent": 3}]));
    let ttl = match redis.cmd(&["TTL", "erl:top:2026-11-22"]) {
        redis::Value::Int(t) => t,
        other => panic!("{other:?}"),
    };
    assert!(ttl > 7 * 86_400 && ttl <= 8 * 86_400, "kept 8 days: {ttl}");
    let (ok, _, err) = s.admin(&["top", "--date", "22.11.2026"]);
    assert!(!ok && err.contains("--date"), "{err}");
}

/// Issue 21 item 10: `status` agrees with itself and with `top`: an exempt mailbox is not shown
/// as capped, the summary follows a raise, an hour is not "today", `top --domains` reads the
/// domain's own counter as `status @domain` does, and `--json` carries what the text does.
#[test]
fn status_agrees_with_itself_and_with_top() {
    let Some(redis) = Redis::start() else { return };
    let s = Setup::start(
        &redis,
        "[limits]\nglobal_rates = [\"900/1h\"]\n[[limits.mailbox]]\nemail = \"news@example.com\"\nexempt = true\n\
         [[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 5\n",
    );
    assert_eq!(s.d.send("news@example.com", 900), "DUNNO");
    assert_eq!(s.d.send("alice@example.com", 3), "DUNNO");
    let news = s.ok(&["status", "news@example.com"]);
    for line in [
        "exempt:      yes (never deferred; counted on its own counters only)",
        "mailbox    1d: 900 used today, cap none (exempt)",
        "mailbox cap: none (exempt)",
        "server     1h: 3 used since 18:00, cap none (exempt)",
    ] {
        assert!(news.lines().any(|l| l == line), "{line:?} not in:\n{news}");
    }
    s.ok(&["raise", "alice@example.com", "100/1d", "--for", "1h"]);
    let alice = s.ok(&["status", "alice@example.com"]);
    assert!(alice.lines().any(|l| l == "mailbox cap: 100 (raised) (remaining 97)"), "{alice}");
    let top: serde_json::Value = serde_json::from_str(&s.ok(&["top", "--domains", "--json"])).expect("JSON");
    assert_eq!(top, serde_json::json!([{"user": "@example.com", "sent": 3}]), "the domain's own counter");
    let domain: serde_json::Value =
        serde_json::from_str(&s.ok(&["status", "--json", "@example.com"])).expect("JSON");
    assert_eq!(domain["caps"][0]["used"], 3);
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["status", "--json", "alice@example.com"])).expect("JSON");
    for (key, want) in [
        ("date", serde_json::json!("2026-11-22")),
        ("sent_today", serde_json::json!(3)),
        ("exempt", serde_json::json!(false)),
        ("locked", serde_json::json!(false)),
        ("raise", serde_json::json!(["100/1d"])),
        ("limits_from", serde_json::json!("the config file")),
    ] {
        assert_eq!(json[key], want, "{key} in {json}");
    }
    assert!(json["raise_expires_in_secs"].as_u64().is_some_and(|s| s > 3500), "{json}");
}

/// Issue 33: a raise written by hand (`500/1d 600/1d`, two caps over one window, which `raise`
/// refuses) is read by `status` as the daemon reads it: with one grammar and one resolution of
/// the mailbox's caps, both say 500 a day.
#[test]
fn a_raise_written_by_hand_is_shown_as_the_daemon_applies_it() {
    let Some(redis) = Redis::start() else { return };
    let s = Setup::start(&redis, "[limits]\n[[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 5\n");
    let (refused, _, err) = s.admin(&["raise", "alice@example.com", "500/1d", "600/1d", "--for", "1h"]);
    assert!(!refused && err.contains("600/1d: two caps for the window 1d"), "{err}");
    redis.cmd(&["SET", "erl:raise:alice@example.com", "500/1d 600/1d", "EX", "3600"]);
    assert_eq!(s.d.send("alice@example.com", 400), "DUNNO", "the daemon applies the raise");
    assert_eq!(
        s.d.send("alice@example.com", 101),
        "DEFER_IF_PERMIT alice@example.com: Your daily limit of 500 recipients reached",
        "the stricter of its two daily caps"
    );
    let alice = s.ok(&["status", "alice@example.com"]);
    assert!(alice.lines().any(|l| l == "mailbox cap: 500 (raised) (remaining 100)"), "{alice}");
    assert!(
        alice.contains("mailbox    1d: 400 used today, cap 500 (remaining 100) (from: raise)\n"),
        "{alice}"
    );
}
