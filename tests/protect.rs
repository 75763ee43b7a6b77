//! Stolen accounts against a real redis-server: client addresses per sender and day, suspects,
//! automatic locks (by addresses and by refusals), admin locks, on every daemon sharing the
//! Redis, and `unlock`.

mod common;

use std::time::Duration;

use common::{
    Daemon, Redis, defer_global, defer_locked, defer_user, eom_from, redis_daemon, request, today, wait_for,
};

const EVE: &str = "eve@example.com";

fn kinds(redis: &Redis) -> Vec<String> {
    redis.violations().iter().map(|v| v["type"].as_str().unwrap_or_default().to_owned()).collect()
}

fn locks(d: &Daemon) -> serde_json::Value {
    let (ok, out) = d.admin(&["locks", "--json"]);
    assert!(ok, "{out}");
    serde_json::from_str(&out).expect("locks --json is JSON")
}

#[test]
fn a_sender_from_too_many_addresses_is_locked_on_every_server_until_unlocked() {
    let Some(redis) = Redis::start() else { return };
    let protect = "[protect]\nmax_client_ips = 3\nlock = true\n";
    let mx1 = redis_daemon(&redis, &format!("server_name = \"mx1\"\n{protect}"));
    let mx2 = redis_daemon(&redis, &format!("server_name = \"mx2\"\n{protect}"));
    // Webmail: every message from 127.0.0.1 is one address, however many.
    for _ in 0..10 {
        assert_eq!(mx1.connect().ask(&eom_from(EVE, 1, "127.0.0.1")), "DUNNO");
    }
    for ip in ["192.0.2.1", "192.0.2.2"] {
        assert_eq!(mx2.connect().ask(&eom_from(EVE, 1, ip)), "DUNNO");
    }
    // The 4th address: a suspect, locked; this very message is deferred and not counted.
    assert_eq!(mx1.connect().ask(&eom_from(EVE, 1, "198.51.100.4")), defer_locked(EVE));
    assert_eq!(redis.get(&common::key(EVE)), Some(12));
    for d in [&mx1, &mx2] {
        assert_eq!(d.connect().ask(&eom_from(EVE, 1, "127.0.0.1")), defer_locked(EVE), "a known address too");
        assert_eq!(d.connect().ask(&request("RCPT", EVE, 0)), defer_locked(EVE), "at RCPT too");
    }
    assert_eq!(mx2.connect().ask(&eom_from("bob@example.com", 1, "198.51.100.4")), "DUNNO", "others send");
    assert_eq!(redis.get(&common::key(EVE)), Some(12), "nothing counted while locked");
    // Recorded once each; the locked refusals are logged, not pushed.
    assert_eq!(kinds(&redis), ["locked", "suspect"]);
    let v = redis.violations();
    assert_eq!(
        (v[1]["count"].as_u64(), v[1]["limit"].as_u64(), v[1]["server"].as_str()),
        (Some(4), Some(3), Some("mx1"))
    );
    mx1.wait_log("erl suspect user=eve@example.com client_ips=4 max_client_ips=3 client=198.51.100.4", 1);
    mx1.wait_log("erl lock user=eve@example.com by=auto reason=\"4 client addresses today\"", 1);
    mx2.wait_log("erl DEFER user=eve@example.com rcpt=1 cap=locked by=auto", 1);
    let listed = locks(&mx2);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(
        (listed[0]["user"].as_str(), listed[0]["by"].as_str(), listed[0]["reason"].as_str()),
        (Some(EVE), Some("auto"), Some("4 client addresses today"))
    );
    let (_, status) = mx1.admin(&["status", EVE]);
    assert!(status.contains("locked:      yes, locked "), "{status}");
    assert!(
        status.contains("addresses:   4 SMTP client addresses today (protect.max_client_ips = 3)"),
        "{status}"
    );

    let (ok, out) = mx2.admin(&["unlock", EVE]);
    assert!(ok && out.starts_with("unlocked eve@example.com (locked "), "{out}");
    assert_eq!(locks(&mx1), serde_json::json!([]));
    assert_eq!(
        redis.cmd(&["EXISTS", &format!("erl:ips:{}:{EVE}", today())]),
        redis::Value::Int(0),
        "addresses forgotten"
    );
    // Sending again; locked again only after 3 more new addresses.
    for ip in ["198.51.100.4", "192.0.2.1", "192.0.2.2"] {
        assert_eq!(mx1.connect().ask(&eom_from(EVE, 1, ip)), "DUNNO");
    }
    assert_eq!(mx2.connect().ask(&eom_from(EVE, 1, "203.0.113.9")), defer_locked(EVE));
    assert_eq!(
        kinds(&redis),
        ["locked", "admin", "locked", "suspect"],
        "a suspect is recorded once a day, a lock each time; the unlock is the admin's record"
    );
}

