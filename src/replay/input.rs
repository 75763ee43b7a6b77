//! Replay input: one timestamped policy request per line, as JSON lines (Postfix's attribute
//! names) or as the daemon's own journal (`journalctl -u email-ratelimit -o json`). Each becomes
//! the wire text Postfix would send, decoded by the daemon's own decoder, so a replayed request
//! means exactly what the live one meant.

use bytes::BytesMut;
use chrono::DateTime;

use crate::protocol::{Decoder, Request};

/// What a `--input jsonl` line should be, for the error of one that is not.
pub const JSONL_EXPECTED: &str = "one JSON object per line, with ts and Postfix's policy attribute names (--input journal reads journalctl -o json, --input maillog Postfix's log)";

/// What a `--input journal` line should be.
pub const JOURNAL_EXPECTED: &str =
    "journalctl -u email-ratelimit -o json: one JSON object per line (--input maillog reads Postfix's log)";

/// What a line holds. (Built and consumed one line at a time: the size of a request is fine.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Line {
    /// A request and its time (unix seconds, fractional).
    Request(f64, Request),
    /// Not a request (another journal line, an empty line).
    Skipped,
}

/// A line that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct InputError {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// The policy attributes a JSON line may carry (others are ignored, as Postfix's extra ones are).
const ATTRIBUTES: [&str; 8] = [
    "sasl_username",
    "client_address",
    "recipient_count",
    "size",
    "sender",
    "recipient",
    "instance",
    "protocol_state",
];

/// Decodes `name=value` lines through the daemon's own decoder.
fn request(pairs: &[(&str, String)]) -> Result<Request, String> {
    let mut text = String::with_capacity(256);
    for (name, value) in pairs {
        if value.contains(['\n', '\r']) {
            return Err(format!("{name} holds a line break"));
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    text.push('\n');
    let mut buf = BytesMut::from(text.as_bytes());
    match Decoder::new().decode(&mut buf) {
        Ok(Some(req)) => Ok(req),
        Ok(None) => Err("incomplete request".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A JSON line's value: a string (borrowed from the line unless it has escapes) or a number;
/// `null` is no value. Read straight from the text, without building a map per line (replay
/// reads a month of lines).
#[derive(Debug)]
enum Value<'a> {
    Text(std::borrow::Cow<'a, str>),
    Number(serde_json::Number),
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Value<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Value<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a number (neither an array, an object nor true/false)")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Value::Text(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Value::Text(v.to_owned().into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Value::Number(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Value::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("not a number"))
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

impl Value<'_> {
    fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone().into_owned(),
            Value::Number(n) => n.to_string(),
        }
    }
}

/// The fields of a JSON line that replay reads; others are ignored, as Postfix's extra ones are.
#[derive(Debug, serde::Deserialize)]
struct JsonLine<'a> {
    #[serde(borrow)]
    ts: Option<Value<'a>>,
    #[serde(borrow)]
    sasl_username: Option<Value<'a>>,
    #[serde(borrow)]
    client_address: Option<Value<'a>>,
    #[serde(borrow)]
    recipient_count: Option<Value<'a>>,
    #[serde(borrow)]
    size: Option<Value<'a>>,
    #[serde(borrow)]
    sender: Option<Value<'a>>,
    #[serde(borrow)]
    recipient: Option<Value<'a>>,
    #[serde(borrow)]
    instance: Option<Value<'a>>,
    #[serde(borrow)]
    protocol_state: Option<Value<'a>>,
}

/// The time of a line: unix seconds (may be fractional) or RFC 3339.
fn timestamp(value: &Value<'_>) -> Result<f64, String> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("ts {n} is not a number")),
        Value::Text(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros() as f64 / 1e6)
            .map_err(|e| format!("ts {s:?}: {e}")),
    }
}

/// One JSON line: `{"ts": ..., "sasl_username": ..., "recipient_count": 3, ...}`.
///
/// # Errors
/// A line that is not a JSON object with a `ts`.
pub fn jsonl(text: &str, line: usize) -> Result<Line, InputError> {
    let bad = |reason: String| InputError { line, reason };
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(Line::Skipped);
    }
    if !trimmed.starts_with('{') {
        // Say what it is not, rather than serde's "expected struct".
        return Err(bad(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => "not a JSON object".into(),
            Err(e) => e.to_string(),
        }));
    }
    let fields: JsonLine<'_> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let ts = timestamp(fields.ts.as_ref().ok_or_else(|| bad("no ts".into()))?).map_err(bad)?;
    let values = [
        &fields.sasl_username,
        &fields.client_address,
        &fields.recipient_count,
        &fields.size,
        &fields.sender,
        &fields.recipient,
        &fields.instance,
        &fields.protocol_state,
    ];
    let mut pairs: Vec<(&str, String)> = Vec::with_capacity(ATTRIBUTES.len() + 1);
    pairs.push(("request", "smtpd_access_policy".into()));
    for (name, value) in ATTRIBUTES.into_iter().zip(values) {
        if let Some(v) = value {
            pairs.push((name, v.text()));
        }
    }
    if fields.protocol_state.is_none() {
        pairs.push(("protocol_state", "END-OF-MESSAGE".into()));
    }
    request(&pairs).map(|r| Line::Request(ts, r)).map_err(bad)
}

