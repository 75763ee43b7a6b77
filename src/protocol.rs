//! The Postfix policy delegation wire format: bytes -> [`Request`], [`Action`] -> bytes.
//!
//! Pure: no I/O, no knowledge of limits or counters. A request is a run of `name=value` lines
//! ended by an empty line (SMTPD_POLICY_README); several may arrive in one read, and a read may end
//! mid-line, so [`Decoder::decode`] tells "need more bytes" (`Ok(None)`) apart from bad input
//! (`Err`). Everything from the network is bounded: line length, request size, attribute count.

use bytes::{Buf, BytesMut};

/// Longest accepted line, newline included.
pub const MAX_LINE: usize = 8 * 1024;
/// Largest accepted request, all lines together.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Most attributes accepted in one request.
pub const MAX_ATTRIBUTES: usize = 256;

/// The SMTP stage Postfix asks about (`protocol_state`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum State {
    Rcpt,
    Data,
    EndOfMessage,
    /// Any other stage (CONNECT, HELO, MAIL, VRFY, ETRN, ...): nothing to do there.
    Other(String),
    /// The attribute was missing.
    #[default]
    Missing,
}

impl State {
    fn parse(value: &str) -> Self {
        match value {
            "RCPT" => Self::Rcpt,
            "DATA" => Self::Data,
            "END-OF-MESSAGE" => Self::EndOfMessage,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The name Postfix uses for the stage.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Rcpt => "RCPT",
            Self::Data => "DATA",
            Self::EndOfMessage => "END-OF-MESSAGE",
            Self::Other(s) => s,
            Self::Missing => "",
        }
    }
}

/// The attributes of one policy request that the daemon uses; the others are skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub protocol_state: State,
    pub sasl_username: String,
    /// The value when it is a decimal integer (saturated at `u64::MAX`, however long); `None`
    /// when absent, empty, signed or not a number. What that means is the policy's to say.
    pub recipient_count: Option<u64>,
    pub client_address: String,
    pub queue_id: String,
    /// The SMTP transaction (`instance`): DATA and END-OF-MESSAGE of one message share it.
    pub instance: String,
    /// The envelope sender (`sender`), the message `size` as Postfix sends it at this stage, and
    /// the `recipient` when there is one: with the user and the count they tell a retry of the
    /// same message apart from a new one.
    pub sender: String,
    pub size: String,
    pub recipient: String,
    /// `erl_dry_run=yes` (sent by `probe`, never by Postfix): answer what would be answered now
    /// and change nothing.
    pub dry_run: bool,
    /// Set when a line had no `=`; such a request is still answered (fail-open), never counted.
    /// Postfix never sends one: it means a client that is not Postfix.
    pub malformed: Option<&'static str>,
    /// Website mail: the local user who submitted the message (set by the milter, never read
    /// from the wire). Counted as `local:<name>@<server>` under `[limits.local]` only.
    pub local_user: String,
}

/// What Postfix is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dunno,
    /// `DEFER_IF_PERMIT <text>`: a 4xx for the whole message.
    DeferIfPermit(String),
    /// `REJECT <text>`: a 5xx; for a message that can never be accepted.
    Reject(String),
}

impl Action {
    /// The action's name (`DUNNO`, `DEFER_IF_PERMIT`, `REJECT`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Dunno => "DUNNO",
            Self::DeferIfPermit(_) => "DEFER_IF_PERMIT",
            Self::Reject(_) => "REJECT",
        }
    }

    /// Appends the reply (`action=...` and the empty line) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Dunno => out.extend_from_slice(b"action=DUNNO\n\n"),
            Self::DeferIfPermit(text) => with_text(out, b"action=DEFER_IF_PERMIT ", text),
            Self::Reject(text) => with_text(out, b"action=REJECT ", text),
        }
    }
}

/// A reply: the action and, for a dry run in log-only mode, what enforcing would answer
/// (`erl_would=...`, an attribute only `probe` asks for and reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub action: Action,
    pub would: Option<Action>,
}

