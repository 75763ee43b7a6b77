//! Which message a request is about, so that a client retrying a refused message is one refusal
//! (DESIGN "Refusals that lock"): its transaction and a fingerprint of what stays the same when
//! it is sent again.

use crate::protocol::Request;
use crate::sender::Mailbox;
use crate::store::Message;

/// The message of `req`, sent by `sender`: Postfix's `instance`, and a hash of the SASL user,
/// the envelope sender, `recipient_count`, `size` as Postfix sends it at this stage and the
/// `recipient` when there is one. SHA-1 because every server sharing a Redis must compute the
/// same value, whatever its build; it only has to tell messages apart, not resist forgery (a
/// sender who changes its message is refused again, as it should be).
pub(super) fn message<'a>(req: &'a Request, sender: &Mailbox) -> Message<'a> {
    let mut hash = sha1_smol::Sha1::new();
    let count = req.recipient_count.map(|n| n.to_string()).unwrap_or_default();
    for part in [sender.as_str(), &req.sender, &count, req.size.trim(), &req.recipient] {
        // A separator that no attribute value holds: ("ab", "c") and ("a", "bc") differ.
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    let digest = hash.digest().bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Message { instance: &req.instance, fingerprint: u64::from_be_bytes(first) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::State;
    use crate::sender::normalize;

    fn req(instance: &str, size: &str, count: u64, recipient: &str) -> Request {
        Request {
            protocol_state: State::EndOfMessage,
            sasl_username: "Alice@Example.com".into(),
            recipient_count: Some(count),
            instance: instance.into(),
            sender: "alice@example.com".into(),
            size: size.into(),
            recipient: recipient.into(),
            ..Request::default()
        }
    }

    #[test]
    fn a_retry_has_the_same_fingerprint_and_another_message_does_not() {
        let alice = normalize("alice@example.com").expect("valid");
        let first = req("a1.1", "1234", 3, "");
        let fp = |r: &Request| message(r, &alice).fingerprint;
        assert_eq!(message(&first, &alice).instance, "a1.1");
        assert_eq!(fp(&first), fp(&req("b7.2", "1234", 3, "")), "a new transaction, the same message");
        assert_ne!(fp(&first), fp(&req("a1.1", "1235", 3, "")), "another size");
        assert_ne!(fp(&first), fp(&req("a1.1", "1234", 4, "")), "another recipient count");
        assert_ne!(fp(&req("", "1", 1, "x@y.org")), fp(&req("", "1", 1, "z@y.org")), "another recipient");
        let mut other = first.clone();
        other.sender = "bounce@example.com".into();
        assert_ne!(fp(&first), fp(&other), "another envelope sender");
        let bob = normalize("bob@example.com").expect("valid");
        assert_ne!(fp(&first), message(&first, &bob).fingerprint, "another user");
        // Stable across builds and servers (every server sharing a Redis must agree): pinned to
        // the first 8 bytes of SHA-1("alice@example.com\nalice@example.com\n3\n1234\n\n").
        assert_eq!(fp(&req("", "1234", 3, "")), 0x13e4_e757_3c3d_beaa);
        assert_eq!(fp(&req("", "1234", 3, "")), fp(&req("x", " 1234 ", 3, "")));
    }
}
