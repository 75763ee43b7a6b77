//! The v2 cap model against the real daemon and a real `redis-server`, on a clock the test
//! drives (`EMAIL_RATELIMIT_TEST_CLOCK`): hourly and per-minute caps, domain aggregate caps and
//! domain mailbox defaults, exempt senders, keys and TTLs as the contract names them, and
//! exactness under 64 concurrent connections with every kind of cap small at once.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use common::*;

/// A daemon in UTC on a clock the test sets.
struct Timed {
    d: Daemon,
    clock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Timed {
    fn start(redis: &Redis, extra: &str, at: DateTime<Utc>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = dir.path().join("now");
        let t = Self::write(&clock, at);
        let d = Daemon::start_with(
            &format!("timezone = \"UTC\"\n{extra}\n[redis]\nurl = \"{}\"\n", redis.url()),
            &[("EMAIL_RATELIMIT_TEST_CLOCK", t.to_str().expect("utf-8"))],
        );
        Self { d, clock, _dir: dir }
    }

    fn write(clock: &std::path::Path, at: DateTime<Utc>) -> PathBuf {
        std::fs::write(clock, at.timestamp().to_string()).expect("set the clock");
        clock.to_owned()
    }

    fn set(&self, at: DateTime<Utc>) {
        Self::write(&self.clock, at);
    }
}

fn utc(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, h, m, s).single().expect("valid")
}

fn ttl(redis: &Redis, key: &str) -> i64 {
    match redis.cmd(&["TTL", key]) {
        redis::Value::Int(t) => t,
        other => panic!("TTL {key}: {other:?}"),
    }
}

/// Sends one-recipient messages until refused; returns how many were accepted and the refusal.
fn until_refused(d: &Daemon, user: &str, max: u32) -> (u32, String) {
    let mut c = d.connect();
    for i in 0..max {
        let reply = c.ask(&eom(user, 1));
        if reply != "DUNNO" {
            return (i, reply);
        }
    }
    (max, String::new())
}

#[test]
fn an_hourly_cap_refuses_within_the_hour_and_not_after() {
    let Some(redis) = Redis::start() else { return };
    let t = Timed::start(
        &redis,
        "[[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 100\nrates = [\"5/1h\"]\n",
        utc(10, 15, 0),
    );
    let (accepted, reply) = until_refused(&t.d, "alice@example.com", 10);
    assert_eq!(accepted, 5);
    assert_eq!(reply, "DEFER_IF_PERMIT alice@example.com: Your hourly limit of 5 recipients reached");
    let hourly = "erl:2026-11-22T1000/1h:alice@example.com";
    assert_eq!(redis.get(hourly), Some(5), "the refusal counted nothing");
    assert_eq!(redis.get("erl:2026-11-22:alice@example.com"), Some(5));
    assert_eq!(redis.get("erl:2026-11-22:@example.com"), Some(5));
    assert_eq!(redis.get("erl:2026-11-22:global"), Some(5));
    let ttl_h = ttl(&redis, hourly);
    assert!(ttl_h > 3600 && ttl_h <= 7200, "window + 1 h: {ttl_h}");
    let v = redis.violations();
    assert_eq!(
        (v[0]["type"].as_str(), v[0]["window"].as_str(), v[0]["limit"].as_u64()),
        (Some("user"), Some("1h"), Some(5))
    );
    t.d.wait_log("erl DEFER user=alice@example.com rcpt=1 mailbox=5/100", 1);
    // Issue 21 item 8 (part): the line names the refusing cap's own used/limit (its mailbox= is
    // the daily counter).
    assert!(t.d.log().contains("cap=mailbox window=1h used=5/5"), "{}", t.d.log());
    // 10:59:59 is still the same window; 11:00:00 is the next.
    t.set(utc(10, 59, 59));
    assert_ne!(t.d.send("alice@example.com", 1), "DUNNO");
    t.set(utc(11, 0, 0));
    assert_eq!(until_refused(&t.d, "alice@example.com", 10).0, 5);
    assert_eq!(redis.get("erl:2026-11-22T1100/1h:alice@example.com"), Some(5));
    assert_eq!(redis.get("erl:2026-11-22:alice@example.com"), Some(10));
}

#[test]
fn a_per_minute_server_cap() {
    let Some(redis) = Redis::start() else { return };
    let t = Timed::start(&redis, "[limits]\nglobal_rates = [\"3/1m\"]\n", utc(23, 59, 10));
    assert_eq!(t.d.send("a@example.com", 2), "DUNNO");
    assert_eq!(
        t.d.send("b@example.org", 2),
        "DEFER_IF_PERMIT b@example.org: Global limit of 3 recipients per minute reached"
    );
    assert_eq!(redis.get("erl:2026-11-22T2359/1m:global"), Some(2));
    let ttl_m = ttl(&redis, "erl:2026-11-22T2359/1m:global");
    assert!(ttl_m > 3600 && ttl_m <= 3660, "{ttl_m}");
    // The window that ends at midnight; the first of the next day.
    t.set(Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 5).single().expect("valid"));
    assert_eq!(t.d.send("b@example.org", 3), "DUNNO");
    assert_eq!(redis.get("erl:2026-11-23T0000/1m:global"), Some(3));
    assert_eq!(redis.get("erl:2026-11-23:global"), Some(3));
}