impl From<Action> for Reply {
    fn from(action: Action) -> Self {
        Self { action, would: None }
    }
}

impl Reply {
    /// Appends the reply's lines and the closing empty line to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        self.action.encode(out);
        if let Some(would) = &self.would {
            // Before the empty line that ends the reply.
            out.truncate(out.len() - 1);
            let mut line = BytesMut::new();
            would.encode(&mut line);
            out.extend_from_slice(b"erl_would=");
            out.extend_from_slice(line.strip_prefix(b"action=").unwrap_or(&line));
        }
    }
}

fn with_text(out: &mut BytesMut, head: &[u8], text: &str) {
    out.extend_from_slice(head);
    // A newline inside the text would end the reply early and desynchronize smtpd.
    for b in text.bytes() {
        out.extend_from_slice(&[if b == b'\n' || b == b'\r' { b' ' } else { b }]);
    }
    out.extend_from_slice(b"\n\n");
}

/// Bad input that ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("request larger than {MAX_REQUEST} bytes")]
    RequestTooLarge,
    #[error("request with more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
}

/// Incremental request decoder; keeps the partial request between reads.
#[derive(Debug, Default)]
pub struct Decoder {
    current: Request,
    bytes: usize,
    attributes: usize,
    /// How far `buf` was already searched for a newline, so a slow client costs O(n) in total.
    scanned: usize,
}

impl Decoder {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes whole lines from `buf`; returns the next complete request, if any.
    ///
    /// # Errors
    /// [`ProtocolError`] when a bound is passed; the connection should then be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            let Some(pos) = memchr::memchr(b'\n', &buf[self.scanned..]).map(|p| p + self.scanned) else {
                if buf.len() > MAX_LINE {
                    return Err(ProtocolError::LineTooLong);
                }
                self.scanned = buf.len();
                return Ok(None);
            };
            self.scanned = 0;
            let len = pos + 1;
            if len > MAX_LINE {
                return Err(ProtocolError::LineTooLong);
            }
            self.bytes += len;
            if self.bytes > MAX_REQUEST {
                return Err(ProtocolError::RequestTooLarge);
            }
            let mut line = &buf[..pos];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            if line.is_empty() {
                buf.advance(len);
                self.bytes = 0;
                self.attributes = 0;
                return Ok(Some(std::mem::take(&mut self.current)));
            }
            self.attributes += 1;
            if self.attributes > MAX_ATTRIBUTES {
                return Err(ProtocolError::TooManyAttributes);
            }
            apply(&mut self.current, line);
            buf.advance(len);
        }
    }
}

fn apply(request: &mut Request, line: &[u8]) {
    let Some(eq) = memchr::memchr(b'=', line) else {
        request.malformed = Some("line without `=`");
        return;
    };
    let (name, value) = (&line[..eq], &line[eq + 1..]);
    let text = || String::from_utf8_lossy(value).into_owned();
    match name {
        b"protocol_state" => request.protocol_state = State::parse(&text()),
        b"sasl_username" => request.sasl_username = text(),
        b"client_address" => request.client_address = text(),
        b"queue_id" => request.queue_id = text(),
        b"instance" => request.instance = text(),
        b"sender" => request.sender = text(),
        b"size" => request.size = text(),
        b"recipient" => request.recipient = text(),
        b"recipient_count" => request.recipient_count = decimal(value),
        b"erl_dry_run" => request.dry_run = value == b"yes",
        _ => {}
    }
}

