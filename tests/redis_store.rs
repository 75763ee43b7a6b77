//! The daemon binary against a real `redis-server`: counting, caps, violations, concurrency
//! and fail-open when Redis dies, hangs, restarts or loses its script cache.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

const ALICE_5: &str = "[[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 5\n";

#[test]
fn counts_per_recipient_to_the_exact_boundary() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, ALICE_5);
    assert_eq!(d.send("alice@example.com", 2), "DUNNO");
    assert_eq!(redis.get(&key("alice@example.com")), Some(2));
    assert_eq!(d.send("alice@example.com", 3), "DUNNO");
    assert_eq!(redis.get(&key("alice@example.com")), Some(5));
    assert_eq!(d.send("alice@example.com", 1), defer_user("alice@example.com", 5));
    assert_eq!(redis.get(&key("alice@example.com")), Some(5), "a deferral counts nothing");
    assert_eq!(redis.get(&global()), Some(5));
    d.wait_log("erl DEFER user=alice@example.com rcpt=1 mailbox=5/5", 1);
    assert!(d.log().contains(
        "erl ok user=alice@example.com rcpt=3 mailbox=5/5 global=5/999 client=192.0.2.10 queue_id=ABC123"
    ));
}

#[test]
fn a_refused_message_burns_no_quota_and_leaves_a_violation() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, ALICE_5);
    let before = chrono::Utc::now().timestamp();
    assert_eq!(d.send("alice@example.com", 3), "DUNNO");
    assert_eq!(d.send("alice@example.com", 3), defer_user("alice@example.com", 5));
    assert_eq!(redis.get(&key("alice@example.com")), Some(3));
    assert_eq!(redis.get(&global()), Some(3));
    assert_eq!(d.send("alice@example.com", 2), "DUNNO", "the whole message fits exactly");
    assert_eq!(redis.get(&key("alice@example.com")), Some(5));
    assert_eq!(redis.get(&key("@example.com")), Some(5), "the domain's daily counter is always kept");

    let v = redis.violations();
    assert_eq!(v.len(), 1);
    let ts = v[0]["ts"].as_i64().expect("ts is an integer");
    assert!(ts >= before && ts <= chrono::Utc::now().timestamp());
    assert_eq!(
        v[0],
        serde_json::json!({"ts": ts, "type": "user", "user": "alice@example.com", "limit": 5,
                           "count": 3, "rcpt": 3, "ip": "192.0.2.10", "enforced": true, "window": "1d",
                           "server": nix::unistd::gethostname().expect("host name").to_string_lossy()})
    );
}

#[test]
fn global_cap_applies_to_all_senders_together() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[limits]\nglobal = 4\n");
    assert_eq!(d.send("bob@example.com", 3), "DUNNO");
    assert_eq!(d.send("carol@example.com", 2), defer_global("carol@example.com", 4));
    assert_eq!(d.send("carol@example.com", 1), "DUNNO");
    assert_eq!(redis.get(&global()), Some(4));
    assert_eq!(redis.get(&key("bob@example.com")), Some(3), "uncapped senders are counted too");
    assert_eq!(redis.get(&key("carol@example.com")), Some(1));
    let v = redis.violations();
    assert_eq!(
        (v[0]["type"].as_str(), v[0]["limit"].as_u64(), v[0]["count"].as_u64()),
        (Some("global"), Some(4), Some(3))
    );
    assert_eq!(v[0]["user"], "carol@example.com");
}

#[test]
fn the_mailbox_cap_is_checked_before_the_global_cap() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, &format!("[limits]\nglobal = 5\n{ALICE_5}"));
    assert_eq!(d.send("alice@example.com", 5), "DUNNO");
    assert_eq!(d.send("alice@example.com", 1), defer_user("alice@example.com", 5));
}

#[test]
fn counters_get_a_ttl_of_about_26_hours() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "");
    d.send("dave@example.com", 1);
    for k in [key("dave@example.com"), global()] {
        let ttl: i64 = redis::cmd("TTL").arg(&k).query(&mut redis.conn()).expect("TTL");
        assert!((26 * 3600 - 60..=26 * 3600).contains(&ttl), "{k}: ttl {ttl}");
    }
}

