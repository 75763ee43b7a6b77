//! Issue 22 item 2 (DESIGN v3 "Message caps and recipients per message"): message caps beside
//! recipient caps, and `max_rcpt_per_message`, through the whole decision on a driven clock.

use chrono::TimeZone;

use super::*;
use crate::clock::FixedClock;

const CONFIG: &str = "[limits]\nmax_rcpt_per_message = 100\n\
    [[limits.mailbox]]\nemail = \"busy@example.com\"\ndaily = 500\nrates = [\"3msg/1h\", \"50/1h\"]\n\
    [[limits.mailbox]]\nemail = \"team@example.com\"\ndaily = 1000\nmax_rcpt_per_message = 0\n\
    [[limits.mailbox]]\nemail = \"vip@example.com\"\nexempt = true\n\
    [[limits.domain]]\ndomain = \"small.example\"\nmax_rcpt_per_message = 5\n";

fn driven(mode: Mode) -> (Policy<MemoryStore>, Arc<FixedClock>) {
    let config = crate::config::from_toml(CONFIG).expect("valid");
    let clock = Arc::new(FixedClock::new(at(9, 10)));
    let zone = crate::clock::Zone::parse("UTC").expect("zone");
    let cache = Arc::new(LimitsCache::new(config.limits, None));
    let env = Env { zone, clock: clock.clone(), ..Env::default() };
    let p = Policy::new(MemoryStore::new(KeySchema::new("erl"), 100), cache, Settings::with_mode(mode), env);
    (p, clock)
}

fn at(h: u32, m: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).single().expect("valid")
}

#[test]
fn a_message_cap_counts_messages_whatever_their_recipients() {
    let (p, clock) = driven(Mode::Enforce);
    block_on(async {
        // 3 messages of 10 recipients: 30 recipients, under 50/1h; the 4th message is one too many.
        for _ in 0..3 {
            assert_eq!(p.decide(&eom("busy@example.com", 10)).await.reply.action, Action::Dunno);
        }
        assert_eq!(
            p.decide(&eom("busy@example.com", 1)).await.reply.action,
            Action::DeferIfPermit("busy@example.com: Your hourly limit of 3 messages reached".into())
        );
        assert_eq!(p.store().count("erl:m:2026-11-22T0900/1h:busy@example.com"), 3);
        assert_eq!(p.store().count("erl:2026-11-22T0900/1h:busy@example.com"), 30);
        let violations = p.store().violations();
        assert_eq!(violations[0].unit.as_deref(), Some("msg"));
        assert_eq!((violations[0].limit, violations[0].count), (3, 3));
        // The recipient cap of the same window is checked first.
        clock.set(at(10, 0));
        assert_eq!(p.decide(&eom("busy@example.com", 50)).await.reply.action, Action::Dunno);
        let deferred = p.decide(&eom("busy@example.com", 2)).await.reply.action;
        assert_eq!(
            deferred,
            Action::DeferIfPermit("busy@example.com: Your hourly limit of 50 recipients reached".into())
        );
        assert_eq!(p.store().violations()[0].unit, None, "a recipient cap has no unit in the record");
        // A refused message burns no quota: one message of the hour so far.
        assert_eq!(p.store().count("erl:m:2026-11-22T1000/1h:busy@example.com"), 1);
    });
}

#[test]
fn a_message_cap_is_never_oversize() {
    let config = crate::config::from_toml(
        "[[limits.mailbox]]\nemail = \"m@example.com\"\nrates = [\"2msg/1h\"]\n[limits]\nglobal = 100000\n",
    )
    .expect("valid");
    let cache = Arc::new(LimitsCache::new(config.limits, None));
    let p =
        Policy::new(MemoryStore::new(KeySchema::new("erl"), 100), cache, Settings::default(), Env::default());
    block_on(async {
        // 40 recipients in one message: one message of the two allowed.
        assert_eq!(p.decide(&eom("m@example.com", 40)).await.reply.action, Action::Dunno);
        assert_eq!(p.decide(&eom("m@example.com", 40)).await.reply.action, Action::Dunno);
        assert!(matches!(p.decide(&eom("m@example.com", 1)).await.reply.action, Action::DeferIfPermit(_)));
    });
}

