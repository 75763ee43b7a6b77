//! The memory store, step by step as `consume.lua` (the Redis side: tests/stores_agree.rs).
use chrono::{TimeZone, Utc};

use super::*;
use crate::caps::{Check, Counter, Scope};
use crate::clock::Zone;
use crate::sender::{Mailbox, normalize};
use crate::store::{Guard, first_oversize};
use crate::window::Window;

const DAILY: [Counter; 2] =
    [Counter::rcpt(Scope::Mailbox, Window::Day), Counter::rcpt(Scope::Server, Window::Day)];

/// Every message another one unless a test says otherwise.
static MESSAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn ask<'a>(sender: &'a Mailbox, n: u32, caps: &'a [Check]) -> Consume<'a> {
    Consume {
        sender,
        recipients: n,
        counters: &DAILY,
        caps,
        operation: Operation::Count,
        mode: Mode::Enforce,
        client: "192.0.2.1",
        at: Zone::Local.moment(Utc::now()),
        raise: "",
        guard: Guard::default(),
        server: "mx1",
        message: crate::store::Message {
            instance: "",
            fingerprint: MESSAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        },
        oversize: None,
        per_message: None,
        learn: None,
        network: None,
    }
}

impl MemoryStore {
    fn counts(&self, c: &Consume<'_>) -> Counts {
        match self.apply(c) {
            Answer::Counts(counts) => counts,
            other => panic!("{other:?}"),
        }
    }
}

fn caps(mailbox: u64, global: u64) -> [Check; 2] {
    [Check { counter: 0, limit: mailbox }, Check { counter: 1, limit: global }]
}

#[test]
fn counts_exactly_to_the_cap_and_refuses_whole_messages() {
    let store = MemoryStore::new(KeySchema::new("erl"), 10);
    let alice = normalize("alice@example.com").expect("valid");
    let caps = caps(5, 999);
    assert_eq!(store.counts(&ask(&alice, 2, &caps)).refused, None);
    assert_eq!(store.counts(&ask(&alice, 3, &caps)).refused, None);
    let refused = store.counts(&ask(&alice, 1, &caps));
    assert_eq!((refused.refused, refused.before), (Some(0), vec![5, 5]));
    assert!(refused.watch.events.first_refusal, "the first refusal in the window is news");
    assert!(!store.counts(&ask(&alice, 1, &caps)).watch.events.first_refusal, "the second is not");
    let key = KeySchema::new("erl").sender(Zone::Local.moment(Utc::now()).day(), &alice).to_string();
    assert_eq!(store.count(&key), 5);
    let v = store.violations();
    assert_eq!(v.len(), 2, "every refusal is recorded");
    assert_eq!(
        (v[0].kind.as_str(), v[0].limit, v[0].count, v[0].rcpt, v[0].window.as_str(), v[0].server.as_str()),
        ("user", 5, 5, 1, "1d", "mx1")
    );
    assert!(v[0].enforced);
}

#[test]
fn a_sender_from_too_many_addresses_is_a_suspect_then_locked() {
    let store = MemoryStore::new(KeySchema::new("erl"), 10);
    let eve = normalize("eve@example.com").expect("valid");
    let caps = caps(100, 999);
    let from = |ip: &'static str, autolock: bool| {
        let mut c = ask(&eve, 1, &caps);
        c.client = ip;
        c.guard = Guard { max_client_ips: 3, autolock, lock_after_refusals: 0 };
        store.apply(&c)
    };
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"] {
        assert!(
            matches!(from(ip, false), Answer::Counts(c) if c.watch == Watch::default() || c.watch.client_ips > 0)
        );
    }
    let Answer::Counts(fourth) = from("192.0.2.4", false) else { panic!("not locked without autolock") };
    assert!(fourth.watch.events.suspect && fourth.watch.client_ips == 4 && fourth.refused.is_none());
    let Answer::Counts(fifth) = from("192.0.2.5", false) else { panic!("not locked") };
    assert!(!fifth.watch.events.suspect, "a suspect once a day");
    let Answer::Locked(locked) = from("192.0.2.6", true) else { panic!("locked") };
    assert!(locked.events.locked && !locked.events.suspect);
    assert_eq!(locked.lock.map(|l| l.reason), Some(Lock::suspect_reason(6)));
    let Answer::Locked(again) = from("192.0.2.1", true) else { panic!("still locked") };
    assert_eq!(again.events, Events::default(), "locked once");
    let kinds: Vec<String> = store.violations().into_iter().map(|v| v.kind).collect();
    assert_eq!(kinds, ["locked", "suspect"], "newest first; the locked refusals are not recorded");
}

#[test]
fn refusals_past_the_threshold_lock() {
    let store = MemoryStore::new(KeySchema::new("erl"), 10);
    let bot = normalize("bot@example.com").expect("valid");
    let caps = caps(1, 999);
    let send = || {
        let mut c = ask(&bot, 1, &caps);
        c.guard = Guard { max_client_ips: 0, autolock: true, lock_after_refusals: 2 };
        store.apply(&c)
    };
    assert!(matches!(send(), Answer::Counts(c) if c.refused.is_none()));
    for _ in 0..2 {
        assert!(matches!(send(), Answer::Counts(c) if c.refused == Some(0) && !c.watch.events.locked));
    }
    let Answer::Counts(third) = send() else { panic!("the refusal that trips it gets the cap's text") };
    assert!(third.refused == Some(0) && third.watch.events.locked);
    assert_eq!(third.watch.lock.map(|l| l.reason), Some(Lock::refusals_reason(3)));
    assert!(matches!(send(), Answer::Locked(_)), "the next message meets the lock");
}

