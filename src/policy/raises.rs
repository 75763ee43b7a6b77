//! The temporary raises this daemon has seen (`erl:raise:<email>`, written by `raise`), so that
//! a raised sender's caps are built right the first time; the script tells when one was set,
//! changed or expired, and the request is asked again. Bounded: past the bound it starts afresh
//! (each sender then costs one retry).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::config::MAX_CAP;
use crate::sender::Mailbox;
use crate::window::Rate;

const MAX_SENDERS: usize = 10_000;

#[derive(Debug, Default)]
pub(super) struct Raises {
    seen: Mutex<HashMap<Mailbox, String>>,
    /// The last unreadable raise, logged once.
    bad: Mutex<Option<String>>,
}

impl Raises {
    /// The raise last seen for the sender.
    pub fn get(&self, sender: &Mailbox) -> Option<String> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).get(sender).cloned()
    }

    /// Records what the store found (`""`: none); returns it as the raise to build with.
    pub fn set(&self, sender: &Mailbox, raise: String) -> Option<String> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if raise.is_empty() {
            seen.remove(sender);
            return Some(raise);
        }
        if seen.len() >= MAX_SENDERS {
            seen.clear();
        }
        seen.insert(sender.clone(), raise.clone());
        Some(raise)
    }

    /// `500/1d 100/1h` -> its caps; `None` for none or an unreadable one (logged once: the
    /// sender's own caps then apply).
    pub fn parse(&self, raise: &str) -> Option<Vec<Rate>> {
        if raise.is_empty() {
            return None;
        }
        match Rate::parse_list(raise, MAX_CAP) {
            Ok(rates) => Some(rates),
            result => {
                let mut bad = self.bad.lock().unwrap_or_else(PoisonError::into_inner);
                if bad.as_deref() != Some(raise) {
                    tracing::warn!(
                        "erl raise unreadable value={raise:?} ({result:?}); the sender's own caps apply"
                    );
                    *bad = Some(raise.to_owned());
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;
    use crate::window::Window;

    #[test]
    fn remembers_and_parses_raises() {
        let r = Raises::default();
        let bob = normalize("bob@example.com").expect("valid");
        assert_eq!(r.get(&bob), None);
        r.set(&bob, "500/1d 100/1h".into());
        assert_eq!(r.get(&bob).as_deref(), Some("500/1d 100/1h"));
        assert_eq!(
            r.parse("500/1d 100/1h"),
            Some(vec![Rate::rcpt(500, Window::Day), Rate::rcpt(100, Window::HOUR)])
        );
        assert_eq!(r.parse("lots"), None);
        assert_eq!(r.parse(""), None);
        assert_eq!(r.set(&bob, String::new()).as_deref(), Some(""));
        assert_eq!(r.get(&bob), None);
    }
}