/// One line of `journalctl -o json`: only the daemon's `erl ok` / `erl DEFER` decision lines are
/// requests (user, rcpt, client, stage), timed by `__REALTIME_TIMESTAMP`; the rest is skipped.
///
/// # Errors
/// A line that is not JSON.
pub fn journal(text: &str, line: usize) -> Result<Line, InputError> {
    let bad = |reason: String| InputError { line, reason };
    if text.trim().is_empty() {
        return Ok(Line::Skipped);
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let Some(message) = value["MESSAGE"].as_str() else { return Ok(Line::Skipped) };
    let decision = message.strip_prefix("erl ok ").or_else(|| message.strip_prefix("erl DEFER "));
    let Some(fields) = decision else { return Ok(Line::Skipped) };
    let fields = fields.strip_prefix("(log-only) ").unwrap_or(fields);
    let field = |name: &str| {
        fields
            .split(' ')
            .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
    };
    let (Some(user), Some(rcpt)) = (field("user"), field("rcpt")) else { return Ok(Line::Skipped) };
    let micros: f64 = value["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no __REALTIME_TIMESTAMP".into()))?;
    let pairs = [
        ("request", "smtpd_access_policy".to_owned()),
        ("protocol_state", field("stage").unwrap_or_else(|| "END-OF-MESSAGE".into())),
        ("sasl_username", user),
        ("recipient_count", rcpt),
        ("client_address", field("client").unwrap_or_default()),
        ("queue_id", field("queue_id").unwrap_or_default()),
    ];
    request(&pairs).map(|r| Line::Request(micros / 1e6, r)).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::State;

    #[test]
    fn json_lines_mean_what_postfix_would_send() {
        let Line::Request(ts, r) = jsonl(
            r#"{"ts": 1795372800.25, "sasl_username": "a@x.org", "recipient_count": 3, "client_address": "192.0.2.1", "size": "2048"}"#,
            1,
        )
        .expect("valid") else {
            panic!("skipped")
        };
        assert!((ts - 1_795_372_800.25).abs() < 1e-6);
        assert_eq!(
            (r.sasl_username.as_str(), r.recipient_count, r.size.as_str()),
            ("a@x.org", Some(3), "2048")
        );
        assert_eq!(r.protocol_state, State::EndOfMessage, "the default stage");
        let Line::Request(ts, r) =
            jsonl(r#"{"ts": "2026-11-22T18:40:00Z", "sasl_username": "a", "protocol_state": "RCPT"}"#, 2)
                .expect("ok")
        else {
            panic!("skipped")
        };
        assert_eq!((ts, r.protocol_state), (1_795_372_800.0, State::Rcpt));
        for (text, said) in [("{}", "no ts"), ("[1]", "not a JSON object"), (r#"{"ts": true}"#, "neither")] {
            let e = jsonl(text, 7).expect_err(text);
            assert!(e.to_string().starts_with("line 7: ") && e.to_string().contains(said), "{e}");
        }
        assert!(matches!(jsonl("  ", 3), Ok(Line::Skipped)));
    }

    #[test]
    fn journal_lines_are_the_daemons_decisions() {
        let ok = r#"{"__REALTIME_TIMESTAMP": "1795372800500000", "MESSAGE": "erl ok user=a@x.org rcpt=3 mailbox=3/50 global=3/999 client=192.0.2.1 queue_id=Q1 stage=END-OF-MESSAGE"}"#;
        let Line::Request(ts, r) = journal(ok, 1).expect("ok") else { panic!("skipped") };
        assert_eq!((ts, r.sasl_username.as_str(), r.recipient_count), (1_795_372_800.5, "a@x.org", Some(3)));
        let deferred = r#"{"__REALTIME_TIMESTAMP": "1", "MESSAGE": "erl DEFER (log-only) user=b@x.org rcpt=1 mailbox=51/50 global=4/999 client=192.0.2.2 queue_id=Q2 stage=END-OF-MESSAGE cap=mailbox window=1d used=50/50 mode=log-only"}"#;
        assert!(matches!(journal(deferred, 2), Ok(Line::Request(_, r)) if r.sasl_username == "b@x.org"));
        for other in [
            r#"{"MESSAGE": "erl lock user=c by=auto"}"#,
            r#"{"MESSAGE": "email-ratelimit 0.1 serving"}"#,
            "{}",
        ] {
            assert!(matches!(journal(other, 3), Ok(Line::Skipped)), "{other}");
        }
    }
}
