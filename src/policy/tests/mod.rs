//! The decision table on the in-memory store, and fail-open on a store that always fails.

use std::sync::Arc;

use chrono::Utc;

use super::*;
use crate::clock::Zone;
use crate::config::{LimitSettings, MailboxEntry};
use crate::protocol::State;
use crate::sender::{self, Mailbox};
use crate::store::KeySchema;
use crate::store::memory::MemoryStore;

fn limits(global: u64, caps: &[(&str, Option<u64>)]) -> Arc<LimitsCache> {
    let mailboxes =
        caps.iter().map(|(e, d)| MailboxEntry::daily(sender::normalize(e).expect("valid"), *d)).collect();
    Arc::new(LimitsCache::new(LimitSettings { global, mailboxes, ..LimitSettings::default() }, None))
}

fn policy(mode: Mode, global: u64, caps: &[(&str, Option<u64>)]) -> Policy<MemoryStore> {
    Policy::new(
        MemoryStore::new(KeySchema::new("erl"), 100),
        limits(global, caps),
        Settings::with_mode(mode),
        Env::default(),
    )
}

fn req(state: State, user: &str, n: u32) -> Request {
    Request {
        protocol_state: state,
        sasl_username: user.into(),
        recipient_count: Some(u64::from(n)),
        client_address: "198.51.100.4".into(),
        queue_id: "Q1".into(),
        ..Request::default()
    }
}

fn eom(user: &str, n: u32) -> Request {
    req(State::EndOfMessage, user, n)
}

fn count(p: &Policy<MemoryStore>, key_user: &str) -> u64 {
    let day = Zone::Local.moment(Utc::now()).day();
    let m: Mailbox = sender::normalize(key_user).expect("valid");
    p.store().count(&KeySchema::new("erl").sender(day, &m).to_string())
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
}

#[test]
fn follows_the_decision_table() {
    let p = policy(Mode::Enforce, 999, &[("alice@example.com", Some(5)), ("bob@example.com", None)]);
    block_on(async {
        assert_eq!(p.decide(&eom("alice@example.com", 2)).await.reply.action, Action::Dunno);
        assert_eq!(p.decide(&eom("alice@example.com", 3)).await.reply.action, Action::Dunno);
        let over = p.decide(&eom("Alice@Example.com", 1)).await.reply.action;
        assert_eq!(
            over,
            Action::DeferIfPermit("alice@example.com: Your daily limit of 5 recipients reached".into())
        );
        assert_eq!(count(&p, "alice@example.com"), 5);
        // Opted in without a number: the default per-mailbox cap.
        for _ in 0..50 {
            assert_eq!(p.decide(&eom("bob@example.com", 1)).await.reply.action, Action::Dunno);
        }
        assert!(matches!(p.decide(&eom("bob@example.com", 1)).await.reply.action, Action::DeferIfPermit(_)));
    });
}

#[test]
fn global_cap_text_and_order() {
    let p = policy(Mode::Enforce, 3, &[("alice@example.com", Some(5))]);
    block_on(async {
        assert_eq!(p.decide(&eom("carol@example.com", 3)).await.reply.action, Action::Dunno);
        assert_eq!(
            p.decide(&eom("alice@example.com", 1)).await.reply.action,
            Action::DeferIfPermit("alice@example.com: Global daily limit of 3 recipients reached".into())
        );
        assert_eq!(count(&p, "carol@example.com"), 3, "uncapped senders are counted");
    });
}

#[test]
fn only_end_of_data_counts_and_rcpt_only_prechecks() {
    let p = policy(Mode::Enforce, 999, &[("a@example.com", Some(1))]);
    block_on(async {
        for state in
            [State::Rcpt, State::Other("CONNECT".into()), State::Other("MAIL".into()), State::Missing]
        {
            assert_eq!(p.decide(&req(state, "a@example.com", 0)).await.reply.action, Action::Dunno);
        }
        assert_eq!(count(&p, "a@example.com"), 0);
        assert_eq!(p.decide(&req(State::Data, "a@example.com", 1)).await.reply.action, Action::Dunno);
        assert_eq!(count(&p, "a@example.com"), 1);
        assert!(matches!(
            p.decide(&req(State::Rcpt, "a@example.com", 0)).await.reply.action,
            Action::DeferIfPermit(_)
        ));
        assert_eq!(count(&p, "a@example.com"), 1, "a refused pre-check counts nothing");
    });
}

