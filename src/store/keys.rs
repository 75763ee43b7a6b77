//! The Redis key schema, shared by the daemon and the admin commands: the one place keys are
//! built.

use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::caps::{Counter, Scope};
use crate::sender::Mailbox;
use crate::window::{Unit, Window};

/// Counter keys live about 26 hours: past local midnight in every time zone shift, then gone.
pub const COUNTER_TTL_SECS: u64 = Window::Day.ttl_secs();

/// A day's top senders are kept 8 days, for `top --date` (and learned allowances).
pub const TOP_TTL_SECS: u64 = 8 * 86_400;

/// The queue IDs of held website mail are kept 7 days (longer than Postfix keeps mail).
pub const HELD_TTL_SECS: u64 = 7 * 86_400;

/// Seconds from the local time `local` to the end of its local day plus an hour: the TTL of a
/// set that only matters today (the refused messages' fingerprints). On a DST day it is off by
/// the shift, which the hour and the date in the key absorb.
#[must_use]
pub fn rest_of_day_ttl(local: NaiveDateTime) -> u64 {
    let elapsed = u64::from(local.time().num_seconds_from_midnight());
    86_400u64.saturating_sub(elapsed) + 3600
}

/// Builds `<prefix>:YYYY-MM-DD:<who>` (daily), `<prefix>:YYYY-MM-DDTHHMM/<w>:<who>` (a shorter
/// window starting at local HH:MM), with `<who>` an email, `@<domain>` or `global`, for
/// recipients; the same after `<prefix>:m:` for messages; and `<prefix>:violations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    prefix: String,
}

impl KeySchema {
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    fn key<'a>(&'a self, name: Name<'a>) -> Key<'a> {
        Key { prefix: &self.prefix, name }
    }

    /// Today's counter of one sender.
    #[must_use]
    pub fn sender<'a>(&'a self, day: NaiveDate, sender: &'a Mailbox) -> Key<'a> {
        self.window(day.and_time(NaiveTime::MIN), Window::Day, Unit::Rcpt, Who::Mailbox(sender))
    }

