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
use redis::{AsyncConnectionConfig, Client, Script, Value};

use super::breaker::Breaker;
use super::keys::{COUNTER_TTL_SECS, KeySchema};
use super::{Answer, Consume, CounterStore, Counts, Operation, StoreError};
use crate::config::{Mode, RedisSettings};

const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The Redis-backed store.
pub struct RedisStore {
    client: Client,
    link: ArcSwapOption<MultiplexedConnection>,
    connecting: tokio::sync::Mutex<()>,
    breaker: Mutex<Breaker>,
    script: Script,
    keys: KeySchema,
    /// Constant for the life of the store: built once, not per request.
    violations_key: String,
    timeout: Duration,
    violations_max: u64,
}

/// Opens one connection with the configured timeouts (also used by the admin commands).
///
/// # Errors
/// The Redis error, or [`StoreError::Timeout`].
pub async fn connect(client: &Client, timeout: Duration) -> Result<MultiplexedConnection, StoreError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let conn = tokio::time::timeout(timeout, client.get_multiplexed_async_connection_with_config(&config))
        .await
        .map_err(|_| StoreError::Timeout(millis(timeout)))??;
    Ok(conn)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisStore {
    /// Prepares the store; does not connect (the first request does, so the daemon starts and
    /// fails open even when Redis is down).
    ///
    /// # Errors
    /// When the URL is not a valid Redis URL.
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        Ok(Self {
            client: Client::open(settings.url.as_str())?,
            link: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            breaker: Mutex::new(Breaker::new(RETRY_AFTER, settings.timeout)),
            script: Script::new(include_str!("consume.lua")),
            keys: KeySchema::new(&settings.key_prefix),
            violations_key: KeySchema::new(&settings.key_prefix).violations(),
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
        let mut conn = connect(&self.client, self.timeout).await?;
        self.script.prepare_invoke().load_async(&mut conn).await?;
        self.link.store(Some(Arc::new(conn.clone())));
        Ok(conn)
    }

    async fn run(&self, c: &Consume<'_>) -> Result<Answer, StoreError> {
        let mut conn = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for counter in c.counters {
            let key = self
                .keys
                .counter(c.at.local, *counter, c.sender)
                .ok_or_else(|| StoreError::BadReply(format!("no key for {counter:?} of {}", c.sender)))?;
            invocation.key(key);
        }
        invocation
            .key(&self.violations_key)
            .key(self.keys.top(c.at.day()))
            .key(self.keys.raise(c.sender))
            .arg(c.recipients)
            .arg(match c.operation {
                Operation::Count => "count",
                Operation::Check => "check",
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
            .arg(COUNTER_TTL_SECS);
        for counter in c.counters {
            invocation.arg(counter.window.ttl_secs());
        }
        for cap in c.caps {
            let counter =
                c.counters.get(cap.counter).ok_or_else(|| StoreError::BadReply(format!("{cap:?}")))?;
            invocation
                .arg(cap.counter + 1)
                .arg(cap.limit)
                .arg(counter.scope.kind())
                .arg(counter.window.to_string());
        }
        let reply: Vec<Value> = invocation.invoke_async(&mut conn).await?;
        parse_reply(&reply, c.counters.len(), c.caps.len())
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
        if !self.breaker().allow(Instant::now()) {
            return Err(StoreError::Unavailable);
        }
        let result = match tokio::time::timeout(self.timeout, self.run(c)).await {
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

/// `{0 or cap index, counters...}`, `{-2, raise}` or `{-1, key}` (see `consume.lua`).
fn parse_reply(reply: &[Value], counters: usize, caps: usize) -> Result<Answer, StoreError> {
    let bad = || StoreError::BadReply(format!("{reply:?}"));
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        _ => None,
    };
    let first = reply.first().and_then(int).ok_or_else(bad)?;
    if first == -2 {
        return match reply.get(1) {
            Some(Value::BulkString(raise)) => Ok(Answer::Raised(String::from_utf8_lossy(raise).into_owned())),
            _ => Err(bad()),
        };
    }
    if first == -1 {
        return match reply.get(1) {
            Some(Value::BulkString(key)) => {
                Err(StoreError::BadData { key: String::from_utf8_lossy(key).into_owned() })
            }
            _ => Err(bad()),
        };
    }
    let refused = match usize::try_from(first) {
        Ok(0) => None,
        Ok(i) if i <= caps => Some(i - 1),
        _ => return Err(bad()),
    };
    let before: Vec<u64> = reply[1..]
        .iter()
        .map(|v| int(v).and_then(|i| u64::try_from(i).ok()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if before.len() != counters {
        return Err(bad());
    }
    Ok(Answer::Counts(Counts { refused, before }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reply_shape() {
        let counts = parse_reply(&[Value::Int(1), Value::Int(5), Value::Int(7)], 2, 2).expect("counts");
        assert_eq!(counts, Answer::Counts(Counts { refused: Some(0), before: vec![5, 7] }));
        let fits =
            parse_reply(&[Value::Int(0), Value::Int(5), Value::Int(7), Value::Int(0)], 3, 0).expect("fits");
        assert_eq!(fits, Answer::Counts(Counts { refused: None, before: vec![5, 7, 0] }));
        let raised = parse_reply(&[Value::Int(-2), Value::BulkString(b"500/1d".to_vec())], 2, 2);
        assert_eq!(raised.expect("raised"), Answer::Raised("500/1d".into()));
        let bad = parse_reply(&[Value::Int(-1), Value::BulkString(b"erl:violations".to_vec())], 2, 2);
        assert!(matches!(bad, Err(StoreError::BadData { ref key }) if key == "erl:violations"), "{bad:?}");
        for junk in [
            vec![],
            vec![Value::Int(3), Value::Int(0), Value::Int(0)],
            vec![Value::Int(0), Value::Int(-1), Value::Int(0)],
            vec![Value::Int(0), Value::Int(1)],
            vec![Value::Int(-1)],
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
    }
}
