//! SASL username -> normalized mailbox key: trimmed, lowercased, IDNA (punycode) domain, the way
//! ISPConfig stores `mail_user.email`. What the key is used for is left to `policy` and `store`.

use std::fmt;

/// The longest username we count: RFC 5321 caps an address at 320 octets (64 + 1 + 255).
pub const MAX_LEN: usize = 320;

/// A normalized sender: the name of its counter and its cap.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox(String);

impl Mailbox {
    /// The normalized address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain (IDNA ASCII), for a name that has one (a local user has none).
    #[must_use]
    pub fn domain(&self) -> Option<&str> {
        if self.is_local() {
            return None;
        }
        self.0.rsplit_once('@').map(|(_, d)| d)
    }

    /// A local user of `server` (website mail): `local:<name>@<server>`. A SASL name can never
    /// be one (`:` is refused there).
    #[must_use]
    pub fn local(name: &str, server: &str) -> Self {
        Self(format!("{LOCAL_PREFIX}{name}@{server}"))
    }

    /// Whether this is a local user ([`Self::local`]).
    #[must_use]
    pub fn is_local(&self) -> bool {
        self.0.starts_with(LOCAL_PREFIX)
    }

    /// A local user's name (`web12` of `local:web12@host`).
    #[must_use]
    pub fn local_name(&self) -> Option<&str> {
        self.0.strip_prefix(LOCAL_PREFIX).map(|rest| rest.rsplit_once('@').map_or(rest, |(n, _)| n))
    }
}

/// How a local user's counter name starts.
pub const LOCAL_PREFIX: &str = "local:";

/// Whether `raw` can be a mail recipient as it is: an address with a domain, plain ASCII, none
/// of `,<>";()[\` or a space, not starting with `-` (which would add recipients, break a header
/// or read as an option). The admin addresses must be; a sender that is not gets no mail of its
/// own.
#[must_use]
pub fn is_plain_address(raw: &str) -> bool {
    normalize(raw).is_ok_and(|m| m.domain().is_some())
        && raw.is_ascii()
        && !raw.contains([',', '<', '>', '"', ';', ' ', '(', ')', '\\', '['])
        && !raw.starts_with('-')
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a username cannot be counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderError {
    #[error("empty username")]
    Empty,
    #[error("username longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("username holds a control, whitespace or `:` character")]
    BadCharacter,
    #[error("username has an invalid domain")]
    BadDomain,
    #[error("username `global` is reserved for the server-wide counter")]
    Reserved,
}

/// Normalizes a SASL username (or a configured address) into a [`Mailbox`].
///
/// # Errors
/// [`SenderError`] when the name is empty after trimming, too long, holds control characters or
/// whitespace or `:`, has a domain IDNA rejects, or is the reserved word `global`.
pub fn normalize(raw: &str) -> Result<Mailbox, SenderError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(SenderError::Empty);
    }
    if name.len() > MAX_LEN {
        return Err(SenderError::TooLong);
    }
    // `:` separates the parts of every Redis key (`erl:lock:<email>`, `erl:<window>:<who>`): a
    // name holding one could address another sender's or the server's counters.
    if name.chars().any(|c| c.is_control() || c.is_whitespace() || c == ':') {
        return Err(SenderError::BadCharacter);
    }
    // Most names are plain lowercase ASCII already: taken as they are (what the rules below
    // make of them too), without three allocations.
    let plain = name.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase());
    let normalized = match name.rsplit_once('@') {
        Some((local, domain)) if plain && !local.is_empty() && is_plain_ascii_domain(domain) => {
            if domain.split('.').any(str::is_empty) {
                return Err(SenderError::BadDomain);
            }
            name.to_owned()
        }
        Some((local, domain)) => {
            if local.is_empty() || domain.is_empty() {
                return Err(SenderError::BadDomain);
            }
            // STD3 rules: letters, digits and hyphens only, as in every mail domain ISPConfig
            // accepts; empty labels are refused too. Plain ASCII domains (nearly all) only need
            // lowercasing; anything else, punycode labels included, goes through IDNA.
            let domain = if is_plain_ascii_domain(domain) {
                std::borrow::Cow::Owned(domain.to_ascii_lowercase())
            } else {
                idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::STD3)
                    .map_err(|_| SenderError::BadDomain)?
            };
            if domain.split('.').any(str::is_empty) {
                return Err(SenderError::BadDomain);
            }
            format!("{}@{}", local.to_lowercase(), domain)
        }
        None => name.to_lowercase(),
    };
    // Punycode can make a name longer than the raw UTF-8 form.
    if normalized.len() > MAX_LEN {
        return Err(SenderError::TooLong);
    }
    if normalized == "global" {
        return Err(SenderError::Reserved);
    }
    Ok(Mailbox(normalized))
}

