//! The decision rule lives in one Rust function (`store::first_full`) mirrored by one Lua
//! function in `consume.lua`: this runs the in-memory store and the Redis store (against a real
//! `redis-server`) on the same sequence of messages, with several scopes, windows and caps,
//! both modes and every operation (a dry run must write nothing at all), across window boundaries, with client addresses and the
//! stolen-account guard (suspects, locks by addresses and by refusals: `protect::is_suspect`,
//! `trips_lock` and `counts_toward_lock`, mirrored in the script too), with retried messages (the
//! same fingerprint or transaction), oversize ones (`store::first_oversize`, which the caller
//! applies for both), message caps beside recipient caps (what a message adds to each counter:
//! `Consume::adds`) and messages over `max_rcpt_per_message`, and requires the same answers, the
//! same counters, the same events and the same violation records.

mod common;

use chrono::{TimeZone, Utc};
use common::Redis;
use email_ratelimit::caps::{Check, Counter, Scope};
use email_ratelimit::clock::Zone;
use email_ratelimit::config::Mode;
use email_ratelimit::sender::normalize;
use email_ratelimit::store::memory::MemoryStore;
use email_ratelimit::store::redis::RedisStore;
use email_ratelimit::store::{
    Answer, Consume, CounterStore, Guard, KeySchema, Message, Operation, Violation, first_oversize,
};
use email_ratelimit::window::{Unit, Window};