#[test]
fn domain_caps_are_shared_and_domain_defaults_cap_its_mailboxes() {
    let Some(redis) = Redis::start() else { return };
    let t = Timed::start(
        &redis,
        "[[limits.domain]]\ndomain = \"Example.com\"\nrates = [\"6/15m\"]\nmailbox_daily = 4\n\
         [[limits.mailbox]]\nemail = \"boss@example.com\"\ndaily = 100\n",
        utc(9, 20, 0),
    );
    // Its mailboxes without an entry get the domain's mailbox default (4 a day).
    let (accepted, reply) = until_refused(&t.d, "a@example.com", 10);
    assert_eq!(
        (accepted, reply.as_str()),
        (4, "DEFER_IF_PERMIT a@example.com: Your daily limit of 4 recipients reached")
    );
    // The domain's aggregate is shared: boss may send 2 more in this quarter hour.
    let (accepted, reply) = until_refused(&t.d, "boss@example.com", 10);
    assert_eq!(accepted, 2);
    assert_eq!(
        reply,
        "DEFER_IF_PERMIT boss@example.com: Limit of 6 recipients per 15 minutes for example.com reached"
    );
    assert_eq!(redis.get("erl:2026-11-22T0915/15m:@example.com"), Some(6));
    assert_eq!(redis.get("erl:2026-11-22:@example.com"), Some(6));
    let v = redis.violations();
    assert_eq!((v[0]["type"].as_str(), v[0]["window"].as_str()), (Some("domain"), Some("15m")));
    // Other domains are not touched.
    assert_eq!(t.d.send("x@example.org", 5), "DUNNO");
    t.set(utc(9, 30, 0));
    assert_eq!(t.d.send("boss@example.com", 6), "DUNNO");
}

#[test]
fn an_exempt_sender_passes_every_cap_and_moves_only_its_own_counter() {
    let Some(redis) = Redis::start() else { return };
    let t = Timed::start(
        &redis,
        "[limits]\nglobal = 5\nglobal_rates = [\"3/1h\"]\n[[limits.mailbox]]\nemail = \"news@example.com\"\nexempt = true\n\
         [[limits.domain]]\ndomain = \"example.com\"\ndaily = 2\n",
        utc(12, 0, 0),
    );
    for _ in 0..5 {
        assert_eq!(t.d.send("news@example.com", 10), "DUNNO");
    }
    assert_eq!(redis.get("erl:2026-11-22:news@example.com"), Some(50));
    assert_eq!((redis.get("erl:2026-11-22:global"), redis.get("erl:2026-11-22:@example.com")), (None, None));
    assert_eq!(t.d.send("other@example.com", 2), "DUNNO");
    assert_eq!(
        t.d.send("other@example.com", 1),
        "DEFER_IF_PERMIT other@example.com: Daily limit of 2 recipients for example.com reached"
    );
    assert_eq!(
        t.d.send("else@example.org", 2),
        "DEFER_IF_PERMIT else@example.org: Global hourly limit of 3 recipients reached"
    );
    t.d.wait_log("erl ok user=news@example.com rcpt=10 mailbox=50/- global=exempt", 1);
}