#[test]
fn unauthenticated_malformed_and_junk_pass_uncounted() {
    let p = policy(Mode::Enforce, 1, &[]);
    block_on(async {
        assert_eq!(p.decide(&eom("", 5)).await.reply.action, Action::Dunno);
        assert_eq!(p.decide(&eom("a b@example.com", 5)).await.reply.action, Action::Dunno);
        let mut bad = eom("x@example.com", 5);
        bad.malformed = Some("line without `=`");
        assert_eq!(p.decide(&bad).await.reply.action, Action::Dunno);
        // Nothing above used the global cap of 1.
        assert_eq!(p.decide(&eom("x@example.com", 1)).await.reply.action, Action::Dunno);
    });
}

#[test]
fn a_missing_count_counts_the_message_once() {
    let p = policy(Mode::Enforce, 999, &[]);
    block_on(async {
        let mut r = eom("m@example.com", 0);
        r.recipient_count = None;
        p.decide(&r).await;
        p.decide(&eom("m@example.com", 0)).await;
        assert_eq!(count(&p, "m@example.com"), 2);
    });
}

#[test]
fn log_only_counts_and_never_defers() {
    let p = policy(Mode::LogOnly, 999, &[("l@example.com", Some(2))]);
    block_on(async {
        for size in ["100", "200", "300", "300"] {
            let mut r = eom("l@example.com", 2);
            r.size = size.into();
            assert_eq!(p.decide(&r).await.reply.action, Action::Dunno);
        }
        assert_eq!(count(&p, "l@example.com"), 8);
        let v = p.store().violations();
        assert_eq!(v.len(), 2, "two would-be refusals of two messages; the retry is not recorded");
        assert!(v.iter().all(|v| !v.enforced));
        p.reconfigure(Settings::with_mode(Mode::Enforce));
        assert!(matches!(p.decide(&eom("l@example.com", 1)).await.reply.action, Action::DeferIfPermit(_)));
    });
}

/// Issue 21 item 2: `enforce_from` switches log-only to enforce at local midnight, no reload.
#[test]
fn log_only_enforces_from_its_enforce_from_date() {
    use chrono::TimeZone;
    let clock = Arc::new(crate::clock::FixedClock::new(
        Utc.with_ymd_and_hms(2026, 12, 2, 22, 59, 0).single().expect("valid"),
    ));
    let zone = Zone::parse("Europe/Berlin").expect("zone");
    let settings = Settings {
        enforce_from: chrono::NaiveDate::from_ymd_opt(2026, 12, 3),
        ..Settings::with_mode(Mode::LogOnly)
    };
    let env = Env { zone, clock: clock.clone(), ..Env::default() };
    let p = Policy::new(
        MemoryStore::new(KeySchema::new("erl"), 100),
        limits(999, &[("m@example.com", Some(1))]),
        settings,
        env,
    );
    block_on(async {
        // 23:59 in Berlin on the 2nd: still log-only.
        assert_eq!(p.decide(&eom("m@example.com", 1)).await.reply.action, Action::Dunno);
        assert_eq!(
            p.decide(&eom("m@example.com", 1)).await.reply.action,
            Action::Dunno,
            "over the cap, log-only"
        );
        assert_eq!(p.mode(), Mode::LogOnly);
        // 00:00 on the 3rd: enforced, a new day (its counter starts at 0).
        clock.set(Utc.with_ymd_and_hms(2026, 12, 2, 23, 0, 0).single().expect("valid"));
        assert_eq!(p.mode(), Mode::Enforce);
        assert_eq!(p.decide(&eom("m@example.com", 1)).await.reply.action, Action::Dunno);
        assert!(matches!(p.decide(&eom("m@example.com", 1)).await.reply.action, Action::DeferIfPermit(_)));
        // Without the date, log-only stays.
        p.reconfigure(Settings::with_mode(Mode::LogOnly));
        assert_eq!(p.decide(&eom("m@example.com", 1)).await.reply.action, Action::Dunno);
    });
}

/// A store that always fails, as Redis does when it is down.
struct Broken;

impl CounterStore for Broken {
    async fn consume(&self, _: &Consume<'_>) -> Result<Answer, StoreError> {
        Err(StoreError::Unavailable)
    }

