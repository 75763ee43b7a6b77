//! `[replies]`: the admin's own reply texts, one template per case and window class, with the
//! placeholders `{user} {limit} {unit} {window} {domain} {n}` (`{count}` is `{n}`; `{unit}` is
//! `recipients` or `messages`, singular for a limit of 1). A case without a
//! template keeps the contract's text (DESIGN "Replies").

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};
use crate::window::Window;

/// Longest template accepted: an SMTP reply line is at most 512 bytes with its code.
const MAX_TEMPLATE: usize = 400;

/// One reply case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Mailbox(WindowClass),
    Domain(WindowClass),
    Server(WindowClass),
    Locked,
    OversizeMailbox,
    OversizeDomain,
    OversizeServer,
    PerMessage,
}

/// `_1d`, `_1h` or `_other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowClass {
    Day,
    Hour,
    Other,
}

impl WindowClass {
    #[must_use]
    pub fn of(window: Window) -> Self {
        match window {
            Window::Day => Self::Day,
            Window::HOUR => Self::Hour,
            Window::Minutes(_) => Self::Other,
        }
    }
}

/// What a template is filled with.
#[derive(Debug, Clone, Copy)]
pub struct Fill<'a> {
    pub user: &'a str,
    pub limit: u64,
    pub window: Window,
    pub domain: &'a str,
    /// This message's recipients.
    pub n: u64,
    /// What the cap counts: `recipients`, `messages`, `recipient`, `message`.
    pub unit: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    User,
    Limit,
    Window,
    Domain,
    N,
    Unit,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; `key` names it in errors.
    fn parse(key: &'static str, text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Err(invalid(key, "empty: leave the key out to keep the built-in text"));
        }
        if text.len() > MAX_TEMPLATE {
            return Err(invalid(
                key,
                format!("{} bytes; at most {MAX_TEMPLATE} fit an SMTP reply", text.len()),
            ));
        }
        if text.contains(['\n', '\r']) {
            return Err(invalid(key, "a reply is one line: no newline"));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| invalid(key, format!("unclosed {{ in {text:?}")))?;
            pieces.push(match &after[..close] {
                "user" => Piece::User,
                "limit" => Piece::Limit,
                "window" => Piece::Window,
                "domain" => Piece::Domain,
                "n" | "count" => Piece::N,
                "unit" => Piece::Unit,
                other => {
                    return Err(invalid(
                        key,
                        format!("unknown placeholder {{{other}}}; known: {{user}} {{limit}} {{unit}} {{window}} {{domain}} {{n}}"),
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(invalid(key, format!("a }} without its {{ in {text:?}")));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self { source: text.to_owned(), pieces })
    }

    /// The text with the placeholders filled in.
    #[must_use]
    pub fn render(&self, fill: &Fill<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::User => out.push_str(fill.user),
                Piece::Limit => out.push_str(&fill.limit.to_string()),
                Piece::Window => match fill.window.adjective() {
                    Some(adj) => out.push_str(adj),
                    None => out.push_str(&fill.window.per()),
                },
                Piece::Domain => out.push_str(fill.domain),
                Piece::N => out.push_str(&fill.n.to_string()),
                Piece::Unit => out.push_str(fill.unit),
            }
        }
        out
    }

    /// The template as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// The templates an admin set; `None`: the built-in text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replies {
    templates: Vec<(&'static str, Case, Template)>,
}

impl Replies {
    /// The template for `case`, if the admin set one.
    #[must_use]
    pub fn get(&self, case: Case) -> Option<&Template> {
        self.templates.iter().find(|(_, c, _)| *c == case).map(|(_, _, t)| t)
    }

    /// Every template set, by key (for `check-config`).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Template)> {
        self.templates.iter().map(|(k, _, t)| (*k, t))
    }
}

/// `[replies]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawReplies {
    #[serde(skip_serializing_if = "Option::is_none")]
    mailbox_1d: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mailbox_1h: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mailbox_other: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain_1d: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain_1h: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain_other: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_1d: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_1h: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_other: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locked: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oversize_mailbox: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oversize_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oversize_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_message: Option<String>,
}