/// 64 connections x 5 one-recipient messages from 8 senders of one domain, under a mailbox
/// hourly and daily cap, a domain cap, and hourly and daily server caps: accepted is exactly the
/// smallest that binds.
#[test]
fn exact_under_concurrency_with_every_kind_of_cap() {
    let Some(redis) = Redis::start() else { return };
    for (extra, expected) in [
        // the server's hourly cap binds: 8 x 12 = 96 by mailbox, 150 domain, 70 hourly
        (
            "[limits]\nglobal = 200\nglobal_rates = [\"70/1h\"]\ndefault_mailbox = 30\ndefault_mailbox_rates = [\"12/1h\"]\n",
            70,
        ),
        // the domain's cap binds
        (
            "[limits]\nglobal = 200\nglobal_rates = [\"170/1h\"]\ndefault_mailbox = 30\ndefault_mailbox_rates = [\"12/1h\"]\n",
            55,
        ),
        // the mailboxes' hourly caps bind: 8 x 6
        (
            "[limits]\nglobal = 200\nglobal_rates = [\"170/1h\"]\ndefault_mailbox = 30\ndefault_mailbox_rates = [\"6/1h\"]\n",
            48,
        ),
    ] {
        redis.cmd(&["FLUSHALL"]);
        let mailboxes: String =
            (0..8).map(|i| format!("[[limits.mailbox]]\nemail = \"s{i}@example.com\"\n")).collect();
        let domain = if expected == 55 {
            "[[limits.domain]]\ndomain = \"example.com\"\nrates = [\"55/1h\"]\n"
        } else {
            "[[limits.domain]]\ndomain = \"example.com\"\ndaily = 150\n"
        };
        let t = Timed::start(&redis, &format!("{extra}{mailboxes}{domain}"), utc(14, 30, 0));
        let accepted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for c in 0..64 {
                let accepted = &accepted;
                let mut conn = t.d.connect();
                s.spawn(move || {
                    for _ in 0..5 {
                        if conn.ask(&eom(&format!("s{}@example.com", c % 8), 1)) == "DUNNO" {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(accepted.load(Ordering::Relaxed), expected, "{extra}{domain}");
        assert_eq!(redis.get("erl:2026-11-22:global"), Some(expected));
        assert_eq!(redis.get("erl:2026-11-22T1400/1h:global"), Some(expected));
        assert_eq!(redis.get("erl:2026-11-22:@example.com"), Some(expected));
        let per_mailbox: u64 =
            (0..8).filter_map(|i| redis.get(&format!("erl:2026-11-22T1400/1h:s{i}@example.com"))).sum();
        assert_eq!(per_mailbox, expected);
    }
}

#[test]
fn a_raise_replaces_the_mailbox_caps_while_it_lasts() {
    let Some(redis) = Redis::start() else { return };
    let t = Timed::start(
        &redis,
        "[[limits.mailbox]]\nemail = \"bob@example.com\"\ndaily = 3\nrates = [\"2/1h\"]\n",
        utc(16, 5, 0),
    );
    assert_eq!(until_refused(&t.d, "bob@example.com", 10).0, 2);
    // Written by `raise` on any server sharing the Redis: picked up at the next message.
    redis.cmd(&["SET", "erl:raise:bob@example.com", "10/1d 5/1h", "EX", "3600"]);
    let (accepted, reply) = until_refused(&t.d, "bob@example.com", 10);
    assert_eq!(
        (accepted, reply.as_str()),
        (3, "DEFER_IF_PERMIT bob@example.com: Your hourly limit of 5 recipients reached")
    );
    // Gone (expired): its own caps again, at once.
    redis.cmd(&["DEL", "erl:raise:bob@example.com"]);
    assert_eq!(
        t.d.send("bob@example.com", 1),
        "DEFER_IF_PERMIT bob@example.com: Your daily limit of 3 recipients reached"
    );
    // Today's top senders: one sorted set, with a TTL.
    assert_eq!(t.d.send("carol@example.org", 4), "DUNNO");
    let score: String = redis::cmd("ZSCORE")
        .arg("erl:top:2026-11-22")
        .arg("bob@example.com")
        .query(&mut redis.conn())
        .expect("ZSCORE");
    assert_eq!(score, "5");
    let score: String = redis::cmd("ZSCORE")
        .arg("erl:top:2026-11-22")
        .arg("carol@example.org")
        .query(&mut redis.conn())
        .expect("ZSCORE");
    assert_eq!(score, "4");
    assert!(ttl(&redis, "erl:top:2026-11-22") > 25 * 3600);
    // A raise key of the wrong type is bad data: that sender fails open, nothing written.
    redis.cmd(&["DEL", "erl:raise:bob@example.com"]);
    redis.cmd(&["RPUSH", "erl:raise:bob@example.com", "x"]);
    assert_eq!(t.d.send("bob@example.com", 1), "DUNNO");
    t.d.wait_log("erl fail-open reason=bad-data key=erl:raise:bob@example.com", 1);
    assert_eq!(redis.get("erl:2026-11-22:bob@example.com"), Some(5));
}

fn admin(t: &Timed, args: &[&str]) -> String {
    let out = erl()
        .args(args)
        .arg("--config")
        .arg(&t.d.config)
        .env("EMAIL_RATELIMIT_TEST_CLOCK", &t.clock)
        .output()
        .expect("run an admin command");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn status_top_raise_and_reset_through_the_store() {
    let Some(redis) = Redis::start() else { return };
    let t = Timed::start(
        &redis,
        "[limits]\nglobal = 500\nglobal_rates = [\"200/1h\"]\n[[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 50\nrates = [\"4/1h\"]\n\
         [[limits.domain]]\ndomain = \"example.com\"\nrates = [\"30/1h\"]\n",
        utc(18, 40, 0),
    );
    assert_eq!(t.d.send("alice@example.com", 3), "DUNNO");
    assert_eq!(t.d.send("bob@example.com", 7), "DUNNO");
    assert_eq!(t.d.send("carol@example.org", 5), "DUNNO");

    let status: serde_json::Value =
        serde_json::from_str(&admin(&t, &["status", "--json", "alice@example.com"])).expect("JSON");
    let row = |scope: &str, window: &str| {
        status["caps"]
            .as_array()
            .expect("caps")
            .iter()
            .find(|c| c["scope"] == scope && c["window"] == window)
            .cloned()
            .unwrap_or_else(|| panic!("no {scope} {window} in {status}"))
    };
    assert_eq!(
        (status["user"].as_str(), status["locked"].as_bool(), status["raise"].is_null()),
        (Some("alice@example.com"), Some(false), true)
    );
    assert_eq!(
        row("mailbox", "1d"),
        serde_json::json!({"scope": "mailbox", "window": "1d", "used": 3, "limit": 50, "remaining": 47, "source": "config file"})
    );
    assert_eq!(
        row("mailbox", "1h"),
        serde_json::json!({"scope": "mailbox", "window": "1h", "used": 3, "limit": 4, "remaining": 1, "source": "config file"})
    );
    assert_eq!(
        row("domain", "1h"),
        serde_json::json!({"scope": "domain", "window": "1h", "used": 10, "limit": 30, "remaining": 20, "source": "config file"})
    );
    assert_eq!(
        row("domain", "1d"),
        serde_json::json!({"scope": "domain", "window": "1d", "used": 10, "limit": null, "remaining": null, "source": null})
    );
    assert_eq!(row("server", "1h")["used"], 15);
    let domain: serde_json::Value =
        serde_json::from_str(&admin(&t, &["status", "--json", "@Example.com"])).expect("JSON");
    assert_eq!(domain["user"], "@example.com");

    let top: serde_json::Value = serde_json::from_str(&admin(&t, &["top", "--json"])).expect("JSON");
    assert_eq!(
        top,
        serde_json::json!([{"user": "bob@example.com", "sent": 7}, {"user": "carol@example.org", "sent": 5}, {"user": "alice@example.com", "sent": 3}])
    );
    let top: serde_json::Value =
        serde_json::from_str(&admin(&t, &["top", "--json", "--domains", "--limit", "1"])).expect("JSON");
    assert_eq!(top, serde_json::json!([{"user": "@example.com", "sent": 10}]));

    // A raise replaces alice's caps on the daemon at once, and shows in status.
    assert_eq!(
        t.d.send("alice@example.com", 2),
        "DEFER_IF_PERMIT alice@example.com: Your hourly limit of 4 recipients reached"
    );
    // Issue 21 item 4 (part): a raise that lowers a cap needs --lower; --cancel ends one.
    let refused = erl()
        .args(["raise", "alice@example.com", "2/1h", "--for", "1h", "--config"])
        .arg(&t.d.config)
        .env("EMAIL_RATELIMIT_TEST_CLOCK", &t.clock)
        .output()
        .expect("raise");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains("2/1h is below the 1h cap in force")
            && err.contains("--lower"),
        "{err}"
    );
    assert!(redis.get("erl:raise:alice@example.com").is_none(), "nothing changed");
    let said = admin(&t, &["raise", "alice@example.com", "2/1h", "--for", "1h", "--lower"]);
    assert!(said.contains("raised alice@example.com to 2/1h for 1h"), "{said}");
    let said = admin(&t, &["raise", "alice@example.com", "--cancel"]);
    assert!(said.contains("cancelled the raise of alice@example.com (2/1h)"), "{said}");
    let said = admin(&t, &["raise", "alice@example.com", "100/1d", "20/1h", "--for", "2h"]);
    assert!(said.contains("raised alice@example.com to 100/1d 20/1h"), "{said}");
    assert_eq!(t.d.send("alice@example.com", 2), "DUNNO");
    let status: serde_json::Value =
        serde_json::from_str(&admin(&t, &["status", "--json", "alice@example.com"])).expect("JSON");
    assert_eq!(status["raise"], serde_json::json!(["100/1d", "20/1h"]));
    let ttl = match redis.cmd(&["TTL", "erl:raise:alice@example.com"]) {
        redis::Value::Int(t) => t,
        other => panic!("{other:?}"),
    };
    assert!(ttl > 7100 && ttl <= 7200, "{ttl}");

    // reset clears the current windows' counters of the sender.
    let said = admin(&t, &["reset", "alice@example.com"]);
    assert!(
        said.contains("today's counter was 5")
            && said.contains("erl:2026-11-22T1800/1h:alice@example.com was 5"),
        "{said}"
    );
    assert_eq!(
        (
            redis.get("erl:2026-11-22:alice@example.com"),
            redis.get("erl:2026-11-22T1800/1h:alice@example.com")
        ),
        (None, None)
    );
    assert_eq!(redis.get("erl:2026-11-22:global"), Some(17), "only the sender's own counters");
}