    /// Today's server-wide counter.
    #[must_use]
    pub fn global(&self, day: NaiveDate) -> Key<'_> {
        self.window(day.and_time(NaiveTime::MIN), Window::Day, Unit::Rcpt, Who::Server)
    }

    /// The counter of `counter` for `sender` in the window holding the local time `local`;
    /// `None` for a domain counter of a sender without a domain.
    #[must_use]
    pub fn counter<'a>(
        &'a self,
        local: NaiveDateTime,
        counter: Counter,
        sender: &'a Mailbox,
    ) -> Option<Key<'a>> {
        let who = match counter.scope {
            Scope::Mailbox | Scope::Local => Who::Mailbox(sender),
            Scope::Domain => Who::Domain(sender.domain()?),
            Scope::Server => Who::Server,
        };
        Some(self.window(local, counter.window, counter.unit, who))
    }

    /// The counter of `who`'s `unit`s over `window` in the window holding the local time `local`.
    #[must_use]
    pub fn window<'a>(&'a self, local: NaiveDateTime, window: Window, unit: Unit, who: Who<'a>) -> Key<'a> {
        self.key(Name::Window(local, window, unit, who))
    }

    /// Today's top senders: a sorted set, recipients accepted per sender.
    #[must_use]
    pub fn top(&self, day: NaiveDate) -> Key<'_> {
        self.key(Name::Top(day))
    }

    /// A sender's temporary raise.
    #[must_use]
    pub fn raise<'a>(&'a self, sender: &'a Mailbox) -> Key<'a> {
        self.key(Name::Raise(sender))
    }

    /// A locked sender.
    #[must_use]
    pub fn lock<'a>(&'a self, sender: &'a Mailbox) -> Key<'a> {
        self.key(Name::Lock(sender))
    }

    /// The queue IDs of the local user `name`'s website mail that `server` put on hold: a
    /// sorted set scored by unix time ([`HELD_TTL_SECS`]).
    #[must_use]
    pub fn held<'a>(&'a self, server: &'a str, name: &'a str) -> Key<'a> {
        self.key(Name::Held(server, name))
    }

    /// The queue IDs of the local user `name`'s website mail that `server` put on hold because
    /// the user is locked (kept apart from [`Self::held`], which only `release` frees):
    /// `erl:lockheld:<server>:local:<name>@<server>`, scored and kept as [`Self::held`].
    #[must_use]
    pub fn lock_held<'a>(&'a self, server: &'a str, name: &'a str) -> Key<'a> {
        self.key(Name::LockHeld(server, name))
    }

    /// A locked domain (`lock @domain`): every sender of it is stopped. `domain` is IDNA ASCII;
    /// for a sender without a domain, `""` names a key no command writes.
    #[must_use]
    pub fn domain_lock<'a>(&'a self, domain: &'a str) -> Key<'a> {
        self.key(Name::DomainLock(domain))
    }

    /// A sender's history for learned allowances: a hash of `YYYY-MM-DD` -> recipients accepted
    /// that day and `x:YYYY-MM-DD` marks of excluded days.
    #[must_use]
    pub fn hist<'a>(&'a self, sender: &'a Mailbox) -> Key<'a> {
        self.key(Name::Hist(sender))
    }

    /// The history key of a sender named by its text (a top senders' member).
    #[must_use]
    pub fn hist_of(&self, sender: &str) -> String {
        format!("{}:hist:{sender}", self.prefix)
    }

    /// The marker that `day`'s totals were folded into the histories:
    /// `<prefix>:once:fold:YYYY-MM-DD`.
    #[must_use]
    pub fn folded(&self, day: NaiveDate) -> String {
        format!("{}:once:fold:{}", self.prefix, Day(day))
    }

    /// The pattern of every history key (for loading them all).
    #[must_use]
    pub fn hist_pattern(&self) -> String {
        format!("{}:hist:*", self.prefix)
    }

    /// The sender named by a history key.
    #[must_use]
    pub fn hist_sender<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.prefix)?.strip_prefix(":hist:")
    }

    /// The distinct SMTP client addresses of a sender today (a HyperLogLog).
    #[must_use]
    pub fn ips<'a>(&'a self, day: NaiveDate, sender: &'a Mailbox) -> Key<'a> {
        self.key(Name::Ips(day, sender))
    }

    /// How many times a sender was refused today (for `protect.lock_after_refusals`).
    #[must_use]
    pub fn refusals<'a>(&'a self, day: NaiveDate, sender: &'a Mailbox) -> Key<'a> {
        self.key(Name::Refusals(day, sender))
    }

    /// The fingerprints (and transactions) of the sender's refused messages today: a set, so
    /// that a retry of the same message is one refusal.
    #[must_use]
    pub fn fingerprints<'a>(&'a self, day: NaiveDate, sender: &'a Mailbox) -> Key<'a> {
        self.key(Name::Fingerprints(day, sender))
    }

    /// The index of the locks made by `by`: a sorted set of senders scored by the lock's expiry
    /// (unix seconds, or `+inf`).
    #[must_use]
    pub fn locks(&self, by: LockedBy) -> Key<'_> {
        self.key(Name::Locks(by))
    }

    /// The marker that an event about `key` (a counter, or a sender's `ips` key) happened in its
    /// window: `<prefix>:once:<key without the prefix>`; `consume.lua` builds the same. (v2 kept
    /// them under `notified:`, which v3 gives to the day's mail counts.)
    #[must_use]
    pub fn notified(&self, key: &str) -> String {
        let rest = key.strip_prefix(&self.prefix).and_then(|k| k.strip_prefix(':')).unwrap_or(key);
        format!("{}:once:{rest}", self.prefix)
    }

    /// How many notification mails about `who` (an address, `@domain` or `global`) went out on
    /// `day`: `<prefix>:notified:YYYY-MM-DD:<who>`.
    #[must_use]
    pub fn mails<'a>(&'a self, day: NaiveDate, who: &'a str) -> Key<'a> {
        self.key(Name::Mails(day, who))
    }

    /// The lock key of a sender named by its text (an index member).
    #[must_use]
    pub fn lock_of(&self, sender: &str) -> String {
        format!("{}:lock:{sender}", self.prefix)
    }

    /// The pattern of every lock key (for `locks`).
    #[must_use]
    pub fn lock_pattern(&self) -> String {
        format!("{}:lock:*", self.prefix)
    }

    /// The sender named by a lock key.
    #[must_use]
    pub fn locked_sender<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.prefix)?.strip_prefix(":lock:")
    }

    /// The list of recent violations, newest first.
    #[must_use]
    pub fn violations(&self) -> Key<'_> {
        self.key(Name::Violations)
    }
}