/// A small deterministic generator (no seed to manage, the same sequence every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_redis_decide_alike() {
    let Some(redis) = Redis::start_with(&["--enable-debug-command", "yes"]) else { return };
    let config = email_ratelimit::config::from_toml(&format!(
        "[redis]\nurl = \"{}\"\nviolations_max = 500\n",
        redis.url()
    ))
    .expect("config");
    let remote = RedisStore::new(&config.redis).expect("redis store");
    let local = MemoryStore::new(KeySchema::new("erl"), 500);
    let zone = Zone::parse("Europe/Berlin").expect("zone");
    let mut senders: Vec<_> =
        ["a@x.org", "b@x.org", "c@y.org", "d"].iter().map(|s| normalize(s).expect("valid")).collect();
    // Issue 24: a local user (website mail): its own counters only, type "local".
    senders.push(email_ratelimit::sender::Mailbox::local("web12", "mx1"));
    let w = |t: &str| Window::parse(t).expect("window");
    let counter = |scope, window| Counter::rcpt(scope, window);
    let messages = |scope, window| Counter { scope, window, unit: Unit::Msg };
    let mut rng = Lcg(7);
    // a: locked past 3 addresses; b: locked past 6 refusals; c: a suspect past 2, never locked.
    let guards = [
        Guard { max_client_ips: 3, autolock: true, lock_after_refusals: 0 },
        Guard { max_client_ips: 0, autolock: true, lock_after_refusals: 6 },
        Guard { max_client_ips: 2, autolock: false, lock_after_refusals: 0 },
        Guard::default(),
        Guard { max_client_ips: 0, autolock: false, lock_after_refusals: 0 },
    ];
    let clients = ["192.0.2.1", "192.0.2.2", "198.51.100.7", "203.0.113.9", "2001:db8::1", ""];
    let (mut locked, mut suspects, mut firsts, mut peeks) = (0, 0, 0, 0);
    let mut t = Utc.with_ymd_and_hms(2026, 3, 28, 22, 50, 0).single().expect("valid");
    for step in 0..400 {
        let who = usize::try_from(rng.next(5)).expect("small");
        let sender = &senders[who];
        let counters = if sender.is_local() {
            vec![
                counter(Scope::Local, Window::Day),
                counter(Scope::Local, w("1h")),
                messages(Scope::Local, w("1h")),
            ]
        } else {
            let mut counters = vec![counter(Scope::Mailbox, Window::Day), counter(Scope::Mailbox, w("1h"))];
            if sender.domain().is_some() {
                counters.push(counter(Scope::Domain, Window::Day));
                counters.push(counter(Scope::Domain, w("15m")));
            }
            counters.push(counter(Scope::Server, Window::Day));
            counters.push(counter(Scope::Server, w("1m")));
            counters.push(messages(Scope::Mailbox, w("1h")));
            counters.push(messages(Scope::Server, Window::Day));
            counters
        };
        let mut caps = Vec::new();
        for i in 0..counters.len() {
            if rng.next(3) != 0 {
                caps.push(Check { counter: i, limit: 3 + rng.next(25) });
            }
        }
        // Now and then a message that no cap of 3 or more can take.
        let recipients = u32::try_from(if rng.next(25) == 0 { 30 } else { 1 + rng.next(4) }).expect("small");
        // Now and then a dry run (`probe`), as at end of data or at RCPT.
        let operation = match rng.next(8) {
            0 => Operation::Check,
            2 => Operation::Peek,
            _ => Operation::Count,
        };
        let oversize = match operation {
            Operation::Count => first_oversize(&caps, &counters, u64::from(recipients)),
            Operation::Peek if rng.next(2) == 0 => first_oversize(&caps, &counters, u64::from(recipients)),
            Operation::Check | Operation::Peek => None,
        };
        // Now and then a message over `max_rcpt_per_message` (the caller decides, at end of data).
        let per_message = (operation != Operation::Check && rng.next(12) == 0).then_some(2);
        // Mostly with learning on: today marked excluded on the same events in both stores.
        let learn = (rng.next(5) != 0 && !sender.is_local()).then_some(28);
        // With `known_networks`, mostly: the client's network, remembered alike when counted.
        let network = ["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/48"]
            [usize::try_from(rng.next(3)).expect("small")];
        let network = (rng.next(4) != 0).then_some(network);
        // A few fingerprints and transactions, so that retries and repeated transactions happen.
        let instance =
            ["", "t1", "t2", "t3", "t4", "t5", "t6", "t7"][usize::try_from(rng.next(8)).expect("small")];
        let ask = Consume {
            sender,
            recipients,
            counters: &counters,
            caps: &caps,
            operation,
            mode: if rng.next(6) == 0 { Mode::LogOnly } else { Mode::Enforce },
            // Mostly one address; now and then another one (or none).
            client: clients[usize::try_from(if rng.next(4) == 0 { rng.next(6) } else { 0 }).expect("small")],
            at: zone.moment(t),
            raise: "",
            guard: guards[who],
            server: "mx1",
            message: Message { instance, fingerprint: rng.next(12) },
            oversize,
            per_message,
            learn,
            network,
        };
        let digest =
            || -> String { redis::cmd("DEBUG").arg("DIGEST").query(&mut redis.conn()).expect("DIGEST") };
        let before = digest();
        let (a, b) = (local.consume(&ask).await.expect("memory"), remote.consume(&ask).await.expect("redis"));
        assert_eq!(a, b, "step {step}: {ask:?}");
        if operation == Operation::Peek {
            peeks += 1;
            assert_eq!(digest(), before, "step {step}: a dry run wrote to Redis: {ask:?}");
        }
        match &a {
            Answer::Locked(_) => locked += 1,
            Answer::Counts(c) => {
                suspects += usize::from(c.watch.events.suspect);
                firsts += usize::from(c.watch.events.first_refusal);
            }
            Answer::Raised(_) => {}
        }
        // Mostly seconds apart, sometimes a jump across windows (and the DST night of 29 March).
        t += chrono::Duration::seconds(
            i64::try_from(if rng.next(10) == 0 { 600 + rng.next(3600) } else { rng.next(20) })
                .expect("small"),
        );
    }
    let raw: Vec<String> =
        redis::cmd("LRANGE").arg("erl:violations").arg(0).arg(-1).query(&mut redis.conn()).expect("LRANGE");
    let stored: Vec<Violation> = raw.iter().map(|r| serde_json::from_str(r).expect("JSON")).collect();
    assert!(stored.len() > 20, "the sequence refused often enough to compare: {}", stored.len());
    assert_eq!(stored, local.violations());
    // The days excluded from learning, marked alike (the totals are folded later, elsewhere).
    let (mut marked, mut networks) = (0, 0);
    for (sender, history) in local.histories() {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(format!("erl:hist:{sender}"))
            .query(&mut redis.conn())
            .expect("HGETALL");
        let remote = email_ratelimit::store::History::from_fields(
            fields.iter().map(|(f, v)| (f.as_str(), v.as_str())),
        );
        assert_eq!(remote.excluded, history.excluded, "{sender}");
        assert_eq!(remote.networks, history.networks, "{sender}");
        marked += history.excluded.len();
        networks += history.networks.len();
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("erl:hist:*").query(&mut redis.conn()).expect("KEYS");
    assert_eq!(keys.len(), local.histories().len(), "the same senders have a history");
    assert!(marked > 3, "days marked: {marked}");
    assert!(networks > 3, "networks remembered: {networks}");
    assert!(stored.iter().any(|v| v.window != "1d") && stored.iter().any(|v| v.kind == "domain"));
    assert!(stored.iter().any(|v| v.oversize), "no oversize record");
    assert!(stored.iter().any(|v| v.unit.as_deref() == Some("msg")), "no message-cap record");
    assert!(stored.iter().any(|v| v.per_message && v.window == "message"), "no per-message record");
    for kind in ["suspect", "locked", "local"] {
        assert!(stored.iter().any(|v| v.kind == kind), "no {kind} record");
    }
    assert!(
        locked > 10 && suspects > 0 && firsts > 5 && peeks > 20,
        "locked {locked}, suspects {suspects}, first refusals {firsts}, dry runs {peeks}"
    );
}
