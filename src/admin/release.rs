//! `release local:NAME`: lets the website mail this server put on hold for a local user go on
//! (`postsuper -H`), and nothing else: only the queue IDs recorded in `erl:held:<server>:<name>`
//! that Postfix still holds. Mail held for other reasons (an admin's `postsuper -h`, a
//! header_checks HOLD, another milter) stays held. Released mail is not checked again (it does
//! not pass the milter twice), so it is not counted again.

use std::collections::HashSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use super::{AdminError, audit, open};
use crate::clock;
use crate::config::{Config, is_local_name};
use crate::sender::LOCAL_PREFIX;

/// Releases the local user's held mail; an error (exit 1) when none was released.
///
/// # Errors
/// [`AdminError`] for a name that is not `local:NAME`, Redis faults, or Postfix's commands
/// failing.
pub async fn release(config: &Config, user: &str) -> Result<String, AdminError> {
    let name = local_name(user, &config.server_name)?;
    let server = config.server_name.as_str();
    let who = format!("{LOCAL_PREFIX}{name}");
    let mut store = open(config).await?;
    let recorded = store.held(server, name).await?;
    if recorded.is_empty() {
        return Err(AdminError::Usage(format!(
            "no mail of {who} is recorded as held on {server}; nothing released"
        )));
    }
    let in_hold = held_queue_ids()?;
    let (release, gone): (Vec<String>, Vec<String>) =
        recorded.iter().cloned().partition(|id| in_hold.contains(id));
    if !release.is_empty() {
        postsuper_release(&release)?;
        // postsuper -H moves them to the deferred queue: deliver them now, not at the next
        // queue run (postqueue -f would flush everyone's deferred mail).
        for id in &release {
            let _ = Command::new("postqueue").args(["-i", id]).stdin(Stdio::null()).output();
        }
    }
    // Released, or no longer held (delivered after an earlier release, or deleted).
    store.forget_held(server, name, &recorded).await?;
    let mut out = String::new();
    if !gone.is_empty() {
        out.push_str(&format!(
            "{} recorded message(s) of {who} are no longer in the hold queue (released or deleted already): {}\n",
            gone.len(),
            gone.join(" ")
        ));
    }
    if release.is_empty() {
        return Err(AdminError::Usage(format!("{out}nothing of {who} is held now; nothing released")));
    }
    let now = clock::from_env().0.now().timestamp();
    let reason = format!("{} message(s): {}", release.len(), release.join(" "));
    let action =
        audit::Action { action: "release", user: &format!("{who}@{server}"), reason: &reason, ts: now };
    audit::record(&mut store, config.redis.violations_max, &action).await?;
    out.push_str(&format!("released {} message(s) of {who}: {}\n", release.len(), release.join(" ")));
    Ok(out)
}

/// `local:NAME` (or `local:NAME@<this server>`) -> `NAME`.
fn local_name<'a>(user: &'a str, server: &str) -> Result<&'a str, AdminError> {
    let bad = || AdminError::Usage(format!("{user:?}: release takes a local user, like local:web12"));
    let rest = user.strip_prefix(LOCAL_PREFIX).ok_or_else(bad)?;
    let name = match rest.split_once('@') {
        Some((name, host)) if host == server => name,
        Some((_, host)) => {
            return Err(AdminError::Usage(format!(
                "{user}: held mail is released on the server that holds it ({host}); this is {server}"
            )));
        }
        None => rest,
    };
    if is_local_name(name) { Ok(name) } else { Err(bad()) }
}

/// The queue IDs in Postfix's hold queue (`postqueue -j`; `MAIL_CONFIG` picks the instance).
fn held_queue_ids() -> Result<HashSet<String>, AdminError> {
    let out = Command::new("postqueue")
        .arg("-j")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| AdminError::Usage(format!("postqueue -j: {}", crate::oserror::plain(&e))))?;
    if !out.status.success() {
        return Err(AdminError::Usage(format!(
            "postqueue -j: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["queue_name"] == "hold")
        .filter_map(|m| m["queue_id"].as_str().map(str::to_owned))
        .collect())
}

/// `postsuper -H -` with the queue IDs on its input.
fn postsuper_release(ids: &[String]) -> Result<(), AdminError> {
    let fail = |e: String| AdminError::Usage(format!("postsuper -H: {e}"));
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_users_of_this_server() {
        assert_eq!(local_name("local:web12", "mx1").ok(), Some("web12"));
        assert_eq!(local_name("local:web12@mx1", "mx1").ok(), Some("web12"));
        for bad in ["web12", "alice@example.com", "local:", "local:a b", "local:web12@mx2"] {
            assert!(local_name(bad, "mx1").is_err(), "{bad}");
        }
    }
}
