//! Who submitted a message: the local Unix user, from what a non-SMTP milter can see.
//!
//! Postfix's pickup records the submitting uid in the Received header it prepends, `Received:
//! by HOST (Postfix, from userid N) id QUEUEID; DATE`, but never shows that header to a milter
//! (milter8.c hides Postfix's own Received header, as Sendmail does). Everything a milter does
//! see can be set by the sender (`sendmail -f`, the message's own headers). So the pickup
//! service gets a cleanup of its own whose `header_checks` copies the uid and the queue ID into
//! a header placed before that Received header (`postfix/pickup_header_checks`), which the
//! milter sees: [`MARKER`]`: N QUEUEID`. Only the first such header counts, and only when its
//! queue ID is this message's (a sender cannot know its queue ID in advance). The header is
//! delivered with the message, next to the Received header that says the same.

/// The header the pickup cleanup's `header_checks` prepends.
pub const MARKER: &str = "X-Email-Ratelimit-Uid";

/// The name counted when no valid marker is found (the pickup cleanup is not set up, or the
/// message did not come through pickup): counted, never held.
pub const UNKNOWN: &str = crate::config::UNKNOWN_LOCAL_USER;

/// The uid in the first marker header's value `"N QUEUEID"`, when its queue ID is `queue_id`.
#[must_use]
pub fn uid(marker: &str, queue_id: &str) -> Option<u32> {
    let mut words = marker.split_ascii_whitespace();
    let uid = words.next()?.parse().ok()?;
    let id = words.next()?;
    (words.next().is_none() && !queue_id.is_empty() && id == queue_id).then_some(uid)
}

/// Messages without a valid marker: said when the first comes, then at most once a minute
/// while they keep coming, with how many came since.
#[derive(Debug, Default)]
pub struct Unmarked(std::sync::Mutex<(Option<std::time::Instant>, u64)>);

impl Unmarked {
    /// Notes one such message at `now`; `Some(n)` when it is time to warn about the `n` seen
    /// since the last warning (this one included).
    pub fn note(&self, now: std::time::Instant) -> Option<u64> {
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.1 += 1;
        match seen.0 {
            Some(last) if now.duration_since(last) < WARN_EVERY => None,
            _ => {
                let n = seen.1;
                *seen = (Some(now), 0);
                Some(n)
            }
        }
    }
}

/// How often the warning about unmarked mail repeats while it happens.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a uid's name is remembered (a website's mail comes in bursts; NSS may be slow).
const NAME_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Recently resolved names by uid.
#[derive(Default)]
pub struct Names(std::sync::Mutex<std::collections::HashMap<u32, (String, std::time::Instant)>>);

impl Names {
    /// The name of `uid` resolved within the last minute, if any.
    #[must_use]
    pub fn get(&self, uid: u32) -> Option<String> {
        let names = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        names.get(&uid).filter(|(_, at)| at.elapsed() < NAME_TTL).map(|(name, _)| name.clone())
    }

    /// Remembers `name` for `uid` (at most a few thousand users: the map is cleared when it grows).
    pub fn put(&self, uid: u32, name: &str) {
        let mut names = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if names.len() >= 10_000 {
            names.clear();
        }
        names.insert(uid, (name.to_owned(), std::time::Instant::now()));
    }
}

/// The login name of `uid` (the passwd entry, through NSS), or `uid<N>` without one.
#[must_use]
pub fn name_of(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) if crate::config::is_local_name(&user.name) => user.name,
        _ => format!("uid{uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_marker_with_this_queue_id_counts() {
        assert_eq!(uid("33 4XyZ12AB", "4XyZ12AB"), Some(33));
        assert_eq!(uid("33 4XyZ12AB", "5AAAAAAA"), None, "another message's (forged or copied)");
        assert_eq!(uid("33 4XyZ12AB", ""), None);
        for bad in ["", "33", "x 4XyZ12AB", "33 4XyZ12AB more", "-1 4XyZ12AB"] {
            assert_eq!(uid(bad, "4XyZ12AB"), None, "{bad:?}");
        }
    }

    #[test]
    fn unmarked_mail_is_warned_about_at_once_then_once_a_minute_with_the_count() {
        let unmarked = Unmarked::default();
        let t0 = std::time::Instant::now();
        assert_eq!(unmarked.note(t0), Some(1));
        for s in 1..=5 {
            assert_eq!(unmarked.note(t0 + std::time::Duration::from_secs(s)), None);
        }
        assert_eq!(unmarked.note(t0 + WARN_EVERY), Some(6), "the five quiet ones and this one");
        assert_eq!(unmarked.note(t0 + WARN_EVERY + std::time::Duration::from_secs(1)), None);
    }

    #[test]
    fn names_come_from_passwd_or_the_uid() {
        assert_eq!(name_of(0), "root");
        assert_eq!(name_of(4_000_000_123), "uid4000000123");
        let names = Names::default();
        assert_eq!(names.get(33), None);
        names.put(33, "www-data");
        assert_eq!(names.get(33).as_deref(), Some("www-data"));
    }
}
