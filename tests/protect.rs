//! Stolen accounts against a real redis-server: client addresses per sender and day, suspects,
//! automatic locks (by addresses and by refusals), admin locks, on every daemon sharing the
//! Redis, and `unlock`.

mod common;

use std::time::Duration;

use common::{Daemon, Redis, defer_locked, defer_user, eom_from, redis_daemon, request, today, wait_for};

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
        ["locked", "locked", "suspect"],
        "a suspect is recorded once a day, a lock each time"
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