/// Normalizes a domain name alone (a `[[limits.domain]]` entry, `status @DOMAIN`) exactly as the
/// domain of a sender: lowercase IDNA ASCII.
///
/// # Errors
/// [`SenderError::BadDomain`] (or another [`SenderError`]) when it could not be a sender's domain.
pub fn normalize_domain(raw: &str) -> Result<String, SenderError> {
    if raw.contains('@') {
        return Err(SenderError::BadDomain);
    }
    let mailbox = normalize(&format!("x@{raw}"))?;
    mailbox.domain().map(str::to_owned).ok_or(SenderError::BadDomain)
}

/// Letters, digits, hyphens and dots, and no `xn--` label (those IDNA must validate).
fn is_plain_ascii_domain(domain: &str) -> bool {
    domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !domain.split('.').any(|label| label.len() >= 4 && label[..4].eq_ignore_ascii_case("xn--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalize(raw).map(|m| m.to_string()).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn lowercases_and_trims() {
        assert_eq!(ok("  Alice@Example.COM "), "alice@example.com");
        assert_eq!(ok("BOB"), "bob");
    }

    #[test]
    fn converts_unicode_domain_to_punycode() {
        assert_eq!(ok("Jörg@Bücher.Example"), "jörg@xn--bcher-kva.example");
        assert_eq!(ok("x@xn--bcher-kva.example"), "x@xn--bcher-kva.example");
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_idna() {
        for domain in ["Example.COM", "a-b.example", "x1.y2.z3", "-lead.example", "trail-.example"] {
            let fast = normalize(&format!("u@{domain}")).map(|m| m.to_string());
            let idna = idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::STD3)
                .map(|d| format!("u@{d}"))
                .map_err(|_| SenderError::BadDomain);
            assert_eq!(fast, idna, "{domain}");
        }
        assert_eq!(
            normalize("u@XN--BCHER-KVA.example").map(|m| m.to_string()),
            Ok("u@xn--bcher-kva.example".into())
        );
        assert_eq!(
            normalize("u@xn--zz.example"),
            Err(SenderError::BadDomain),
            "invalid punycode goes through IDNA"
        );
    }

    #[test]
    fn splits_at_the_last_at_sign() {
        assert_eq!(ok("\"a@b\"@Example.org"), "\"a@b\"@example.org");
        assert_eq!(normalize("\"a@b\"@Example.org").expect("valid").domain(), Some("example.org"));
        assert_eq!(normalize("Jörg@Bücher.Example").expect("valid").domain(), Some("xn--bcher-kva.example"));
        assert_eq!(normalize("bob").expect("valid").domain(), None);
    }

    #[test]
    fn rejects_junk() {
        assert_eq!(normalize(""), Err(SenderError::Empty));
        assert_eq!(normalize("   "), Err(SenderError::Empty));
        assert_eq!(normalize("a b@example.com"), Err(SenderError::BadCharacter));
        assert_eq!(normalize("a\u{7}@example.com"), Err(SenderError::BadCharacter));
        assert_eq!(normalize("a@exa\tmple.com"), Err(SenderError::BadCharacter));
        assert_eq!(normalize("@example.com"), Err(SenderError::BadDomain));
        assert_eq!(normalize("alice@"), Err(SenderError::BadDomain));
        assert_eq!(normalize("alice@exa_mple..com!"), Err(SenderError::BadDomain));
        // The same rules on the plain lowercase path.
        assert_eq!(normalize("alice@example..com"), Err(SenderError::BadDomain));
        assert_eq!(normalize("alice@.example.com"), Err(SenderError::BadDomain));
        assert_eq!(normalize("global"), Err(SenderError::Reserved));
        assert_eq!(ok("alice@example.com"), "alice@example.com");
        assert_eq!(normalize("GLOBAL"), Err(SenderError::Reserved));
        assert_eq!(normalize("lock:alice@example.com"), Err(SenderError::BadCharacter));
        assert_eq!(normalize("alice@example.com:x"), Err(SenderError::BadCharacter));
    }

    #[test]
    fn domains_alone_normalize_like_senders_domains() {
        assert_eq!(normalize_domain("Bücher.Example").as_deref(), Ok("xn--bcher-kva.example"));
        assert_eq!(normalize_domain("EXAMPLE.com").as_deref(), Ok("example.com"));
        for bad in ["a@b.c", "b..c", "", "exa mple.com", "x:y"] {
            assert!(normalize_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn enforces_the_length_bound() {
        let at_limit = format!("{}@example.com", "a".repeat(MAX_LEN - 12));
        assert_eq!(at_limit.len(), MAX_LEN);
        assert!(normalize(&at_limit).is_ok());
        let over = format!("{}@example.com", "a".repeat(MAX_LEN - 11));
        assert_eq!(normalize(&over), Err(SenderError::TooLong));
    }
}
