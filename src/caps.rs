//! The caps vocabulary: whose counter a cap is on ([`Scope`]), which counter ([`Counter`]: a
//! scope's recipients or messages over a [`Window`]) and the check on it ([`Check`]). Plain
//! types beside [`crate::window`]'s `Rate` and `Window`, shared by `limits`, `store`, `policy`,
//! `notify` and `metrics`, importing nothing but `window`.

use crate::window::{Unit, Window};

/// Whose counter: the sender's, its domain's (all its senders together) or the server's; or a
/// local user's (website mail through the milter: `local:<name>@<server>`, counted on its own
/// counters only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Mailbox,
    Domain,
    Server,
    Local,
}

impl Scope {
    /// The scope as `status`, the metrics and the webhook name it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Mailbox => "mailbox",
            Self::Domain => "domain",
            Self::Server => "server",
            Self::Local => "local",
        }
    }

    /// The violation record's `type`.
    #[must_use]
    pub fn kind(self) -> &'static str {
        match self {
            Self::Mailbox => "user",
            Self::Domain => "domain",
            Self::Server => "global",
            Self::Local => "local",
        }
    }
}

/// One counter a message moves: a scope's recipients (or messages) over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Counter {
    pub scope: Scope,
    pub window: Window,
    pub unit: Unit,
}

impl Counter {
    /// A recipient counter.
    #[must_use]
    pub const fn rcpt(scope: Scope, window: Window) -> Self {
        Self { scope, window, unit: Unit::Rcpt }
    }
}

/// One cap to check: at most `limit` on `counters[counter]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub counter: usize,
    pub limit: u64,
}