#[test]
fn a_sender_refused_more_than_lock_after_refusals_is_locked() {
    let Some(redis) = Redis::start() else { return };
    let bob = "bob@example.com";
    let d = redis_daemon(
        &redis,
        &format!(
            "[limits]\n[[limits.mailbox]]\nemail = \"{bob}\"\ndaily = 2\n[protect]\nlock = true\nlock_after_refusals = 2\n"
        ),
    );
    assert_eq!(d.send(bob, 1), "DUNNO");
    assert_eq!(d.send(bob, 1), "DUNNO");
    for _ in 0..2 {
        assert_eq!(d.send(bob, 1), defer_user(bob, 2));
    }
    assert_eq!(d.send(bob, 1), defer_user(bob, 2), "the refusal that trips the lock gets the cap's text");
    for _ in 0..5 {
        assert_eq!(d.send(bob, 1), defer_locked(bob));
    }
    assert_eq!(kinds(&redis), ["locked", "user", "user", "user"]);
    assert_eq!(locks(&d)[0]["reason"].as_str(), Some("refused 3 times today"));
    assert_eq!(redis.get(&format!("erl:refusals:{}:{bob}", today())), Some(3));
    let ttl = redis.cmd(&["TTL", &format!("erl:refusals:{}:{bob}", today())]);
    assert!(matches!(ttl, redis::Value::Int(t) if t > 25 * 3600), "{ttl:?}");
    let (ok, _) = d.admin(&["unlock", bob]);
    assert!(ok);
    assert_eq!(d.send(bob, 1), defer_user(bob, 2), "unlocked: the cap again, and refusals start over");
    assert_eq!(d.send(bob, 1), defer_user(bob, 2));
}

#[test]
fn admin_locks_hold_exempt_senders_too_expire_and_are_listed_exactly() {
    let Some(redis) = Redis::start() else { return };
    let (carol, dave) = ("carol@example.com", "dave@example.com");
    let d = redis_daemon(
        &redis,
        &format!(
            "[limits]\n[[limits.mailbox]]\nemail = \"{dave}\"\nexempt = true\n[protect]\nmax_client_ips = 2\nlock = true\n"
        ),
    );
    // Exempt: a suspect, never locked automatically.
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"] {
        assert_eq!(d.connect().ask(&eom_from(dave, 1, ip)), "DUNNO");
    }
    assert_eq!(kinds(&redis), ["suspect"]);
    let (ok, out) = d.admin(&["lock", carol, "--reason", "phishing", "--for", "2s"]);
    assert!(ok && out.contains("locked carol@example.com for 2s"), "{out}");
    let (ok, out) = d.admin(&["lock", dave]);
    assert!(ok, "{out}");
    assert_eq!(d.send(carol, 1), defer_locked(carol));
    assert_eq!(d.send(dave, 1), defer_locked(dave), "an admin lock holds an exempt sender");
    let listed = locks(&d);
    let users: Vec<&str> =
        listed.as_array().expect("list").iter().filter_map(|l| l["user"].as_str()).collect();
    assert_eq!(users, [carol, dave]);
    assert_eq!((listed[0]["by"].as_str(), listed[0]["reason"].as_str()), (Some("admin"), Some("phishing")));
    assert!(listed[0]["ts"].as_i64().is_some_and(|t| t > 1_700_000_000));
    // --for 2s: the lock goes by itself.
    wait_for("carol's lock to expire", Duration::from_secs(10), || {
        (d.send(carol, 1) == "DUNNO").then_some(())
    });
    let users: Vec<String> = locks(&d)
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|l| l["user"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(users, [dave]);
    let (ok, out) = d.admin(&["lock", "not an address"]);
    assert!(!ok && out.contains("invalid user"), "{out}");
}

