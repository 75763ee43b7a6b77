//! Stolen-account rules shared by every store, mirrored by `is_suspect` and `trips_lock` in
//! `consume.lua`: when a sender is a suspect, when refusals lock it, and what a request newly
//! caused (each at most once per window, decided in the store, so across every server sharing
//! the Redis).

use serde::{Deserialize, Serialize};

/// What the store watches for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Guard {
    /// Track the client address (END-OF-MESSAGE/DATA only); a sender seen from more today is a
    /// suspect. 0: off.
    pub max_client_ips: u32,
    /// Lock suspects and senders refused more than `lock_after_refusals` times today (`lock =
    /// true` and not exempt; never in log-only mode).
    pub autolock: bool,
    /// 0: off.
    pub lock_after_refusals: u32,
}

/// A sender seen from `ips` distinct client addresses today is a suspect.
#[must_use]
pub fn is_suspect(ips: u64, max_client_ips: u32) -> bool {
    max_client_ips > 0 && ips > u64::from(max_client_ips)
}

/// A sender refused `refusals` times today is locked.
#[must_use]
pub fn trips_lock(refusals: u64, lock_after_refusals: u32) -> bool {
    lock_after_refusals > 0 && refusals > u64::from(lock_after_refusals)
}

/// Whether a refusal counts toward `lock_after_refusals` (DESIGN "Refusals that lock"): only a
/// refusal by one of the sender's own mailbox caps (`kind` `"user"`), not an oversize one, of a
/// message not refused before today (not a retry, not the same transaction again).
#[must_use]
pub fn counts_toward_lock(kind: &str, oversize: bool, new_message: bool) -> bool {
    kind == "user" && !oversize && new_message
}

/// What this request newly caused; bits 1, 2 and 4 of the script's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Events {
    /// The first refusal by this cap in its window.
    pub first_refusal: bool,
    /// The sender just became a suspect today.
    pub suspect: bool,
    /// The sender was just locked (by this request).
    pub locked: bool,
}

impl Events {
    #[must_use]
    pub fn from_bits(bits: i64) -> Self {
        Self { first_refusal: bits & 1 != 0, suspect: bits & 2 != 0, locked: bits & 4 != 0 }
    }

    #[must_use]
    pub fn bits(self) -> i64 {
        i64::from(self.first_refusal) | i64::from(self.suspect) << 1 | i64::from(self.locked) << 2
    }
}

/// What the store saw of the sender's protection state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Watch {
    pub events: Events,
    /// Distinct client addresses today, when this request added one (else 0).
    pub client_ips: u64,
    /// The sender's lock (`erl:lock:<email>`), when it is locked.
    pub lock: Option<Lock>,
}

/// The value of `erl:lock:<email>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub ts: i64,
    /// `"auto"` or `"admin"`.
    pub by: String,
    #[serde(default)]
    pub reason: String,
    /// Later locks of the same sender while it was locked (`lock` again): each one's time, who
    /// and why; the first lock stays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<LockNote>,
}

/// A later lock of a locked sender, kept in the first lock's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockNote {
    pub ts: i64,
    pub by: String,
    #[serde(default)]
    pub reason: String,
}

impl Lock {
    /// Reads a lock value; one written from outside that is not our JSON still locks.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_else(|_| Self {
            ts: 0,
            by: "unknown".into(),
            reason: text.into(),
            history: Vec::new(),
        })
    }

    /// The reason of an automatic lock of a suspect.
    #[must_use]
    pub fn suspect_reason(ips: u64) -> String {
        format!("{ips} client addresses today")
    }

    /// The reason of an automatic lock after refusals.
    #[must_use]
    pub fn refusals_reason(refusals: u64) -> String {
        format!("refused {refusals} times today")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_strictly_above_and_zero_is_off() {
        assert!(!is_suspect(3, 3));
        assert!(is_suspect(4, 3));
        assert!(!is_suspect(1_000, 0));
        assert!(!trips_lock(10, 10));
        assert!(trips_lock(11, 10));
        assert!(!trips_lock(1_000, 0));
    }

    #[test]
    fn only_new_messages_refused_by_the_senders_own_caps_count_toward_a_lock() {
        assert!(counts_toward_lock("user", false, true));
        assert!(!counts_toward_lock("user", false, false), "a retry");
        assert!(!counts_toward_lock("user", true, true), "an oversize message");
        assert!(!counts_toward_lock("domain", false, true), "a domain's cap");
        assert!(!counts_toward_lock("global", false, true), "the server's cap");
    }

    #[test]
    fn events_round_trip_through_bits() {
        for bits in 0..8 {
            assert_eq!(Events::from_bits(bits).bits(), bits);
        }
        assert!(Events::from_bits(4).locked && !Events::from_bits(4).suspect);
    }

    #[test]
    fn a_foreign_lock_value_still_locks() {
        let ours = Lock::parse(r#"{"ts":5,"by":"admin","reason":"phishing"}"#);
        assert_eq!((ours.ts, ours.by.as_str(), ours.reason.as_str()), (5, "admin", "phishing"));
        let foreign = Lock::parse("1");
        assert_eq!((foreign.by.as_str(), foreign.reason.as_str()), ("unknown", "1"));
    }
}
