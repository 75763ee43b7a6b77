//! Postfix's queue, through its own commands: which messages are held (`postqueue -j`), a queued
//! message's headers (`postcat -h -q`), and releasing held mail (`postsuper -H`, `postqueue -i`).
//! The instance is the one `MAIL_CONFIG` names, else Postfix's default. What to release, and
//! whose mail a message is, is decided by the callers ([`crate::admin`]).

use std::collections::HashSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// A Postfix command that could not be run or failed: the command and what it said.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {detail}")]
pub struct QueueError {
    pub command: &'static str,
    pub detail: String,
}

fn run(command: &'static str, program: &str, args: &[&str]) -> Result<String, QueueError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| QueueError { command, detail: crate::oserror::plain(&e) })?;
    if !out.status.success() {
        return Err(QueueError { command, detail: String::from_utf8_lossy(&out.stderr).trim().to_owned() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The queue IDs in the hold queue.
///
/// # Errors
/// [`QueueError`] when `postqueue -j` cannot run or fails.
pub fn held() -> Result<HashSet<String>, QueueError> {
    Ok(run("postqueue -j", "postqueue", &["-j"])?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["queue_name"] == "hold")
        .filter_map(|m| m["queue_id"].as_str().map(str::to_owned))
        .collect())
}

/// The value of the first header named `name` (case-insensitive, unfolded) of the queued message
/// `queue_id`; `None` when it has none.
///
/// # Errors
/// [`QueueError`] when `postcat -h -q` cannot run or fails (the message is gone, not root).
pub fn first_header(queue_id: &str, name: &str) -> Result<Option<String>, QueueError> {
    Ok(first_header_in(&run("postcat -h -q", "postcat", &["-h", "-q", queue_id])?, name))
}

/// [`first_header`] on `postcat -h`'s output.
fn first_header_in(headers: &str, name: &str) -> Option<String> {
    let mut lines = headers.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((field, value)) = line.split_once(':') else { continue };
        if !field.eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = value.trim().to_owned();
        while let Some(more) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
            value.push(' ');
            value.push_str(more.trim());
        }
        return Some(value);
    }
    None
}

/// Releases held messages (`postsuper -H`, the IDs on its input), then asks for their delivery
/// now (`postqueue -i`: `-H` leaves them deferred until the next queue run, and `postqueue -f`
/// would flush everyone's deferred mail).
///
/// # Errors
/// [`QueueError`] when `postsuper -H` cannot run or fails.
pub fn release(ids: &[String]) -> Result<(), QueueError> {
    let fail = |detail: String| QueueError { command: "postsuper -H", detail };
    let mut child = Command::new("postsuper")
        .args(["-H", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(crate::oserror::plain(&e)))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all((ids.join("\n") + "\n").as_bytes()).map_err(|e| fail(crate::oserror::plain(&e)))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(crate::oserror::plain(&e)))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    for id in ids {
        let _ = run("postqueue -i", "postqueue", &["-i", id]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_header_of_that_name_unfolded() {
        let headers = "X-Email-Ratelimit-Uid: 33 4AB\nReceived: by mx1 (Postfix, from userid 33)\n\tid 4AB; Mon\nx-email-ratelimit-uid: 0 4AB\n";
        assert_eq!(first_header_in(headers, "X-Email-Ratelimit-Uid").as_deref(), Some("33 4AB"));
        assert_eq!(
            first_header_in(headers, "received").as_deref(),
            Some("by mx1 (Postfix, from userid 33) id 4AB; Mon")
        );
        assert_eq!(first_header_in(headers, "Subject"), None);
        assert_eq!(first_header_in("", "Subject"), None);
    }
}