#[test]
fn log_only_mode_detects_but_never_locks() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "mode = \"log-only\"\n[protect]\nmax_client_ips = 1\nlock = true\n");
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(d.connect().ask(&eom_from(EVE, 1, ip)), "DUNNO");
    }
    assert_eq!(kinds(&redis), ["suspect"]);
    assert_eq!(locks(&d), serde_json::json!([]));
    d.wait_log("protect.lock = true in log-only mode", 1);
    let (ok, _) = d.admin(&["lock", EVE]);
    assert!(ok);
    assert_eq!(d.send(EVE, 1), "DUNNO");
    d.wait_log("erl DEFER (log-only) user=eve@example.com", 1);
    assert!(d.log().contains("cap=locked"), "{}", d.log());
}

/// Issue 20 item 1: a full server (or domain) cap refuses everyone; only the sender's own
/// mailbox caps may count toward its lock.
#[test]
fn a_full_server_or_domain_cap_never_locks_bystanders() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(
        &redis,
        "[limits]\nglobal = 10\n[[limits.domain]]\ndomain = \"shop.example\"\ndaily = 3\n\
         [protect]\nlock = true\nlock_after_refusals = 3\n",
    );
    assert_eq!(d.send("big@example.com", 10), "DUNNO");
    for user in ["alice@example.com", "bob@example.com"] {
        for _ in 0..6 {
            assert_eq!(d.send(user, 1), defer_global(user, 10), "{user}");
        }
        assert_eq!(redis.cmd(&["EXISTS", &format!("erl:lock:{user}")]), redis::Value::Int(0), "{user}");
        assert_eq!(redis.get(&format!("erl:refusals:{}:{user}", today())), None);
    }
    // A domain cap: the same.
    let d2 = redis_daemon(
        &redis,
        "[limits]\nglobal = 1000\n[[limits.domain]]\ndomain = \"shop.example\"\ndaily = 3\n\
         [protect]\nlock = true\nlock_after_refusals = 3\n",
    );
    assert_eq!(d2.send("owner@shop.example", 3), "DUNNO");
    for _ in 0..6 {
        assert_eq!(
            d2.send("clerk@shop.example", 1),
            "DEFER_IF_PERMIT clerk@shop.example: Daily limit of 3 recipients for shop.example reached"
        );
    }
    assert_eq!(redis.cmd(&["EXISTS", "erl:lock:clerk@shop.example"]), redis::Value::Int(0));
    assert_eq!(locks(&d2), serde_json::json!([]));
}

/// Issue 20 item 2: a client retrying one refused message is one refusal a day and one record.
#[test]
fn a_client_retrying_one_message_is_one_refusal() {
    let Some(redis) = Redis::start() else { return };
    let carol = "carol@example.com";
    let d = redis_daemon(
        &redis,
        &format!(
            "[limits]\n[[limits.mailbox]]\nemail = \"{carol}\"\ndaily = 2\n[protect]\nlock = true\nlock_after_refusals = 3\n"
        ),
    );
    assert_eq!(d.send(carol, 2), "DUNNO");
    // Outlook's outbox: the same message, a new SMTP transaction each time.
    for retry in 0..8 {
        let again = common::message("END-OF-MESSAGE", carol, 1, &format!("r{retry}.1"), 4711);
        assert_eq!(d.connect().ask(&again), defer_user(carol, 2), "retry {retry}");
    }
    assert_eq!(kinds(&redis), ["user"], "recorded once");
    assert_eq!(redis.get(&format!("erl:refusals:{}:{carol}", today())), Some(1));
    let fp = format!("erl:fp:{}:{carol}", today());
    let ttl = redis.cmd(&["TTL", &fp]);
    assert!(matches!(ttl, redis::Value::Int(t) if t > 3600 && t <= 25 * 3600 + 3600), "{ttl:?}");
    // Three new messages more than the threshold: now it is locked.
    for _ in 0..3 {
        assert_eq!(d.send(carol, 1), defer_user(carol, 2));
    }
    assert_eq!(d.send(carol, 1), defer_locked(carol));
    assert_eq!(kinds(&redis), ["locked", "user", "user", "user", "user"]);
}