#[test]
fn too_many_recipients_for_one_message_are_rejected_before_any_cap() {
    let (p, _) = driven(Mode::Enforce);
    block_on(async {
        let reject =
            |user: &str, n: u64| Action::Reject(format!("{user}: At most {n} recipients per message"));
        assert_eq!(
            p.decide(&eom("anyone@example.org", 101)).await.reply.action,
            reject("anyone@example.org", 100)
        );
        assert_eq!(
            p.decide(&eom("anyone@example.org", 100)).await.reply.action,
            Action::Dunno,
            "exactly the limit"
        );
        // The domain's own setting, then the mailbox's own (0 = off), then exempt.
        assert_eq!(p.decide(&eom("x@small.example", 6)).await.reply.action, reject("x@small.example", 5));
        assert_eq!(p.decide(&eom("team@example.com", 400)).await.reply.action, Action::Dunno);
        assert_eq!(p.decide(&eom("vip@example.com", 400)).await.reply.action, Action::Dunno);
        // Counted nothing; recorded once per message (a retry of the same one is not pushed again).
        assert_eq!(p.store().count("erl:2026-11-22:x@small.example"), 0);
        let before = p.store().violations().len();
        assert!(matches!(p.decide(&eom("x@small.example", 6)).await.reply.action, Action::Reject(_)));
        let v = p.store().violations();
        assert_eq!(v.len(), before, "the same message again: not recorded twice");
        let record = v.iter().find(|v| v.user == "x@small.example").expect("recorded");
        assert!(record.per_message && !record.oversize);
        assert_eq!((record.limit, record.rcpt, record.window.as_str()), (5, 6, "message"));
        // Only at end of data: RCPT neither checks nor counts it.
        assert_eq!(p.decide(&req(State::Rcpt, "x@small.example", 60)).await.reply.action, Action::Dunno);
    });
}

#[test]
fn log_only_counts_a_message_enforcing_would_reject() {
    let (p, _) = driven(Mode::LogOnly);
    block_on(async {
        assert_eq!(p.decide(&eom("x@small.example", 6)).await.reply.action, Action::Dunno);
        assert_eq!(p.store().count("erl:2026-11-22:x@small.example"), 6, "counted as if accepted");
        let decision = p.decide(&eom("x@small.example", 7)).await;
        assert_eq!((decision.reply.action, decision.outcome), (Action::Dunno, Outcome::WouldReject));
        assert!(p.store().violations().iter().all(|v| !v.enforced));
    });
}

#[test]
fn a_lock_comes_before_the_per_message_check() {
    let config = crate::config::from_toml(
        "[limits]\nmax_rcpt_per_message = 5\n[protect]\nmax_client_ips = 1\nlock = true\n",
    )
    .expect("valid");
    let cache = Arc::new(LimitsCache::new(config.limits, None));
    let settings = Settings { protect: config.protect, ..Settings::default() };
    let env = Env { server: "mx1".into(), ..Env::default() };
    let p = Policy::new(MemoryStore::new(KeySchema::new("erl"), 100), cache, settings, env);
    block_on(async {
        let mut second = eom("t@example.com", 1);
        second.client_address = "203.0.113.9".into();
        assert_eq!(p.decide(&eom("t@example.com", 1)).await.reply.action, Action::Dunno);
        assert!(
            matches!(p.decide(&second).await.reply.action, Action::DeferIfPermit(_)),
            "locked: a second address"
        );
        let locked = p.decide(&eom("t@example.com", 50)).await.reply.action;
        assert_eq!(
            locked,
            Action::DeferIfPermit(
                "t@example.com: Sending is suspended for this account, contact your administrator".into()
            ),
            "the lock answers, not the per-message reject"
        );
    });
}

/// The metrics are recorded from the decision (`daemon::service`): a rejected message adds no
/// recipients to them.
#[test]
fn a_rejected_message_is_not_counted_in_the_metrics() {
    let (p, _) = driven(Mode::Enforce);
    block_on(async {
        let rejected = p.decide(&eom("x@small.example", 6)).await;
        assert!(matches!(rejected.reply.action, Action::Reject(_)));
        assert!(matches!(rejected.outcome, Outcome::Reject(_)));
        assert_eq!(rejected.counted, 0);
        let accepted = p.decide(&eom("x@small.example", 2)).await;
        assert_eq!(
            (accepted.reply.action, accepted.outcome, accepted.counted),
            (Action::Dunno, Outcome::Ok, 2)
        );
    });
}
