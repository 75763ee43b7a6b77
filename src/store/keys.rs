//! The Redis key schema, shared by the daemon and the admin commands: the one place keys are
//! built.

use std::fmt;

use chrono::{Datelike, NaiveDate};

use crate::sender::Mailbox;

/// Counter keys live about 26 hours: past local midnight in every time zone shift, then gone.
pub const COUNTER_TTL_SECS: u64 = 26 * 3600;

/// Builds `<prefix>:YYYY-MM-DD:<email>`, `<prefix>:YYYY-MM-DD:global` and `<prefix>:violations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    prefix: String,
}

impl KeySchema {
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// Today's counter of one sender.
    #[must_use]
    pub fn sender(&self, day: NaiveDate, sender: &Mailbox) -> String {
        format!("{}:{}:{}", self.prefix, Day(day), sender)
    }

    /// Today's server-wide counter.
    #[must_use]
    pub fn global(&self, day: NaiveDate) -> String {
        format!("{}:{}:global", self.prefix, Day(day))
    }

    /// The list of recent violations, newest first.
    #[must_use]
    pub fn violations(&self) -> String {
        format!("{}:violations", self.prefix)
    }
}

/// `YYYY-MM-DD`, without chrono's strftime parser on the request path.
struct Day(NaiveDate);

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.0.year(), self.0.month(), self.0.day())
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
        assert_eq!(keys.sender(day, &alice), "erl:2026-03-07:alice@example.com");
        assert_eq!(keys.global(day), "erl:2026-03-07:global");
        assert_eq!(keys.violations(), "erl:violations");
        assert_eq!(KeySchema::new("x").global(day), "x:2026-03-07:global");
        let late = NaiveDate::from_ymd_opt(2031, 12, 31).expect("valid date");
        assert_eq!(keys.global(late), late.format("erl:%Y-%m-%d:global").to_string());
    }

    // A counter must outlive its local day even across a DST change, and then go.
    const _: () = assert!(COUNTER_TTL_SECS > 25 * 3600 && COUNTER_TTL_SECS <= 27 * 3600);
}