/// Issue 20 item 3: RCPT pre-checks never count, nor toward a lock; DATA and END-OF-MESSAGE of
/// one transaction are one message. (Issue 32 item 2: the window's first refusal at RCPT is
/// recorded, once.)
#[test]
fn rcpt_prechecks_and_both_end_of_data_hooks_are_one_refusal() {
    let Some(redis) = Redis::start() else { return };
    let dan = "dan@example.com";
    let d = redis_daemon(
        &redis,
        &format!(
            "[limits]\n[[limits.mailbox]]\nemail = \"{dan}\"\ndaily = 5\n[protect]\nlock = true\nlock_after_refusals = 1\n"
        ),
    );
    assert_eq!(d.send(dan, 5), "DUNNO");
    // One message to 4 recipients: 4 RCPT pre-checks, refused each time.
    let mut conn = d.connect();
    for _ in 0..4 {
        assert_eq!(conn.ask(&common::message("RCPT", dan, 0, "t1.1", 0)), defer_user(dan, 5));
    }
    assert_eq!(kinds(&redis), ["user"], "RCPT records the window's first refusal only");
    assert_eq!(redis.get(&format!("erl:refusals:{}:{dan}", today())), None, "RCPT counts nothing");
    // DATA (size from MAIL FROM) and END-OF-MESSAGE (the real size) of one transaction.
    assert_eq!(conn.ask(&common::message("DATA", dan, 4, "t2.1", 0)), defer_user(dan, 5));
    assert_eq!(conn.ask(&common::message("END-OF-MESSAGE", dan, 4, "t2.1", 9000)), defer_user(dan, 5));
    assert_eq!(kinds(&redis), ["user", "user"]);
    assert_eq!(redis.get(&format!("erl:refusals:{}:{dan}", today())), Some(1), "one message, not above 1");
    assert_eq!(d.send(dan, 1), defer_user(dan, 5), "the second message trips the lock");
    assert_eq!(d.send(dan, 1), defer_locked(dan));
}

/// Issue 20 item 4: a message with more recipients than a cap allows can never be accepted: it
/// is rejected (or deferred, `oversize = "defer"`) with its own text, recorded once, never
/// counted toward a lock and not notified.
#[test]
fn a_message_that_can_never_fit_is_rejected_once_and_never_locks() {
    let Some(redis) = Redis::start() else { return };
    let erin = "erin@example.com";
    let config = |oversize: &str| {
        format!(
            "[limits]\nglobal = 100\noversize = \"{oversize}\"\n[[limits.mailbox]]\nemail = \"{erin}\"\ndaily = 50\n\
             [protect]\nlock = true\nlock_after_refusals = 1\n"
        )
    };
    let d = redis_daemon(&redis, &config("reject"));
    let reject =
        format!("REJECT {erin}: This message has 60 recipients, more than your daily limit of 50 allows");
    for retry in 0..3 {
        let again = common::message("END-OF-MESSAGE", erin, 60, &format!("o{retry}.1"), 777);
        assert_eq!(d.connect().ask(&again), reject);
    }
    for _ in 0..3 {
        assert_eq!(d.send(erin, 60), reject, "other oversize messages");
    }
    assert_eq!(
        d.send(erin, 120),
        format!("REJECT {erin}: This message has 120 recipients, more than your daily limit of 50 allows"),
        "the first cap in order that it exceeds"
    );
    assert_eq!(
        d.send("zoe@example.com", 101),
        "REJECT zoe@example.com: This message has 101 recipients, more than the global daily limit of 100 allows"
    );
    let v = redis.violations();
    assert_eq!(v.len(), 6, "once per message: {v:?}");
    assert!(v.iter().all(|v| v["oversize"] == serde_json::json!(true)), "{v:?}");
    assert_eq!(redis.get(&format!("erl:refusals:{}:{erin}", today())), None, "never toward a lock");
    assert_eq!(redis.get(&common::key(erin)), None, "nothing counted");
    assert_eq!(d.send(erin, 50), "DUNNO", "the whole cap is still there");
    d.wait_log("erl REJECT user=erin@example.com rcpt=60", 1);
    assert!(d.log().contains("reason=oversize"), "{}", d.log());
    assert_eq!(redis.cmd(&["KEYS", "erl:once:*"]), redis::Value::Array(vec![]), "not notified");
    let deferring = redis_daemon(&redis, &config("defer"));
    assert_eq!(
        deferring.send(erin, 51),
        format!(
            "DEFER_IF_PERMIT {erin}: This message has 51 recipients, more than your daily limit of 50 allows"
        )
    );
}

