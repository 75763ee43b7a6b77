//! The trace an admin action leaves (DESIGN v3 "Admin actions"): one line
//! `erl admin action=... user=... by=... reason="..."` to syslog (facility mail, identifier
//! `email-ratelimit`: the journal and mail.log, next to the daemon's lines), and a record
//! `{"ts", "type": "admin", "action", "user", "by", "reason"}` on `erl:violations`.

use serde_json::json;

use super::AdminError;
use crate::store::client::RedisClient;

/// Who acts: the admin behind `sudo` (`SUDO_USER`), else the Unix user running the command.
#[must_use]
pub fn actor() -> String {
    let named =
        |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty() && !v.contains(char::is_whitespace));
    if let Some(user) = named("SUDO_USER") {
        return user;
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid{uid}"),
    }
}

/// One admin action.
pub struct Action<'a> {
    /// `lock`, `unlock`, `raise`, `reset`, `enforce`.
    pub action: &'a str,
    /// The sender, `@domain` or `global`.
    pub user: &'a str,
    pub reason: &'a str,
    /// Unix seconds.
    pub ts: i64,
}

impl Action<'_> {
    /// The log line (without the syslog header).
    #[must_use]
    pub fn line(&self, by: &str) -> String {
        let reason = self.reason.replace(['\n', '\r'], " ").replace('"', "'");
        format!("erl admin action={} user={} by={by} reason=\"{reason}\"", self.action, self.user)
    }

    /// The `erl:violations` record.
    #[must_use]
    pub fn record(&self, by: &str) -> String {
        json!({"ts": self.ts, "type": "admin", "action": self.action, "user": self.user, "by": by, "reason": self.reason})
            .to_string()
    }
}

/// Records the action: the violations record (an error when Redis refuses it) and the syslog
/// line; a note on stderr when there is no syslog to write to (the record is there).
///
/// # Errors
/// Redis faults.
pub async fn record(store: &mut RedisClient, max: u64, action: &Action<'_>) -> Result<(), AdminError> {
    let by = actor();
    store.push_violation(&action.record(&by), max).await?;
    if let Err(e) = syslog(&action.line(&by)) {
        eprintln!("email-ratelimit: note: not logged to syslog ({e}); recorded in the violations list");
    }
    Ok(())
}

/// Sends `line` to syslog (`/dev/log`, facility mail, severity notice).
fn syslog(line: &str) -> std::io::Result<()> {
    use crate::telemetry::syslog;
    syslog::send(&syslog::socket_path(), syslog::NOTICE, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_and_the_record_say_who_did_what() {
        let a = Action {
            action: "lock",
            user: "eve@example.com",
            reason: "spam \"run\"\nagain",
            ts: 1_700_000_000,
        };
        assert_eq!(
            a.line("alice"),
            "erl admin action=lock user=eve@example.com by=alice reason=\"spam 'run' again\""
        );
        let v: serde_json::Value = serde_json::from_str(&a.record("alice")).expect("JSON");
        assert_eq!(
            v,
            json!({"ts": 1_700_000_000, "type": "admin", "action": "lock", "user": "eve@example.com", "by": "alice", "reason": "spam \"run\"\nagain"})
        );
    }
}
