//! How a decision ended, and what refused the message: the decision's own result, which the
//! metrics, `replay` and the milter read from the [`super::Decision`].

use crate::caps::Scope;
use crate::window::{Unit, Window};

/// What refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A cap without room, or (`oversize`) one the message can never fit under.
    Cap { scope: Scope, window: Window, unit: Unit, oversize: bool },
    /// The sender (or its domain) is locked.
    Locked,
    /// More recipients than `max_rcpt_per_message`.
    PerMessage,
}

impl Cause {
    /// The scope as the metrics label it: `mailbox`, `domain`, `server`, `local`, `locked`, or
    /// `message` (`max_rcpt_per_message`).
    #[must_use]
    pub fn scope(&self) -> &'static str {
        match self {
            Self::Cap { scope, .. } => scope.name(),
            Self::Locked => "locked",
            Self::PerMessage => "message",
        }
    }

    /// The cap's window (`1d`, `15m`), or `-` when no cap refused it.
    #[must_use]
    pub fn window(&self) -> String {
        match self {
            Self::Cap { window, .. } => window.to_string(),
            Self::Locked | Self::PerMessage => "-".into(),
        }
    }

    /// What the refusing cap counts (recipients when no cap refused it).
    #[must_use]
    pub fn unit(&self) -> Unit {
        match self {
            Self::Cap { unit, .. } => *unit,
            Self::Locked | Self::PerMessage => Unit::Rcpt,
        }
    }

    /// `mailbox/1h`, `locked`, or `None` for `max_rcpt_per_message` (no cap).
    #[must_use]
    pub fn name(&self) -> Option<String> {
        match self {
            Self::Cap { scope, window, .. } => Some(format!("{}/{window}", scope.name())),
            Self::Locked => Some("locked".into()),
            Self::PerMessage => None,
        }
    }

    /// `oversize`, `per_message`, or `None` for a cap without room or a lock.
    #[must_use]
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::PerMessage => Some("per_message"),
            Self::Cap { oversize: true, .. } => Some("oversize"),
            Self::Cap { .. } | Self::Locked => None,
        }
    }
}

/// How one request ended (`email_ratelimit_decisions_total{outcome}`, replay's summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered DUNNO after counting (or checking): within every cap, or log-only.
    Ok,
    /// Deferred (website mail: held).
    Defer(Cause),
    /// Rejected (5xx): a message that can never fit under a cap, or with too many recipients.
    Reject(Cause),
    /// Log-only: counted and let through, but enforcing would have deferred it or rejected it.
    WouldDefer(Cause),
    WouldReject,
    /// A fault let it through: Redis, bad data (uncounted), or a cap of the database not read
    /// yet (counted, not enforced).
    FailOpen,
    /// Not counted at all: unauthenticated, an unusable name, a stage that is not counted.
    Skip,
}

impl Outcome {
    /// Whether a lock stopped it.
    #[must_use]
    pub fn locked(&self) -> bool {
        matches!(self, Self::Defer(Cause::Locked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_names_its_cap_and_its_reason() {
        let hour =
            Cause::Cap { scope: Scope::Mailbox, window: Window::HOUR, unit: Unit::Msg, oversize: false };
        assert_eq!((hour.scope(), hour.window(), hour.unit()), ("mailbox", "1h".to_owned(), Unit::Msg));
        assert_eq!((hour.name().as_deref(), hour.reason()), (Some("mailbox/1h"), None));
        let big = Cause::Cap { scope: Scope::Server, window: Window::Day, unit: Unit::Rcpt, oversize: true };
        assert_eq!((big.name().as_deref(), big.reason()), (Some("server/1d"), Some("oversize")));
        assert_eq!(
            (Cause::Locked.scope(), Cause::Locked.window(), Cause::Locked.name().as_deref()),
            ("locked", "-".to_owned(), Some("locked"))
        );
        assert_eq!(
            (Cause::PerMessage.scope(), Cause::PerMessage.name(), Cause::PerMessage.reason()),
            ("message", None, Some("per_message"))
        );
        assert!(Outcome::Defer(Cause::Locked).locked() && !Outcome::WouldDefer(Cause::Locked).locked());
    }
}
