//! The Redis counter store: `consume.lua` by SHA over one multiplexed connection, behind a
//! timeout and a circuit breaker.
//!
//! One multiplexed connection pipelines the requests of every Postfix connection onto one Redis
//! socket, so concurrency costs no pool round trips. The script is loaded when the link is
//! (re)established and re-sent transparently after `NOSCRIPT` (Redis restart, `SCRIPT FLUSH`).
//! A link fault (connection, timeout) opens the breaker: requests then fail fast (the caller
//! fails open) and one probe per second tests whether Redis is back. A data fault (a key of the
//! wrong type, a counter that is not a number) fails only the requests that touch that key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, ErrorKind, RedisWrite, Script, ServerErrorKind, Value};

use super::breaker::Breaker;
use super::keys::{COUNTER_TTL_SECS, KeySchema, LockedBy, TOP_TTL_SECS, rest_of_day_ttl};
use super::target::{Target, millis};
use super::{Answer, Consume, CounterStore, Counts, Events, Lock, Operation, StoreError, Watch};
use crate::config::{Mode, RedisSettings};

const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The Redis-backed store.
pub struct RedisStore {
    target: Target,
    link: ArcSwapOption<MultiplexedConnection>,
    connecting: tokio::sync::Mutex<()>,
    breaker: Mutex<Breaker>,
    script: Script,
    keys: KeySchema,
    /// Constant for the life of the store: built once, not per request.
    violations_key: String,
    auto_locks_key: String,
    timeout: Duration,
    violations_max: u64,
}

impl RedisStore {
    /// Prepares the store; does not connect (the first request does, so the daemon starts and
    /// fails open even when Redis is down).
    ///
    /// # Errors
    /// When the URL is not a valid Redis URL.
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        Ok(Self {
            target: Target::new(settings)?,
            link: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            breaker: Mutex::new(Breaker::new(RETRY_AFTER, settings.timeout)),
            script: Script::new(include_str!("consume.lua")),
            keys: KeySchema::new(&settings.key_prefix),
            violations_key: KeySchema::new(&settings.key_prefix).violations().to_string(),
            auto_locks_key: KeySchema::new(&settings.key_prefix).locks(LockedBy::Auto).to_string(),
            timeout: settings.timeout,
            violations_max: settings.violations_max,
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(conn) = self.link.load_full() {
            return Ok((*conn).clone());
        }
        let _guard = self.connecting.lock().await;
        if let Some(conn) = self.link.load_full() {
            return Ok((*conn).clone());
        }
        let mut conn = self.target.connect(self.timeout).await?;
        self.script.prepare_invoke().load_async(&mut conn).await?;
        self.link.store(Some(Arc::new(conn.clone())));
        Ok(conn)
    }

    async fn run(&self, c: &Consume<'_>) -> Result<Answer, StoreError> {
        let mut conn = self.connection().await?;
        let command = self.command(c)?;
        let reply: Vec<Value> = match command.query_async(&mut conn).await {
            // Redis lost the script (restart, SCRIPT FLUSH): load it and send the same command.
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.prepare_invoke().load_async(&mut conn).await?;
                command.query_async(&mut conn).await?
            }
            reply => reply?,
        };
        parse_reply(&reply, c.counters.len(), c.caps.len())
    }