pub(super) fn validate_replies(raw: &RawReplies) -> Result<Replies, ConfigError> {
    use WindowClass::{Day, Hour, Other};
    let all: [(&'static str, Case, &Option<String>); 14] = [
        ("replies.mailbox_1d", Case::Mailbox(Day), &raw.mailbox_1d),
        ("replies.mailbox_1h", Case::Mailbox(Hour), &raw.mailbox_1h),
        ("replies.mailbox_other", Case::Mailbox(Other), &raw.mailbox_other),
        ("replies.domain_1d", Case::Domain(Day), &raw.domain_1d),
        ("replies.domain_1h", Case::Domain(Hour), &raw.domain_1h),
        ("replies.domain_other", Case::Domain(Other), &raw.domain_other),
        ("replies.server_1d", Case::Server(Day), &raw.server_1d),
        ("replies.server_1h", Case::Server(Hour), &raw.server_1h),
        ("replies.server_other", Case::Server(Other), &raw.server_other),
        ("replies.locked", Case::Locked, &raw.locked),
        ("replies.oversize_mailbox", Case::OversizeMailbox, &raw.oversize_mailbox),
        ("replies.oversize_domain", Case::OversizeDomain, &raw.oversize_domain),
        ("replies.oversize_server", Case::OversizeServer, &raw.oversize_server),
        ("replies.per_message", Case::PerMessage, &raw.per_message),
    ];
    let mut templates = Vec::new();
    for (key, case, text) in all {
        if let Some(text) = text {
            templates.push((key, case, Template::parse(key, text)?));
        }
    }
    Ok(Replies { templates })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Result<Template, String> {
        Template::parse("replies.mailbox_1d", text).map_err(|e| e.to_string())
    }

    #[test]
    fn placeholders_are_filled_and_mistakes_named() {
        let fill = Fill {
            user: "alice@example.com",
            limit: 10,
            window: Window::parse("15m").expect("window"),
            domain: "example.com",
            n: 3,
            unit: "recipients",
        };
        let tpl = t("{user}: max {limit} {unit} {window} ({domain}, this one {n}/{count}); see https://help.example.com/limits")
            .expect("valid");
        assert_eq!(
            tpl.render(&fill),
            "alice@example.com: max 10 recipients per 15 minutes (example.com, this one 3/3); see https://help.example.com/limits"
        );
        let daily = Fill { window: Window::Day, ..fill };
        assert_eq!(
            t("Ihr {window}es Limit von {limit}").expect("valid").render(&daily),
            "Ihr dailyes Limit von 10"
        );
        let one = Fill { limit: 1, unit: "message", ..fill };
        assert_eq!(t("{limit} {unit} {window}").expect("valid").render(&one), "1 message per 15 minutes");
        for (bad, said) in [
            ("{user} {nope}", "unknown placeholder {nope}"),
            ("{user", "unclosed {"),
            ("x } y", "a } without its {"),
            ("", "empty"),
            ("a\nb", "no newline"),
        ] {
            let e = t(bad).expect_err(bad);
            assert!(e.starts_with("replies.mailbox_1d: ") && e.contains(said), "{bad:?}: {e}");
        }
        assert!(t(&"x".repeat(401)).expect_err("long").contains("401 bytes"));
    }

    #[test]
    fn only_the_cases_set_have_a_template() {
        let raw = RawReplies { server_1h: Some("{user}: busy".into()), ..RawReplies::default() };
        let r = validate_replies(&raw).expect("valid");
        assert!(r.get(Case::Server(WindowClass::Hour)).is_some());
        assert!(r.get(Case::Server(WindowClass::Day)).is_none());
        assert_eq!(
            r.iter().map(|(k, t)| (k, t.as_str())).collect::<Vec<_>>(),
            [("replies.server_1h", "{user}: busy")]
        );
    }
}
