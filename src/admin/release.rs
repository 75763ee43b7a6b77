//! `release local:NAME`: lets the website mail this server put on hold for a local user go on
//! (`postsuper -H`), and nothing else: only the queue IDs recorded in `erl:held:<server>:<name>`
//! that Postfix still holds, and of those only the messages that are that user's own: each is
//! read first (`postcat`), and its first marker header must name that user and that queue ID. A
//! recorded ID alone is never trusted (it may have been planted). Mail held for other reasons
//! (an admin's `postsuper -h`, a header_checks HOLD, another milter) stays held. Released mail is
//! not checked again (it does not pass the milter twice), so it is not counted again.

use super::{AdminError, audit, local_name, open};
use crate::clock;
use crate::config::Config;
use crate::milter::who;
use crate::postqueue;
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
    let in_hold = postqueue::held()?;
    let (mut release, mut gone, mut forget, mut out) = (Vec::new(), Vec::new(), Vec::new(), String::new());
    for id in &recorded {
        if !in_hold.contains(id) {
            gone.push(id.clone());
            forget.push(id.clone());
            continue;
        }
        match owner(id) {
            Ok(Some(owner)) if owner == name => {
                release.push(id.clone());
                forget.push(id.clone());
            }
            Ok(owner) => {
                let names =
                    owner.map_or_else(|| "no local user".to_owned(), |o| format!("{LOCAL_PREFIX}{o}"));
                out.push_str(&format!(
                    "not released: {id} is recorded for {who}, but its own marker names {names}: left held\n"
                ));
                forget.push(id.clone());
            }
            Err(e) => out.push_str(&format!("not released: {id}: {e}; left held\n")),
        }
    }
    if !release.is_empty() {
        postqueue::release(&release)?;
    }
    // Released, no longer held (delivered after an earlier release, or deleted), or not this
    // user's: forgotten. One that could not be read is kept for the next try.
    store.forget_held(server, name, &forget).await?;
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

/// The local user whose website mail the queued message `id` is: the one its first marker header
/// names, when that marker carries this message's own queue ID (as the milter decided it).
fn owner(id: &str) -> Result<Option<String>, postqueue::QueueError> {
    let marker = postqueue::first_header(id, who::MARKER)?;
    Ok(marker.and_then(|m| who::uid(&m, id)).map(who::name_of))
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
