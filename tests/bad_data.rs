//! Hostile input and corrupted Redis data against the real daemon and a real `redis-server`:
//! odd recipient counts are counted, a bad key fails open only the requests that touch it
//! (nothing half-applied, the breaker stays closed for everyone else, the key named once), and
//! counters written without a TTL get one.

mod common;

use common::*;

/// An END-OF-MESSAGE request with `recipient_count` set to exactly `raw`.
fn eom_raw(user: &str, raw: &str) -> String {
    eom(user, 1).replace("recipient_count=1\n", &format!("recipient_count={raw}\n"))
}

const ALICE_5: &str = "[[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 5\n";

fn ttl(redis: &Redis, key: &str) -> i64 {
    match redis.cmd(&["TTL", key]) {
        redis::Value::Int(t) => t,
        other => panic!("TTL {key}: {other:?}"),
    }
}

#[test]
fn a_wrong_typed_violations_list_fails_open_only_who_needs_it() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, ALICE_5);
    assert_eq!(d.send("alice@example.com", 3), "DUNNO");
    redis.cmd(&["SET", "erl:violations", "x"]);
    // Over the cap: the violation cannot be pushed, so nothing at all is written.
    for _ in 0..3 {
        assert_eq!(d.send("alice@example.com", 3), "DUNNO", "fails open");
    }
    assert_eq!(
        (redis.get(&key("alice@example.com")), redis.get(&global())),
        (Some(3), Some(3)),
        "nothing half-applied"
    );
    // Everyone else is served and counted at once: the breaker did not open.
    assert_eq!(d.send("bob@example.com", 2), "DUNNO");
    assert_eq!((redis.get(&key("bob@example.com")), redis.get(&global())), (Some(2), Some(5)));
    assert_eq!(d.send("alice@example.com", 2), "DUNNO", "a message that fits needs no violation");
    assert_eq!(redis.get(&key("alice@example.com")), Some(5));
    d.wait_log("erl fail-open reason=bad-data key=erl:violations", 1);
    assert_eq!(
        d.log().matches("reason=bad-data key=erl:violations").count(),
        1,
        "named once a minute:\n{}",
        d.log()
    );
    assert!(!d.log().contains("redis link down"), "{}", d.log());
    // Fixed by the admin: enforcing again, without a restart.
    redis.cmd(&["DEL", "erl:violations"]);
    assert_eq!(d.send("alice@example.com", 1), defer_user("alice@example.com", 5));
    assert_eq!(redis.violations().len(), 1);
}

#[test]
fn a_counter_that_is_not_a_count_fails_open_that_sender_alone() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[limits]\nglobal = 100\n");
    for (user, value) in [
        ("neg@example.com", "-5"),
        ("frac@example.com", "1.5"),
        ("zero@example.com", "007"),
        ("text@example.com", "abc"),
        ("huge@example.com", "99999999999999999999"),
    ] {
        redis.cmd(&["SET", &key(user), value]);
        assert_eq!(d.send(user, 1), "DUNNO", "{user}");
        d.wait_log(&format!("erl fail-open reason=bad-data key={}", key(user)), 1);
        assert_eq!(
            redis.cmd(&["GET", &key(user)]),
            redis::Value::BulkString(value.as_bytes().to_vec()),
            "{user} untouched"
        );
        assert_eq!(ttl(&redis, &key(user)), -1, "{user}: not even a TTL written");
    }
    redis.cmd(&["RPUSH", &key("list@example.com"), "1"]);
    assert_eq!(d.send("list@example.com", 1), "DUNNO");
    d.wait_log(&format!("erl fail-open reason=bad-data key={}", key("list@example.com")), 1);
    assert_eq!(redis.get(&global()), None, "none of them reached the global counter");
    assert_eq!(d.send("ok@example.com", 4), "DUNNO");
    assert_eq!((redis.get(&key("ok@example.com")), redis.get(&global())), (Some(4), Some(4)));
    assert!(!d.log().contains("redis link down"), "{}", d.log());
}

#[test]
fn a_bad_global_counter_fails_everyone_open_and_says_so() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[limits]\nglobal = 1\n");
    redis.cmd(&["SET", &global(), "-1"]);
    assert_eq!(d.send("a@example.com", 5), "DUNNO");
    assert_eq!(d.send("b@example.com", 5), "DUNNO");
    d.wait_log(&format!("erl fail-open reason=bad-data key={}", global()), 1);
    assert_eq!((redis.get(&key("a@example.com")), redis.get(&key("b@example.com"))), (None, None));
}