/// A decimal integer (ASCII digits only, surrounding blanks allowed), saturating instead of
/// overflowing: `99999999999999999999999` is a huge count, not garbage.
fn decimal(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> (Vec<Request>, Result<(), ProtocolError>, BytesMut) {
        let mut buf = BytesMut::from(input);
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => return (out, Ok(()), buf),
                Err(e) => return (out, Err(e), buf),
            }
        }
    }

    const EOM: &[u8] = b"request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\n\
        sasl_username=alice@example.com\nrecipient_count=3\nclient_address=192.0.2.7\n\
        queue_id=4ABC\nsize=1234\n\n";

    #[test]
    fn parses_a_request() {
        let (reqs, res, rest) = decode_all(EOM);
        assert_eq!(res, Ok(()));
        assert!(rest.is_empty());
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!(r.protocol_state, State::EndOfMessage);
        assert_eq!(r.sasl_username, "alice@example.com");
        assert_eq!(r.recipient_count, Some(3));
        assert_eq!(r.client_address, "192.0.2.7");
        assert_eq!(r.queue_id, "4ABC");
        assert_eq!((r.size.as_str(), r.instance.as_str(), r.sender.as_str()), ("1234", "", ""));
        assert_eq!(r.malformed, None);
    }

    #[test]
    fn answers_pipelined_requests_in_order() {
        let mut input = EOM.to_vec();
        input.extend_from_slice(b"protocol_state=RCPT\nsasl_username=bob\n\n");
        input.extend_from_slice(b"protocol_state=DATA\r\nrecipient_count=2\r\n\r\n");
        let (reqs, res, _) = decode_all(&input);
        assert_eq!(res, Ok(()));
        let states: Vec<_> = reqs.iter().map(|r| r.protocol_state.clone()).collect();
        assert_eq!(states, vec![State::EndOfMessage, State::Rcpt, State::Data]);
        assert_eq!(reqs[2].recipient_count, Some(2));
    }

    #[test]
    fn byte_by_byte_gives_the_same_requests() {
        let mut input = EOM.to_vec();
        input.extend_from_slice(EOM);
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in &input {
            buf.extend_from_slice(&[b]);
            while let Some(r) = decoder.decode(&mut buf).expect("valid input") {
                got.push(r);
            }
        }
        assert_eq!(got, decode_all(&input).0);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn keeps_a_partial_request_for_the_next_read() {
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::from(&b"protocol_state=RCPT\nsasl_user"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"name=x\n\n");
        let r = decoder.decode(&mut buf).expect("valid").expect("complete");
        assert_eq!(r.sasl_username, "x");
        assert_eq!(r.protocol_state, State::Rcpt);
    }

    #[test]
    fn line_bound_is_exact() {
        let value = "a".repeat(MAX_LINE - "x=\n".len());
        let ok = format!("x={value}\n\n");
        assert_eq!(decode_all(ok.as_bytes()).1, Ok(()));
        let long = format!("x={value}a\n\n");
        assert_eq!(decode_all(long.as_bytes()).1, Err(ProtocolError::LineTooLong));
    }

    #[test]
    fn a_long_line_is_refused_before_its_newline_arrives() {
        let mut buf = BytesMut::from(vec![b'a'; MAX_LINE + 1].as_slice());
        assert_eq!(Decoder::new().decode(&mut buf), Err(ProtocolError::LineTooLong));
    }

    #[test]
    fn request_size_is_bounded() {
        let line = format!("x={}\n", "b".repeat(1000));
        let input = line.repeat(MAX_REQUEST / line.len() + 1);
        assert!(input.lines().count() <= MAX_ATTRIBUTES);
        assert_eq!(decode_all(input.as_bytes()).1, Err(ProtocolError::RequestTooLarge));
    }

    #[test]
    fn attribute_count_is_bounded() {
        let ok = "x=1\n".repeat(MAX_ATTRIBUTES) + "\n";
        assert_eq!(decode_all(ok.as_bytes()).0.len(), 1);
        let over = "x=1\n".repeat(MAX_ATTRIBUTES + 1) + "\n";
        assert_eq!(decode_all(over.as_bytes()).1, Err(ProtocolError::TooManyAttributes));
    }

    #[test]
    fn bounds_reset_between_requests() {
        let one = "x=1\n".repeat(MAX_ATTRIBUTES) + "\n";
        let (reqs, res, _) = decode_all(one.repeat(3).as_bytes());
        assert_eq!((reqs.len(), res), (3, Ok(())));
    }

    #[test]
    fn odd_input_is_marked_not_fatal() {
        let (reqs, res, _) = decode_all(b"garbage line\nprotocol_state=END-OF-MESSAGE\n\n");
        assert_eq!(res, Ok(()));
        assert_eq!(reqs[0].malformed, Some("line without `=`"));
    }

    #[test]
    fn recipient_count_is_a_decimal_integer_or_nothing() {
        let count = |v: &str| decode_all(format!("recipient_count={v}\n\n").as_bytes()).0[0].clone();
        for (value, want) in [
            ("3", Some(3)),
            (" 7 ", Some(7)),
            ("0", Some(0)),
            ("007", Some(7)),
            ("4000000000", Some(4_000_000_000)),
            ("99999999999999999999999", Some(u64::MAX)),
            ("", None),
            ("-5", None),
            ("+5", None),
            ("abc", None),
            ("1.5", None),
            ("0x10", None),
            ("\u{0663}", None),
        ] {
            let r = count(value);
            assert_eq!(r.recipient_count, want, "{value:?}");
            assert_eq!(r.malformed, None, "{value:?}: an odd count is the policy's business");
        }
        assert_eq!(decode_all(b"protocol_state=DATA\n\n").0[0].recipient_count, None);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let (reqs, res, _) = decode_all(b"sasl_username=al\xffice@example.com\nfoo=\xc3\n\n");
        assert_eq!(res, Ok(()));
        assert_eq!(reqs[0].sasl_username, "al\u{fffd}ice@example.com");
    }

    #[test]
    fn value_may_hold_equals_signs_and_be_empty() {
        let (reqs, _, _) = decode_all(b"sasl_username=\nqueue_id=a=b\n\n");
        assert_eq!(reqs[0].sasl_username, "");
        assert_eq!(reqs[0].queue_id, "a=b");
        assert_eq!(reqs[0].malformed, None);
    }

    #[test]
    fn an_empty_line_alone_is_an_empty_request() {
        let (reqs, _, _) = decode_all(b"\n");
        assert_eq!(reqs, vec![Request::default()]);
    }

    #[test]
    fn encodes_replies() {
        let mut out = BytesMut::new();
        Action::Dunno.encode(&mut out);
        Action::DeferIfPermit("a@b: Your daily limit of 5 messages reached".into()).encode(&mut out);
        Action::DeferIfPermit("evil\ntext".into()).encode(&mut out);
        Action::Reject("a@b: At most\r\n3".into()).encode(&mut out);
        assert_eq!(
            &out[..],
            b"action=DUNNO\n\naction=DEFER_IF_PERMIT a@b: Your daily limit of 5 messages reached\n\n\
              action=DEFER_IF_PERMIT evil text\n\naction=REJECT a@b: At most  3\n\n"
        );
    }

    #[test]
    fn a_dry_run_is_asked_for_by_name_and_answered_with_what_enforcing_would_say() {
        let (reqs, _, _) = decode_all(b"protocol_state=RCPT\nerl_dry_run=yes\n\nerl_dry_run=no\n\n");
        assert!(reqs[0].dry_run);
        assert!(!reqs[1].dry_run);
        let mut out = BytesMut::new();
        Reply::from(Action::Dunno).encode(&mut out);
        Reply { action: Action::Dunno, would: Some(Action::Reject("a@b: x\ny".into())) }.encode(&mut out);
        Reply { action: Action::Dunno, would: Some(Action::Dunno) }.encode(&mut out);
        assert_eq!(
            &out[..],
            b"action=DUNNO\n\naction=DUNNO\nerl_would=REJECT a@b: x y\n\naction=DUNNO\nerl_would=DUNNO\n\n"
        );
    }
}