/// One key, written where it is used: `to_string()` for a `String`, or straight into a Redis
/// command's buffer (`ToRedisArgs`), so the request path allocates nothing to name its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    prefix: &'a str,
    name: Name<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name<'a> {
    Window(NaiveDateTime, Window, Unit, Who<'a>),
    Top(NaiveDate),
    Raise(&'a Mailbox),
    Lock(&'a Mailbox),
    DomainLock(&'a str),
    Ips(NaiveDate, &'a Mailbox),
    Hist(&'a Mailbox),
    Refusals(NaiveDate, &'a Mailbox),
    Fingerprints(NaiveDate, &'a Mailbox),
    Mails(NaiveDate, &'a str),
    Locks(LockedBy),
    Violations,
    Held(&'a str, &'a str),
    LockHeld(&'a str, &'a str),
}

/// Who made a lock: the daemon (`auto`) or an admin; each has its index of locked senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockedBy {
    Auto,
    Admin,
}

impl LockedBy {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Key<'_> {
    /// Writes the key piece by piece with `write_str`: `write!`'s argument machinery was a large
    /// share of a replay's time (every request names several keys).
    fn write_to<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        let p = self.prefix;
        let dated = |f: &mut W, name: &str, day: NaiveDate, who: &str| {
            f.write_str(p)?;
            f.write_str(name)?;
            write_day(f, day)?;
            f.write_char(':')?;
            f.write_str(who)
        };
        match self.name {
            Name::Window(local, window, unit, who) => {
                f.write_str(p)?;
                if unit == Unit::Msg {
                    f.write_str(":m")?;
                }
                f.write_char(':')?;
                match window {
                    Window::Day => write_day(f, local.date())?,
                    window => {
                        let start = window.start(local);
                        write_day(f, start.date())?;
                        f.write_char('T')?;
                        write_number(f, start.hour(), 2)?;
                        write_number(f, start.minute(), 2)?;
                        f.write_char('/')?;
                        match window {
                            Window::Minutes(m) if m.is_multiple_of(60) => {
                                write_number(f, u32::from(m / 60), 1)?;
                                f.write_char('h')?;
                            }
                            Window::Minutes(m) => {
                                write_number(f, u32::from(m), 1)?;
                                f.write_char('m')?;
                            }
                            Window::Day => f.write_str("1d")?,
                        }
                    }
                }
                f.write_char(':')?;
                match who {
                    Who::Mailbox(m) => f.write_str(m.as_str()),
                    Who::Domain(d) => {
                        f.write_char('@')?;
                        f.write_str(d)
                    }
                    Who::Server => f.write_str("global"),
                }
            }
            Name::Top(day) => {
                f.write_str(p)?;
                f.write_str(":top:")?;
                write_day(f, day)
            }
            Name::Raise(sender) => write!(f, "{p}:raise:{sender}"),
            Name::Lock(sender) => write!(f, "{p}:lock:{sender}"),
            Name::DomainLock(domain) => write!(f, "{p}:lock:@{domain}"),
            Name::Ips(day, sender) => dated(f, ":ips:", day, sender.as_str()),
            Name::Hist(sender) => write!(f, "{p}:hist:{sender}"),
            Name::Refusals(day, sender) => dated(f, ":refusals:", day, sender.as_str()),
            Name::Fingerprints(day, sender) => dated(f, ":fp:", day, sender.as_str()),
            Name::Mails(day, who) => dated(f, ":notified:", day, who),
            Name::Locks(by) => write!(f, "{p}:locks:{}", by.as_str()),
            Name::Violations => write!(f, "{p}:violations"),
            Name::Held(server, name) => write!(f, "{p}:held:{server}:{name}"),
            Name::LockHeld(server, name) => {
                write!(f, "{p}:lockheld:{server}:{}{name}@{server}", crate::sender::LOCAL_PREFIX)
            }
        }
    }
}

/// `n` in decimal, zero-padded to `width` digits.
fn write_number(f: &mut impl fmt::Write, n: u32, width: usize) -> fmt::Result {
    let mut digits = [b'0'; 10];
    let (mut n, mut len) = (n, 0);
    while n > 0 || len < width.max(1) {
        digits[9 - len] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        len += 1;
    }
    f.write_str(std::str::from_utf8(&digits[10 - len..]).unwrap_or("0"))
}

impl Key<'_> {
    /// The key as a `String`, allocated once at a size that fits (`to_string` grows it several
    /// times).
    #[must_use]
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 80);
        let _ = self.write_to(&mut out);
        out
    }
}

impl redis::ToRedisArgs for Key<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(self);
    }
}

impl redis::ToSingleRedisArg for Key<'_> {}

/// Whose counter a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who<'a> {
    Mailbox(&'a Mailbox),
    /// IDNA ASCII.
    Domain(&'a str),
    Server,
}

/// `YYYY-MM-DD`, without chrono's strftime parser on the request path.
struct Day(NaiveDate);

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_day(f, self.0)
    }
}

