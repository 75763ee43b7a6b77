//! The trace an admin action leaves (DESIGN v3 "Admin actions"): one line
//! `erl admin action=... user=... by=... reason="..."` to syslog (facility mail, identifier
//! `email-ratelimit`: the journal and mail.log, next to the daemon's lines), and a record
//! `{"ts", "type": "admin", "action", "user", "by", "reason"}` on `erl:violations`.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use serde_json::json;

use super::AdminError;
use crate::store::admin::AdminStore;

/// Where syslog listens. Tests point it elsewhere with `EMAIL_RATELIMIT_TEST_SYSLOG`.
const SYSLOG_SOCKET: &str = "/dev/log";
const TEST_SYSLOG_ENV: &str = "EMAIL_RATELIMIT_TEST_SYSLOG";

/// syslog facility mail (2) x 8 + severity notice (5).
const MAIL_NOTICE: u8 = 2 * 8 + 5;

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
pub async fn record(store: &mut AdminStore, max: u64, action: &Action<'_>) -> Result<(), AdminError> {
    let by = actor();
    store.push_violation(&action.record(&by), max).await?;
    if let Err(e) = syslog(&action.line(&by)) {
        eprintln!("email-ratelimit: note: not logged to syslog ({e}); recorded in the violations list");
    }
    Ok(())
}

/// Sends `line` to syslog as `email-ratelimit[pid]` (RFC 3164 without a timestamp: the
/// receiver stamps it). Written by hand on purpose: the `syslog` crate's formatter unwraps the
/// local time, which fails (and panics) in a process with more than one thread.
fn syslog(line: &str) -> std::io::Result<()> {
    let path = std::env::var_os(TEST_SYSLOG_ENV).map_or_else(|| PathBuf::from(SYSLOG_SOCKET), PathBuf::from);
    send_to(&path, line)
}

fn send_to(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let message = format!("<{MAIL_NOTICE}>email-ratelimit[{}]: {line}", std::process::id());
    socket
        .send_to(message.as_bytes(), path)
        .map(|_| ())
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
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

    #[test]
    fn a_syslog_line_has_the_mail_facility_and_the_identifier() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).expect("bind");
        send_to(&path, "erl admin action=reset user=global by=root reason=\"\"").expect("sent");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<21>email-ratelimit["), "{got}");
        assert!(got.ends_with("]: erl admin action=reset user=global by=root reason=\"\""), "{got}");
        let missing = send_to(&dir.path().join("none"), "x").expect_err("no socket");
        assert!(missing.to_string().contains("/none: No such file or directory"), "{missing}");
    }
}