#[test]
fn counters_written_without_a_ttl_get_one() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, ALICE_5);
    // Written by the panel or a restore, without a TTL: they would live forever.
    redis.cmd(&["SET", &key("alice@example.com"), "2"]);
    redis.cmd(&["SET", &global(), "2"]);
    redis.cmd(&["SET", &key("carol@example.com"), "5"]);
    assert_eq!(d.send("alice@example.com", 1), "DUNNO");
    for k in [key("alice@example.com"), global()] {
        let t = ttl(&redis, &k);
        assert!(t > 25 * 3600 && t <= 26 * 3600, "{k}: TTL {t}");
    }
    assert_eq!(redis.get(&key("alice@example.com")), Some(3));
    // Refused or only pre-checked: still repaired.
    redis.cmd(&["PERSIST", &key("alice@example.com")]);
    redis.cmd(&["SET", &key("alice@example.com"), "5"]);
    assert_eq!(d.send("alice@example.com", 1), defer_user("alice@example.com", 5));
    assert!(ttl(&redis, &key("alice@example.com")) > 25 * 3600);
    assert_eq!(d.connect().ask(&request("RCPT", "carol@example.com", 0)), "DUNNO");
    assert!(ttl(&redis, &key("carol@example.com")) > 25 * 3600);
    // An existing TTL is left as it is.
    redis.cmd(&["EXPIRE", &global(), "100"]);
    assert_eq!(d.send("dave@example.com", 1), "DUNNO");
    assert!(ttl(&redis, &global()) <= 100);
}

#[test]
fn odd_recipient_counts_are_counted_and_huge_ones_capped() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "mode = \"log-only\"\n[limits]\nglobal = 100000\n");
    let mut conn = d.connect();
    for raw in ["", "0", "abc", "-5", "1.5", "+3"] {
        assert_eq!(conn.ask(&eom_raw("odd@example.com", raw)), "DUNNO", "{raw:?}");
    }
    assert_eq!(redis.get(&key("odd@example.com")), Some(6), "each counted once");
    let missing = eom("odd@example.com", 1).replace("recipient_count=1\n", "");
    assert_eq!(conn.ask(&missing), "DUNNO");
    assert_eq!(redis.get(&key("odd@example.com")), Some(7));
    // Log-only used to count 4,000,000,000 here, which blocked everyone after a switch to enforce.
    for raw in ["4000000000", "99999999999999999999999999"] {
        assert_eq!(conn.ask(&eom_raw("huge@example.com", raw)), "DUNNO");
    }
    assert_eq!(redis.get(&key("huge@example.com")), Some(20_000), "counted as max_recipients");
    d.wait_log("erl clamp user=huge@example.com recipient_count=4000000000 counted=10000", 1);
    // A name holding `:` could address other keys: not counted.
    assert_eq!(d.send("lock:huge@example.com", 3), "DUNNO");
    assert_eq!(redis.get(&global()), Some(20_007));
}

#[test]
fn bad_lock_or_address_keys_fail_open_their_sender_alone() {
    let Some(redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "[protect]\nmax_client_ips = 2\nlock = true\n");
    let day = today();
    // A lock key of the wrong type, and an address set that is not a HyperLogLog.
    redis.cmd(&["RPUSH", "erl:lock:mallory@example.com", "x"]);
    redis.cmd(&["SET", &format!("erl:ips:{day}:trent@example.com"), "not a hyperloglog"]);
    for user in ["mallory@example.com", "trent@example.com"] {
        assert_eq!(d.send(user, 1), "DUNNO", "{user} fails open");
        assert_eq!(redis.get(&key(user)), None, "nothing half-applied for {user}");
    }
    d.wait_log("erl fail-open reason=bad-data key=erl:lock:mallory@example.com", 1);
    d.wait_log(&format!("erl fail-open reason=bad-data key=erl:ips:{day}:trent@example.com"), 1);
    assert_eq!(d.send("peggy@example.com", 1), "DUNNO");
    assert_eq!(redis.get(&key("peggy@example.com")), Some(1), "others are counted");
    // A violations list of the wrong type: a suspect is still locked, only its record is lost.
    redis.cmd(&["SET", "erl:violations", "x"]);
    for ip in ["192.0.2.1", "192.0.2.2"] {
        assert_eq!(d.connect().ask(&eom_from("eve@example.com", 1, ip)), "DUNNO");
    }
    assert_eq!(
        d.connect().ask(&eom_from("eve@example.com", 1, "192.0.2.3")),
        defer_locked("eve@example.com")
    );
    assert!(!d.log().contains("redis link down"), "{}", d.log());
}