/// Issue 21 item 4 (DESIGN v3): `unlock` of a sender that is not locked exits 1 and changes
/// nothing (it used to forget the sender's client addresses and refusals all the same).
#[test]
fn unlocking_a_sender_that_is_not_locked_fails_and_changes_nothing() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[protect]\nmax_client_ips = 5\n");
    for ip in ["192.0.2.1", "192.0.2.2"] {
        assert_eq!(d.connect().ask(&eom_from(EVE, 1, ip)), "DUNNO");
    }
    let ips = format!("erl:ips:{}:{EVE}", today());
    let (ok, out) = d.admin(&["unlock", EVE]);
    assert!(!ok && out.contains("eve@example.com is not locked; nothing changed"), "{out}");
    assert_eq!(redis.cmd(&["EXISTS", &ips]), redis::Value::Int(1), "its addresses are kept");
    let (ok, _) = d.admin(&["lock", EVE]);
    assert!(ok);
    let (ok, out) = d.admin(&["unlock", EVE]);
    assert!(ok && out.starts_with("unlocked eve@example.com"), "{out}");
    assert_eq!(redis.cmd(&["EXISTS", &ips]), redis::Value::Int(0), "a real unlock forgets them");
}

/// Issue 21 item 11 (part): `violations --user U` (an address or `@domain`) and `--since
/// DURATION` filter the list; `--limit` counts the matches.
#[test]
fn violations_filter_by_user_domain_and_age() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(
        &redis,
        "[limits]\n[[limits.domain]]\ndomain = \"shop.example\"\nmailbox_daily = 1\n\
         [[limits.domain]]\ndomain = \"example.com\"\nmailbox_daily = 1\n",
    );
    for user in ["a@shop.example", "b@shop.example", "carl@example.com"] {
        assert_eq!(d.send(user, 1), "DUNNO");
        for _ in 0..2 {
            assert_eq!(d.send(user, 1), defer_user(user, 1));
        }
    }
    // A record from long ago, as an older server would have pushed it.
    let old = r#"{"ts":1000,"type":"user","user":"carl@example.com","limit":1,"count":1,"rcpt":1,"ip":"","enforced":true}"#;
    redis.cmd(&["RPUSH", "erl:violations", old]);
    let users = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["violations", "--json"];
        all.extend_from_slice(args);
        let (ok, out) = d.admin(&all);
        assert!(ok, "{out}");
        out.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("JSON")["user"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(users(&["--user", "Carl@Example.com"]), ["carl@example.com"; 3]);
    assert_eq!(users(&["--user", "carl@example.com", "--since", "1h"]), ["carl@example.com"; 2]);
    assert_eq!(
        users(&["--user", "@shop.example", "--limit", "3"]),
        ["b@shop.example", "b@shop.example", "a@shop.example"]
    );
    assert_eq!(users(&["--since", "2d"]).len(), 6);
    assert_eq!(users(&[]).len(), 7);
    let (ok, out) = d.admin(&["violations", "--since", "soon"]);
    assert!(!ok && out.contains("is not a duration"), "{out}");
}