#[test]
fn log_only_counts_and_records_without_deferring() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, &format!("mode = \"log-only\"\n{ALICE_5}"));
    assert_eq!(d.send("alice@example.com", 4), "DUNNO");
    assert_eq!(d.send("alice@example.com", 4), "DUNNO");
    assert_eq!(redis.get(&key("alice@example.com")), Some(8));
    let v = redis.violations();
    assert_eq!(v.len(), 1);
    assert_eq!((v[0]["enforced"].as_bool(), v[0]["count"].as_u64()), (Some(false), Some(4)));
    d.wait_log("erl DEFER (log-only) user=alice@example.com rcpt=4 mailbox=8/5", 1);
}

#[test]
fn rcpt_only_prechecks_and_other_stages_pass() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[[limits.mailbox]]\nemail = \"erin@example.com\"\ndaily = 2\n");
    let mut c = d.connect();
    assert_eq!(c.ask(&request("RCPT", "erin@example.com", 0)), "DUNNO");
    assert_eq!(redis.get(&key("erin@example.com")), None, "RCPT never counts");
    assert_eq!(c.ask(&eom("erin@example.com", 2)), "DUNNO");
    assert_eq!(c.ask(&request("RCPT", "erin@example.com", 0)), defer_user("erin@example.com", 2));
    assert_eq!(c.ask(&request("CONNECT", "erin@example.com", 0)), "DUNNO");
    assert_eq!(c.ask(&request("DATA", "erin@example.com", 1)), defer_user("erin@example.com", 2));
    assert_eq!(redis.get(&key("erin@example.com")), Some(2));
}

#[test]
fn unauthenticated_and_junk_usernames_are_not_counted() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[limits]\nglobal = 1\n");
    assert_eq!(d.send("", 5), "DUNNO");
    assert_eq!(d.send("a b@example.com", 5), "DUNNO");
    let long = format!("{}@example.com", "x".repeat(400));
    assert_eq!(d.send(&long, 5), "DUNNO");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut redis.conn()).expect("KEYS");
    assert!(keys.is_empty(), "{keys:?}");
    d.wait_log("erl skip", 2);
}

#[test]
fn usernames_are_normalized_onto_the_stored_address() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[[limits.mailbox]]\nemail = \"jörg@bücher.example\"\ndaily = 3\n");
    assert_eq!(d.send("Jörg@Bücher.Example", 1), "DUNNO");
    assert_eq!(d.send("jörg@xn--bcher-kva.example", 1), "DUNNO");
    assert_eq!(d.send(" JÖRG@BÜCHER.EXAMPLE", 1), "DUNNO");
    assert_eq!(d.send("jörg@bücher.example", 1), defer_user("jörg@xn--bcher-kva.example", 3));
    assert_eq!(redis.get(&key("jörg@xn--bcher-kva.example")), Some(3));
}