/// `YYYY-MM-DD`, digit by digit (the padded integer formatting of `write!` was a large share of
/// a replay's time). Years past 9999 do not occur.
fn write_day(f: &mut impl fmt::Write, day: NaiveDate) -> fmt::Result {
    let (y, m, d) = (day.year().clamp(0, 9999).unsigned_abs(), day.month(), day.day());
    let digit = |n: u32| b'0' + u8::try_from(n % 10).unwrap_or(0);
    let text = [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(d / 10),
        digit(d),
    ];
    f.write_str(std::str::from_utf8(&text).unwrap_or("0000-00-00"))
}

/// A field of a sender's history hash (`<prefix>:hist:<email>`, [`KeySchema::hist`]): what the
/// store writes and `store::History` reads. `consume.lua` writes the same excluded mark (the
/// daemon passes it whole, ARGV[20]) and builds the network field from ARGV[22] as `n:<network>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryField<'a> {
    /// `YYYY-MM-DD`: the recipients counted for the sender that day.
    Total(NaiveDate),
    /// `x:YYYY-MM-DD`: the day does not count for learning (refused by its own cap, a suspect,
    /// locked).
    Excluded(NaiveDate),
    /// `n:<network>`: the first and last day mail came from that network (`"FIRST LAST"`).
    Network(&'a str),
}

impl<'a> HistoryField<'a> {
    /// The field named `field`; `None` for anything else (a hash written by hand stays harmless).
    #[must_use]
    pub fn parse(field: &'a str) -> Option<Self> {
        if let Some(day) = field.strip_prefix("x:") {
            return day.parse().ok().map(Self::Excluded);
        }
        if let Some(network) = field.strip_prefix("n:") {
            return Some(Self::Network(network));
        }
        field.parse().ok().map(Self::Total)
    }
}