    async fn hold(&self, _: &crate::store::Held<'_>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
}

#[test]
fn store_faults_fail_open() {
    let p =
        Policy::new(Broken, limits(1, &[("a@example.com", Some(1))]), Settings::default(), Env::default());
    block_on(async {
        assert_eq!(p.decide(&eom("a@example.com", 100)).await.reply.action, Action::Dunno);
        assert_eq!(p.decide(&req(State::Rcpt, "a@example.com", 0)).await.reply.action, Action::Dunno);
    });
}

#[test]
fn recipient_count_rules() {
    assert_eq!(recipients(Some(3), 10_000), (3, false));
    assert_eq!(recipients(None, 10_000), (1, false), "missing or garbage counts once");
    assert_eq!(recipients(Some(0), 10_000), (1, false), "zero counts once");
    assert_eq!(recipients(Some(10_000), 10_000), (10_000, false));
    assert_eq!(recipients(Some(10_001), 10_000), (10_000, true));
    assert_eq!(recipients(Some(4_000_000_000), 10_000), (10_000, true));
    assert_eq!(recipients(Some(u64::MAX), 10_000), (10_000, true));
}

#[test]
fn odd_and_huge_counts_are_counted_not_skipped() {
    // Log-only counted 4,000,000,000 and blocked everyone after a switch to enforce.
    let p = policy(Mode::LogOnly, 50_000, &[]);
    block_on(async {
        let mut r = eom("h@example.com", 0);
        for count in [None, Some(0), Some(4_000_000_000), Some(u64::MAX)] {
            r.recipient_count = count;
            assert_eq!(p.decide(&r).await.reply.action, Action::Dunno);
        }
        assert_eq!(count(&p, "h@example.com"), 1 + 1 + 10_000 + 10_000);
        p.reconfigure(Settings::with_mode(Mode::Enforce));
        assert_eq!(p.decide(&eom("other@example.com", 1)).await.reply.action, Action::Dunno, "29,999 left");
    });
}

#[test]
fn a_name_holding_a_colon_is_not_counted() {
    let p = policy(Mode::Enforce, 1, &[]);
    block_on(async {
        assert_eq!(p.decide(&eom("lock:x@example.com", 5)).await.reply.action, Action::Dunno);
        assert_eq!(
            p.decide(&eom("x@example.com", 1)).await.reply.action,
            Action::Dunno,
            "the global cap of 1 is untouched"
        );
    });
}

#[test]
fn until_the_database_answers_its_caps_count_but_never_defer() {
    let db = crate::config::from_toml("[database]\nurl = \"mysql://erl:pw@127.0.0.1:9/dbispconfig\"")
        .expect("valid")
        .database
        .expect("database");
    let settings = LimitSettings {
        global: 3,
        default_mailbox: 2,
        mailboxes: vec![
            MailboxEntry::daily(sender::normalize("own@example.com").expect("valid"), Some(1)),
            MailboxEntry::daily(sender::normalize("dflt@example.com").expect("valid"), None),
        ],
        ..LimitSettings::default()
    };
    let source = crate::limits::DatabaseSource::new(&db).expect("valid url");
    let cache = Arc::new(LimitsCache::new(settings, Some(source)));
    let p =
        Policy::new(MemoryStore::new(KeySchema::new("erl"), 100), cache, Settings::default(), Env::default());
    block_on(async {
        // The file's global 3 and default 2 would defer these; the database may say otherwise.
        assert_eq!(p.decide(&eom("dflt@example.com", 5)).await.reply.action, Action::Dunno);
        assert_eq!(p.decide(&eom("dflt@example.com", 5)).await.reply.action, Action::Dunno);
        assert_eq!(count(&p, "dflt@example.com"), 10, "counted all the same");
        // A cap only the file defines stays enforced.
        assert_eq!(p.decide(&eom("own@example.com", 1)).await.reply.action, Action::Dunno);
        assert_eq!(
            p.decide(&eom("own@example.com", 1)).await.reply.action,
            Action::DeferIfPermit("own@example.com: Your daily limit of 1 recipient reached".into())
        );
    });
}

#[test]
fn the_memory_store_keeps_windows_on_a_driven_clock() {
    use chrono::TimeZone;

    use crate::clock::FixedClock;
    let config = crate::config::from_toml(
        "[limits]\nglobal_rates = [\"50/15m\"]\n[[limits.mailbox]]\nemail = \"w@example.com\"\nrates = [\"3/1h\"]\n\
         [[limits.domain]]\ndomain = \"example.com\"\nrates = [\"4/1h\"]\n",
    )
    .expect("valid");
    let cache = Arc::new(LimitsCache::new(config.limits, None));
    let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).single().expect("valid");
    let clock = Arc::new(FixedClock::new(at(8, 59)));
    let zone = crate::clock::Zone::parse("UTC").expect("zone");
    let env = Env { zone, clock: clock.clone(), ..Env::default() };
    let p = Policy::new(MemoryStore::new(KeySchema::new("erl"), 100), cache, Settings::default(), env);
    block_on(async {
        assert_eq!(p.decide(&eom("w@example.com", 3)).await.reply.action, Action::Dunno);
        assert_eq!(
            p.decide(&eom("w@example.com", 1)).await.reply.action,
            Action::DeferIfPermit("w@example.com: Your hourly limit of 3 recipients reached".into())
        );
        clock.set(at(9, 0));
        assert_eq!(p.decide(&eom("w@example.com", 2)).await.reply.action, Action::Dunno, "a new hour");
        assert_eq!(
            p.decide(&eom("v@example.com", 3)).await.reply.action,
            Action::DeferIfPermit(
                "v@example.com: Hourly limit of 4 recipients for example.com reached".into()
            )
        );
        assert_eq!(p.store().count("erl:2026-11-22T0900/1h:@example.com"), 2);
        assert_eq!(p.store().count("erl:2026-11-22T0845/15m:global"), 3);
    });
}

