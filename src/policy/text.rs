//! What the policy says: the reply texts (contract: exact wording) and the shared fields of the
//! `erl ok` / `erl DEFER` log lines.

use std::fmt;

use crate::limits::Cap;
use crate::protocol::Request;
use crate::sender::Mailbox;

/// The reply text for a sender over its own cap (contract: exact wording).
#[must_use]
pub fn mailbox_text(sender: &Mailbox, limit: u64) -> String {
    format!("{sender}: Your daily limit of {limit} messages reached")
}

/// The reply text when the server-wide cap is reached (contract: exact wording).
#[must_use]
pub fn global_text(sender: &Mailbox, limit: u64) -> String {
    format!("{sender}: Global daily limit of {limit} reached")
}

/// The shared fields of the decision lines.
pub(super) struct Line<'a> {
    pub user: &'a Mailbox,
    pub rcpt: u64,
    pub mailbox: u64,
    pub mailbox_cap: Option<Cap>,
    pub global: u64,
    pub global_cap: Cap,
    pub req: &'a Request,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user={} rcpt={} mailbox={}/", self.user, self.rcpt, self.mailbox)?;
        match self.mailbox_cap {
            Some(cap) => write!(f, "{cap}")?,
            None => f.write_str("-")?,
        }
        write!(
            f,
            " global={}/{} client={} queue_id={} stage={}",
            self.global,
            self.global_cap,
            self.req.client_address,
            self.req.queue_id,
            self.req.protocol_state.as_str()
        )
    }
}