#[test]
fn only_new_messages_refused_by_the_senders_own_caps_count_toward_a_lock() {
    let store = MemoryStore::new(KeySchema::new("erl"), 100);
    let amy = normalize("amy@example.com").expect("valid");
    let caps = caps(1, 2);
    let guard = Guard { max_client_ips: 0, autolock: true, lock_after_refusals: 2 };
    let send = |fingerprint: u64, instance: &'static str, operation: Operation, n: u32| {
        let mut c = ask(&amy, n, &caps);
        c.guard = guard;
        c.operation = operation;
        c.message = crate::store::Message { instance, fingerprint };
        c.oversize =
            (operation == Operation::Count).then(|| first_oversize(&caps, &DAILY, u64::from(n))).flatten();
        store.apply(&c)
    };
    let refusals = || {
        store.count(&KeySchema::new("erl").refusals(Zone::Local.moment(Utc::now()).day(), &amy).to_string())
    };
    assert!(matches!(send(1, "t1", Operation::Count, 1), Answer::Counts(c) if c.refused.is_none()));
    // One message retried six times in new transactions: one refusal, one record.
    for t in ["t2", "t3", "t4", "t5", "t6", "t7"] {
        assert!(matches!(send(2, t, Operation::Count, 1), Answer::Counts(c) if c.refused == Some(0)));
    }
    assert_eq!((refusals(), store.violations().len()), (1, 1));
    // DATA then END-OF-MESSAGE of one transaction (the size differs): one message.
    send(3, "t8", Operation::Count, 1);
    send(4, "t8", Operation::Count, 1);
    assert_eq!((refusals(), store.violations().len()), (2, 2), "the same transaction");
    // RCPT pre-checks: refused, never recorded or counted.
    for _ in 0..5 {
        assert!(matches!(send(5, "", Operation::Check, 1), Answer::Counts(c) if c.refused == Some(0)));
    }
    assert_eq!((refusals(), store.violations().len()), (2, 2), "RCPT");
    // Oversize (3 recipients, caps 1 and 2): refused by the first such cap, recorded once.
    for t in ["t9", "t10"] {
        let Answer::Counts(c) = send(6, t, Operation::Count, 3) else { panic!("not locked") };
        assert_eq!(c.refused, Some(0));
        assert!(!c.watch.events.first_refusal, "not notified");
    }
    let v = store.violations();
    assert_eq!((refusals(), v.len(), v[0].oversize), (2, 3, true), "oversize never counts toward a lock");
    // The third new message refused by the mailbox cap locks (more than 2).
    let Answer::Counts(third) = send(7, "t11", Operation::Count, 1) else { panic!("the cap's text first") };
    assert!(third.watch.events.locked);
    assert_eq!(third.watch.lock.map(|l| l.reason), Some(Lock::refusals_reason(3)));
}

#[test]
fn a_full_server_cap_never_locks_a_bystander() {
    let store = MemoryStore::new(KeySchema::new("erl"), 100);
    let (big, other) =
        (normalize("big@example.com").expect("valid"), normalize("other@example.com").expect("valid"));
    let caps = caps(100, 10);
    let guard = Guard { max_client_ips: 0, autolock: true, lock_after_refusals: 3 };
    let mut c = ask(&big, 10, &caps);
    c.guard = guard;
    assert!(matches!(store.apply(&c), Answer::Counts(c) if c.refused.is_none()));
    for _ in 0..10 {
        let mut c = ask(&other, 1, &caps);
        c.guard = guard;
        let Answer::Counts(c) = store.apply(&c) else { panic!("never locked") };
        assert_eq!((c.refused, c.watch.events.locked), (Some(1), false));
    }
}

#[test]
fn check_never_counts_and_log_only_always_counts() {
    let store = MemoryStore::new(KeySchema::new("erl"), 2);
    let bob = normalize("bob@example.com").expect("valid");
    let caps = caps(1, 999);
    let mut c = ask(&bob, 1, &caps);
    c.operation = Operation::Check;
    assert_eq!(store.counts(&c).refused, None);
    assert_eq!(store.counts(&c).before[0], 0);
    for _ in 0..3 {
        let mut c = ask(&bob, 3, &caps);
        c.mode = Mode::LogOnly;
        assert_eq!(store.counts(&c).refused, Some(0));
    }
    let mut c = ask(&bob, 3, &caps);
    c.mode = Mode::LogOnly;
    assert_eq!(store.counts(&c).before[0], 9);
    let v = store.violations();
    assert_eq!(v.len(), 2, "trimmed to the cap");
    assert!(!v[0].enforced);
}

#[test]
fn counters_expire_like_redis_keys() {
    let store = MemoryStore::new(KeySchema::new("erl"), 10);
    let carol = normalize("carol@example.com").expect("valid");
    let berlin = Zone::parse("Europe/Berlin").expect("valid");
    let hourly = [Counter::rcpt(Scope::Mailbox, Window::HOUR)];
    let cap = [Check { counter: 0, limit: 2 }];
    let mut c = ask(&carol, 2, &cap);
    c.counters = &hourly;
    // 13:59 and 14:01 in Berlin: a new window, a new key.
    c.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 12, 59, 0).single().expect("valid"));
    assert_eq!(store.counts(&c).refused, None);
    assert_eq!(store.counts(&c).refused, Some(0));
    c.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 13, 1, 0).single().expect("valid"));
    assert_eq!(store.counts(&c).refused, None);
    // A key past its TTL counts as absent, as in Redis.
    let daily = caps(5, 999);
    let mut d = ask(&carol, 4, &daily);
    d.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 22, 59, 0).single().expect("valid"));
    store.counts(&d);
    assert_eq!(store.counts(&d).refused, Some(0));
    d.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 23, 1, 0).single().expect("valid"));
    assert_eq!(store.counts(&d).refused, None, "a new day");
}