mod local;
mod messages;

/// Issue 33: a reload's settings are one snapshot. The mode, `[protect]` and `[replies]` change
/// together between two decisions...
#[test]
fn a_reconfigure_changes_mode_protect_and_replies_together() {
    let p = policy(Mode::LogOnly, 999, &[("r@example.com", Some(1))]);
    let config = crate::config::from_toml(
        "mode = \"enforce\"\n[protect]\nmax_client_ips = 1\nlock = true\n\
         [replies]\nmailbox_1d = \"{user}: over {limit}, call the helpdesk\"\n",
    )
    .expect("valid");
    block_on(async {
        assert_eq!(p.decide(&eom("r@example.com", 1)).await.reply.action, Action::Dunno);
        assert_eq!(p.decide(&eom("r@example.com", 1)).await.reply.action, Action::Dunno, "log-only");
        p.reconfigure(Settings::from(&config));
        assert_eq!(
            p.decide(&eom("r@example.com", 1)).await.reply.action,
            Action::DeferIfPermit("r@example.com: over 1, call the helpdesk".into()),
            "enforced, with the new text"
        );
        let mut elsewhere = eom("s@example.com", 1);
        p.decide(&elsewhere).await;
        elsewhere.client_address = "203.0.113.9".into();
        assert!(
            matches!(p.decide(&elsewhere).await.reply.action, Action::DeferIfPermit(t) if t.contains("suspended")),
            "[protect] locks a second address"
        );
    });
}

/// A store that runs `midway` once, during the first question it is asked.
struct ReloadMidway {
    inner: MemoryStore,
    midway: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl CounterStore for ReloadMidway {
    async fn consume(&self, c: &Consume<'_>) -> Result<Answer, StoreError> {
        let midway = self.midway.lock().expect("lock").take();
        if let Some(f) = midway {
            f();
        }
        self.inner.consume(c).await
    }

    async fn hold(&self, h: &crate::store::Held<'_>) -> Result<(), StoreError> {
        self.inner.hold(h).await
    }
}

/// ...and a request in flight while they change sees the old ones whole: the old mode with the
/// old text, never the old mode with the new text.
#[test]
fn a_request_in_flight_sees_the_settings_it_started_with() {
    let store =
        ReloadMidway { inner: MemoryStore::new(KeySchema::new("erl"), 100), midway: Default::default() };
    let p = Arc::new(Policy::new(
        store,
        limits(999, &[("f@example.com", Some(1))]),
        Settings::with_mode(Mode::Enforce),
        Env::default(),
    ));
    block_on(async {
        assert_eq!(p.decide(&eom("f@example.com", 1)).await.reply.action, Action::Dunno);
        let config = crate::config::from_toml(
            "mode = \"log-only\"\n[replies]\nmailbox_1d = \"{user}: the new text\"\n",
        )
        .expect("valid");
        let weak = Arc::downgrade(&p);
        *p.store().midway.lock().expect("lock") = Some(Box::new(move || {
            if let Some(p) = weak.upgrade() {
                p.reconfigure(Settings::from(&config));
            }
        }));
        assert_eq!(
            p.decide(&eom("f@example.com", 1)).await.reply.action,
            Action::DeferIfPermit("f@example.com: Your daily limit of 1 recipient reached".into()),
            "the settings it started with, whole"
        );
        assert_eq!(p.decide(&eom("f@example.com", 1)).await.reply.action, Action::Dunno, "then the new ones");
    });
}