impl fmt::Display for HistoryField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Total(day) => write!(f, "{day}"),
            Self::Excluded(day) => write!(f, "x:{day}"),
            Self::Network(network) => write!(f, "n:{network}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;

    #[test]
    fn keys_follow_the_contract() {
        let keys = KeySchema::new("erl");
        let day = NaiveDate::from_ymd_opt(2026, 3, 7).expect("valid date");
        let alice = normalize("Alice@Example.com").expect("valid");
        assert_eq!(keys.sender(day, &alice).to_string(), "erl:2026-03-07:alice@example.com");
        assert_eq!(keys.global(day).to_string(), "erl:2026-03-07:global");
        assert_eq!(keys.violations().to_string(), "erl:violations");
        assert_eq!(keys.top(day).to_string(), "erl:top:2026-03-07");
        assert_eq!(keys.raise(&alice).to_string(), "erl:raise:alice@example.com");
        assert_eq!(keys.lock(&alice).to_string(), "erl:lock:alice@example.com");
        assert_eq!(keys.ips(day, &alice).to_string(), "erl:ips:2026-03-07:alice@example.com");
        assert_eq!(keys.refusals(day, &alice).to_string(), "erl:refusals:2026-03-07:alice@example.com");
        assert_eq!(keys.fingerprints(day, &alice).to_string(), "erl:fp:2026-03-07:alice@example.com");
        assert_eq!(keys.locks(LockedBy::Auto).to_string(), "erl:locks:auto");
        assert_eq!(keys.hist(&alice).to_string(), "erl:hist:alice@example.com");
        assert_eq!(keys.hist_sender("erl:hist:alice@example.com"), Some("alice@example.com"));
        assert_eq!(keys.locks(LockedBy::Admin).to_string(), "erl:locks:admin");
        assert_eq!(
            keys.notified("erl:2026-03-07T1300/1h:@example.com"),
            "erl:once:2026-03-07T1300/1h:@example.com"
        );
        assert_eq!(
            keys.notified(&keys.ips(day, &alice).to_string()),
            "erl:once:ips:2026-03-07:alice@example.com"
        );
        assert_eq!(keys.mails(day, "@example.com").to_string(), "erl:notified:2026-03-07:@example.com");
        assert_ne!(
            keys.mails(day, "alice@example.com").to_string(),
            keys.notified(&keys.sender(day, &alice).to_string())
        );
        assert_eq!(keys.locked_sender("erl:lock:alice@example.com"), Some("alice@example.com"));
        assert_eq!(keys.locked_sender("erl:raise:alice@example.com"), None);
        assert_eq!(KeySchema::new("x").global(day).to_string(), "x:2026-03-07:global");
        let late = NaiveDate::from_ymd_opt(2031, 12, 31).expect("valid date");
        assert_eq!(keys.global(late).to_string(), late.format("erl:%Y-%m-%d:global").to_string());
    }

    #[test]
    fn window_keys_follow_the_contract() {
        let keys = KeySchema::new("erl");
        let alice = normalize("Alice@Bücher.Example").expect("valid");
        let t = NaiveDateTime::parse_from_str("2026-03-07 13:47:12", "%Y-%m-%d %H:%M:%S").expect("valid");
        let key = |scope, window: &str| {
            keys.counter(t, Counter::rcpt(scope, Window::parse(window).expect("window")), &alice)
                .map(|k| k.to_string())
        };
        let messages = |scope, window: &str| {
            let counter = Counter { scope, window: Window::parse(window).expect("window"), unit: Unit::Msg };
            keys.counter(t, counter, &alice).map(|k| k.to_string())
        };
        assert_eq!(
            messages(Scope::Mailbox, "1d").as_deref(),
            Some("erl:m:2026-03-07:alice@xn--bcher-kva.example")
        );
        assert_eq!(
            messages(Scope::Domain, "1h").as_deref(),
            Some("erl:m:2026-03-07T1300/1h:@xn--bcher-kva.example")
        );
        assert_eq!(messages(Scope::Server, "15m").as_deref(), Some("erl:m:2026-03-07T1345/15m:global"));
        assert_eq!(key(Scope::Mailbox, "1d").as_deref(), Some("erl:2026-03-07:alice@xn--bcher-kva.example"));
        assert_eq!(key(Scope::Domain, "1d").as_deref(), Some("erl:2026-03-07:@xn--bcher-kva.example"));
        assert_eq!(key(Scope::Server, "1d").as_deref(), Some("erl:2026-03-07:global"));
        assert_eq!(
            key(Scope::Mailbox, "1h").as_deref(),
            Some("erl:2026-03-07T1300/1h:alice@xn--bcher-kva.example")
        );
        assert_eq!(
            key(Scope::Domain, "15m").as_deref(),
            Some("erl:2026-03-07T1345/15m:@xn--bcher-kva.example")
        );
        assert_eq!(key(Scope::Server, "60m").as_deref(), Some("erl:2026-03-07T1300/1h:global"));
        assert_eq!(key(Scope::Server, "90m").as_deref(), Some("erl:2026-03-07T1330/90m:global"));
        assert_eq!(
            key(Scope::Mailbox, "1m").as_deref(),
            Some("erl:2026-03-07T1347/1m:alice@xn--bcher-kva.example")
        );
        let day = Counter::rcpt(Scope::Mailbox, Window::Day);
        assert_eq!(
            keys.counter(t, day, &alice).map(|k| k.to_string()),
            Some(keys.sender(t.date(), &alice).to_string()),
            "v1 keys unchanged"
        );
        let bob = normalize("bob").expect("valid");
        assert_eq!(keys.counter(t, Counter::rcpt(Scope::Domain, Window::Day), &bob), None);
    }

    #[test]
    fn the_fingerprints_live_to_the_end_of_the_local_day() {
        let at = |t: &str| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").expect("valid");
        assert_eq!(rest_of_day_ttl(at("2026-03-07 00:00:00")), 86_400 + 3600);
        assert_eq!(rest_of_day_ttl(at("2026-03-07 23:59:30")), 30 + 3600);
    }

    // A counter must outlive its local day even across a DST change, and then go.
    const _: () = assert!(COUNTER_TTL_SECS > 25 * 3600 && COUNTER_TTL_SECS <= 27 * 3600);

    #[test]
    fn history_fields_are_named_one_way() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 6).expect("date");
        for (field, text) in [
            (HistoryField::Total(day), "2026-01-06"),
            (HistoryField::Excluded(day), "x:2026-01-06"),
            (HistoryField::Network("192.0.2.0/24"), "n:192.0.2.0/24"),
        ] {
            assert_eq!(field.to_string(), text);
            assert_eq!(HistoryField::parse(text), Some(field));
        }
        assert_eq!(HistoryField::parse("x:junk"), None);
        assert_eq!(HistoryField::parse("other"), None);
    }
}