    /// `EVALSHA` with the keys and arguments `consume.lua`'s header lists, written into one
    /// command buffer (no per-argument allocation).
    fn command(&self, c: &Consume<'_>) -> Result<Cmd, StoreError> {
        // Arguments: 3 in the head, a key per counter and 10 more keys, 22 values, a TTL and an
        // increment per counter, 5 per cap.
        let mut cmd = Cmd::with_capacity(3 + 10 + 22 + 3 * c.counters.len() + 5 * c.caps.len(), 1024);
        cmd.arg("EVALSHA").arg(self.script.get_hash()).arg(c.counters.len() + 10);
        for counter in c.counters {
            let key = self
                .keys
                .counter(c.at.local, *counter, c.sender)
                .ok_or_else(|| StoreError::BadReply(format!("no key for {counter:?} of {}", c.sender)))?;
            cmd.arg(key);
        }
        let day = c.at.day();
        cmd.arg(&self.violations_key)
            .arg(self.keys.top(day))
            .arg(self.keys.raise(c.sender))
            .arg(self.keys.lock(c.sender))
            .arg(self.keys.ips(day, c.sender))
            .arg(self.keys.refusals(day, c.sender))
            .arg(self.keys.fingerprints(day, c.sender))
            .arg(&self.auto_locks_key)
            .arg(self.keys.domain_lock(c.sender.domain().unwrap_or_default()))
            .arg(self.keys.hist(c.sender))
            .arg(c.recipients)
            .arg(match c.operation {
                Operation::Count => "count",
                Operation::Check => "check",
                Operation::Peek => "peek",
            })
            .arg(match c.mode {
                Mode::Enforce => "1",
                Mode::LogOnly => "0",
            })
            .arg(self.violations_max)
            .arg(c.at.unix)
            .arg(c.sender.as_str())
            .arg(c.client)
            .arg(c.raise)
            .arg(COUNTER_TTL_SECS)
            .arg(c.guard.max_client_ips)
            .arg(if c.guard.autolock { "1" } else { "0" })
            .arg(c.guard.lock_after_refusals)
            .arg(c.server)
            .arg(c.message.instance);
        cmd.write_arg_fmt(format_args!("{:016x}", c.message.fingerprint));
        cmd.arg(rest_of_day_ttl(c.at.local))
            .arg(c.oversize.map_or(0, |i| i + 1))
            .arg(TOP_TTL_SECS)
            .arg(c.per_message.unwrap_or(0));
        match c.learn {
            Some(days) => {
                cmd.write_arg_fmt(format_args!("{}", super::HistoryField::Excluded(day)));
                cmd.arg(super::history_ttl_secs(days));
            }
            None => {
                cmd.arg("").arg(0);
            }
        }
        cmd.arg(c.network.filter(|_| c.learn.is_some()).unwrap_or_default());
        let n = u64::from(c.recipients);
        for counter in c.counters {
            cmd.arg(counter.window.ttl_secs()).arg(counter.unit.count(n));
        }
        for cap in c.caps {
            let counter =
                c.counters.get(cap.counter).ok_or_else(|| StoreError::BadReply(format!("{cap:?}")))?;
            cmd.arg(cap.counter + 1).arg(cap.limit).arg(counter.scope.kind());
            cmd.write_arg_fmt(counter.window);
            cmd.arg(counter.unit.name());
        }
        Ok(cmd)
    }

    /// Whether the last calls reached Redis (the breaker is closed).
    #[must_use]
    pub fn up(&self) -> bool {
        self.breaker().is_closed()
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // A poisoned breaker only means a panic elsewhere mid-update; its state is still usable.
        self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn trip(&self, error: &StoreError) {
        self.link.store(None);
        if self.breaker().failure(Instant::now()) {
            tracing::warn!("redis link down ({error}); failing open, probing once a second");
        }
    }
}

impl CounterStore for RedisStore {
    async fn consume(&self, c: &Consume<'_>) -> Result<Answer, StoreError> {
        self.guarded(self.run(c)).await
    }