/// 64 connections offer 320 one-recipient messages; exactly `cap` may be accepted.
fn hammer(d: &Daemon, user_of: impl Fn(usize) -> String + Sync) -> u64 {
    let accepted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..64 {
            let accepted = &accepted;
            let user = user_of(t);
            let mut c = d.connect();
            s.spawn(move || {
                for _ in 0..5 {
                    if c.ask(&eom(&user, 1)) == "DUNNO" {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    accepted.load(Ordering::Relaxed)
}

#[test]
fn exact_under_concurrency_for_one_sender() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[[limits.mailbox]]\nemail = \"hot@example.com\"\ndaily = 100\n");
    assert_eq!(hammer(&d, |_| "hot@example.com".into()), 100);
    assert_eq!(redis.get(&key("hot@example.com")), Some(100));
    assert_eq!(redis.violations().len(), 220);
}

#[test]
fn exact_under_concurrency_for_the_global_cap() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[limits]\nglobal = 100\n");
    assert_eq!(hammer(&d, |t| format!("user{t}@example.com")), 100);
    assert_eq!(redis.get(&global()), Some(100));
}

#[test]
fn redis_down_at_start_fails_open_then_recovers() {
    let Some(mut redis) = Redis::start() else { return };
    redis.stop();
    let d = redis_daemon(&redis, ALICE_5);
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(d.send("alice@example.com", 10), "DUNNO");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    d.wait_log("erl fail-open reason=", 3);
    redis.restart();
    wait_for("enforcement to come back", Duration::from_secs(5), || {
        (d.send("alice@example.com", 10) != "DUNNO").then_some(())
    });
    assert_eq!(d.send("alice@example.com", 5), "DUNNO");
    assert_eq!(redis.get(&key("alice@example.com")), Some(5));
}

#[test]
fn a_hung_redis_costs_at_most_the_timeout_per_reply() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, &format!("[limits]\nglobal = 100000000\n{ALICE_5}"));
    assert_eq!(d.send("alice@example.com", 1), "DUNNO");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slowest = Arc::new(AtomicU64::new(0));
    let replies = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let (stop, slowest, replies) = (stop.clone(), slowest.clone(), replies.clone());
            let mut c = d.connect();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let action = c.ask(&eom(&format!("load{t}@example.com"), 1));
                    assert_eq!(action, "DUNNO");
                    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    slowest.fetch_max(ms, Ordering::Relaxed);
                    replies.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_for("the workers' first replies", Duration::from_secs(10), || {
        (replies.load(Ordering::Relaxed) >= 100).then_some(())
    });
    redis.pause();
    let during = replies.load(Ordering::Relaxed);
    // Without the circuit breaker each reply would wait the 250 ms timeout: 8 workers could get
    // about 100 replies in 3 s. Failing fast gives many more.
    let hung = wait_for("more than 1000 replies in 3 s while Redis hung", Duration::from_secs(3), || {
        Some(replies.load(Ordering::Relaxed) - during).filter(|&n| n > 1000)
    });
    assert!(hung > 1000, "only {hung} replies in 3 s while Redis hung");
    // While hung, a capped sender is not deferred: fail-open.
    assert_eq!(d.send("alice@example.com", 50), "DUNNO");
    redis.resume();
    let resumed = replies.load(Ordering::Relaxed);
    wait_for("replies after the resume", Duration::from_secs(10), || {
        (replies.load(Ordering::Relaxed) >= resumed + 100).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let slowest = slowest.load(Ordering::Relaxed);
    assert!(slowest < 1000, "slowest reply took {slowest} ms");
    d.wait_log("erl fail-open reason=redis-timeout", 1);
    wait_for("enforcement after resume", Duration::from_secs(5), || {
        (d.send("alice@example.com", 50) != "DUNNO").then_some(())
    });
}

#[test]
fn redis_restart_and_script_flush_reload_the_script() {
    let Some(mut redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, ALICE_5);
    assert_eq!(d.send("alice@example.com", 1), "DUNNO");
    redis.cmd(&["SCRIPT", "FLUSH"]);
    assert_eq!(d.send("alice@example.com", 1), "DUNNO");
    assert_eq!(redis.get(&key("alice@example.com")), Some(2), "counted right after SCRIPT FLUSH");
    // Lines are written in order: once the second decision's is there, a fail-open would be too.
    d.wait_log("erl ok user=alice@example.com", 2);
    assert!(!d.log().contains("fail-open"), "NOSCRIPT is handled without failing open");

    redis.restart();
    wait_for("counting after a Redis restart", Duration::from_secs(5), || {
        d.send("alice@example.com", 1);
        redis.get(&key("alice@example.com"))
    });
    assert_eq!(d.send("alice@example.com", 5), defer_user("alice@example.com", 5));
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let Some(redis) = Redis::start() else { return };
    let mut d = Daemon::start(&format!("[redis]\nurl = \"{}\"\ntimeout_ms = 1500\n", redis.url()));
    // Warm the link, then hang Redis so the next request stays in flight for a while.
    assert_eq!(d.send("drain@example.com", 1), "DUNNO");
    redis.pause();
    let mut c = d.connect();
    c.write(eom("drain@example.com", 1).as_bytes());
    // In flight: the daemon read it and asked Redis, whose socket now holds the unread command.
    wait_for("the request waiting on Redis", Duration::from_secs(10), || {
        received_unread(redis.port).iter().any(|&n| n > 0).then_some(())
    });
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(c.reply(), "DUNNO", "the in-flight request is answered before exit");
    assert!(d.wait_exit(Duration::from_secs(15)).success());
    redis.resume();
}
