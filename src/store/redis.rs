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
use super::{Consume, CounterStore, Counts, Operation, StoreError, Verdict};
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

    async fn run(&self, c: &Consume<'_>) -> Result<Counts, StoreError> {
        let mut conn = self.connection().await?;
        let day = c.at.day();
        let reply: Vec<Value> = self
            .script
            .key(self.keys.sender(day, c.sender))
            .key(self.keys.global(day))
            .key(&self.violations_key)
            .arg(c.recipients)
            .arg(c.mailbox_cap.unwrap_or(0))
            .arg(c.global_cap.unwrap_or(0))
            .arg(match c.operation {
                Operation::Count => "count",
                Operation::Check => "check",
            })
            .arg(match c.mode {
                Mode::Enforce => "1",
                Mode::LogOnly => "0",
            })
            .arg(COUNTER_TTL_SECS)
            .arg(self.violations_max)
            .arg(c.at.unix)
            .arg(c.sender.as_str())
            .arg(c.client)
            .invoke_async(&mut conn)
            .await?;
        parse_reply(&reply)
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
    async fn consume(&self, c: &Consume<'_>) -> Result<Counts, StoreError> {
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

/// `{verdict, m, g}` or `{3, key}` (see `consume.lua`).
fn parse_reply(reply: &[Value]) -> Result<Counts, StoreError> {
    let int = |i: usize| match reply.get(i) {
        Some(Value::Int(v)) => Some(*v),
        _ => None,
    };
    let bad = || StoreError::BadReply(format!("{reply:?}"));
    let verdict = match int(0) {
        Some(0) => Verdict::Fits,
        Some(1) => Verdict::OverMailbox,
        Some(2) => Verdict::OverGlobal,
        Some(3) => {
            return match reply.get(1) {
                Some(Value::BulkString(key)) => {
                    Err(StoreError::BadData { key: String::from_utf8_lossy(key).into_owned() })
                }
                _ => Err(bad()),
            };
        }
        _ => return Err(bad()),
    };
    let count = |i: usize| int(i).and_then(|v| u64::try_from(v).ok());
    match (count(1), count(2)) {
        (Some(mailbox), Some(global)) => Ok(Counts { verdict, mailbox, global }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reply_shape() {
        let counts = parse_reply(&[Value::Int(1), Value::Int(5), Value::Int(7)]).expect("counts");
        assert_eq!(counts, Counts { verdict: Verdict::OverMailbox, mailbox: 5, global: 7 });
        let bad = parse_reply(&[Value::Int(3), Value::BulkString(b"erl:violations".to_vec())]);
        assert!(matches!(bad, Err(StoreError::BadData { ref key }) if key == "erl:violations"), "{bad:?}");
        for junk in [
            vec![],
            vec![Value::Int(9), Value::Int(0), Value::Int(0)],
            vec![Value::Int(0), Value::Int(-1), Value::Int(0)],
            vec![Value::Int(3)],
        ] {
            assert!(matches!(parse_reply(&junk), Err(StoreError::BadReply(_))), "{junk:?}");
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