    async fn hold(&self, h: &super::Held<'_>) -> Result<(), StoreError> {
        self.guarded(async {
            let mut conn = self.connection().await?;
            let key = h.key(&self.keys);
            let ttl = i64::try_from(super::keys::HELD_TTL_SECS).unwrap_or(i64::MAX);
            redis::pipe()
                .atomic()
                .zadd(&key, h.queue_id, h.at)
                .ignore()
                .expire(&key, ttl)
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }
}

impl RedisStore {
    /// Runs `work` within the timeout, unless the breaker is open; a link fault opens it.
    async fn guarded<T>(&self, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        if !self.breaker().allow(Instant::now()) {
            return Err(StoreError::Unavailable);
        }
        let result = match tokio::time::timeout(self.timeout, work).await {
            // The client's own response timeout is the same fault as ours.
            Ok(Err(StoreError::Redis(e))) if e.is_timeout() => Err(StoreError::Timeout(millis(self.timeout))),
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(millis(self.timeout))),
        };
        match &result {
            Ok(_) => {
                if self.breaker().success() {
                    tracing::info!("redis link back; enforcing again");
                }
            }
            Err(e) if e.is_link_fault() => self.trip(e),
            // The link works: a data fault is this request's alone.
            Err(_) => {}
        }
        result
    }
}

/// `{0 or cap index, events, ips, lock, counters...}`, `{-3, events, ips, lock}`, `{-2, raise}`
/// or `{-1, key}` (see `consume.lua`).
fn parse_reply(reply: &[Value], counters: usize, caps: usize) -> Result<Answer, StoreError> {
    let bad = || StoreError::BadReply(format!("{reply:?}"));
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        _ => None,
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    let first = reply.first().and_then(int).ok_or_else(bad)?;
    match first {
        -2 => return text(reply.get(1)).map(Answer::Raised).ok_or_else(bad),
        -1 => return Err(text(reply.get(1)).map_or_else(bad, |key| StoreError::BadData { key })),
        _ => {}
    }
    let events = reply.get(1).and_then(int).filter(|e| (0..8).contains(e)).ok_or_else(bad)?;
    let client_ips = reply.get(2).and_then(int).and_then(|i| u64::try_from(i).ok()).ok_or_else(bad)?;
    let lock = text(reply.get(3)).ok_or_else(bad)?;
    let watch = Watch {
        events: Events::from_bits(events),
        client_ips,
        lock: (!lock.is_empty()).then(|| Lock::parse(&lock)),
    };
    let refused = match usize::try_from(first) {
        _ if first == -3 && watch.lock.is_some() => return Ok(Answer::Locked(watch)),
        Ok(0) => None,
        Ok(i) if i <= caps => Some(i - 1),
        _ => return Err(bad()),
    };
    let before: Vec<u64> = reply[4..]
        .iter()
        .map(|v| int(v).and_then(|i| u64::try_from(i).ok()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if before.len() != counters {
        return Err(bad());
    }
    Ok(Answer::Counts(Counts { refused, before, watch }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_every_reply_shape() {
        let none = || vec![Value::Int(0), Value::Int(0), bulk("")];
        let reply = |head: i64, rest: &[i64]| {
            let mut r = vec![Value::Int(head)];
            r.extend(none());
            r.extend(rest.iter().map(|i| Value::Int(*i)));
            r
        };
        let counts = parse_reply(&reply(1, &[5, 7]), 2, 2).expect("counts");
        let quiet = Watch::default();
        assert_eq!(
            counts,
            Answer::Counts(Counts { refused: Some(0), before: vec![5, 7], watch: quiet.clone() })
        );
        let fits = parse_reply(&reply(0, &[5, 7, 0]), 3, 0).expect("fits");
        assert_eq!(fits, Answer::Counts(Counts { refused: None, before: vec![5, 7, 0], watch: quiet }));
        let lock = r#"{"ts":9,"by":"auto","reason":"4 client addresses today"}"#;
        let locked = parse_reply(&[Value::Int(-3), Value::Int(6), Value::Int(4), bulk(lock)], 2, 2);
        let Ok(Answer::Locked(watch)) = locked else { panic!("{locked:?}") };
        assert!(watch.events.suspect && watch.events.locked && !watch.events.first_refusal);
        assert_eq!(watch.client_ips, 4);
        assert_eq!(watch.lock.map(|l| l.reason), Some("4 client addresses today".into()));
        let mut tripped = reply(2, &[3, 3]);
        tripped[1] = Value::Int(5);
        tripped[3] = bulk(lock);
        let Ok(Answer::Counts(c)) = parse_reply(&tripped, 2, 2) else { panic!("tripped") };
        assert!(c.watch.events.first_refusal && c.watch.events.locked && c.watch.lock.is_some());
        let raised = parse_reply(&[Value::Int(-2), bulk("500/1d")], 2, 2);
        assert_eq!(raised.expect("raised"), Answer::Raised("500/1d".into()));
        let bad = parse_reply(&[Value::Int(-1), bulk("erl:violations")], 2, 2);
        assert!(matches!(bad, Err(StoreError::BadData { ref key }) if key == "erl:violations"), "{bad:?}");
        for junk in [
            vec![],
            reply(3, &[0, 0]),
            reply(0, &[-1, 0]),
            reply(0, &[1]),
            vec![Value::Int(-1)],
            vec![Value::Int(-3), Value::Int(0), Value::Int(0), bulk("")],
            vec![Value::Int(0), Value::Int(8), Value::Int(0), bulk(""), Value::Int(1), Value::Int(1)],
        ] {
            assert!(matches!(parse_reply(&junk, 2, 2), Err(StoreError::BadReply(_))), "{junk:?}");
        }
    }

    #[test]
    fn only_link_faults_open_the_breaker() {
        assert!(StoreError::Timeout(250).is_link_fault());
        assert!(StoreError::Unavailable.is_link_fault());
        let dropped = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(StoreError::Redis(dropped).is_link_fault());
        assert!(!StoreError::BadData { key: "erl:violations".into() }.is_link_fault());
        assert!(!StoreError::BadReply("[]".into()).is_link_fault());
        let script = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "ERR",
            "user_script:1: bad".to_owned(),
        ));
        assert!(!StoreError::Redis(script).is_link_fault(), "a script error is not an outage");
        let demoted = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "READONLY",
            "You can't write against a read only replica.".to_owned(),
        ));
        assert_eq!(demoted.code(), Some("READONLY"));
        assert!(StoreError::Redis(demoted).is_link_fault(), "a demoted master: ask the Sentinels again");
    }
}
