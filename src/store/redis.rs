//! The Redis counter store: `consume.lua` by SHA over one multiplexed connection, behind a
//! timeout and a circuit breaker.
//!
//! One multiplexed connection pipelines the requests of every Postfix connection onto one Redis
//! socket, so concurrency costs no pool round trips. The script is loaded when the link is
//! (re)established and re-sent transparently after `NOSCRIPT` (Redis restart, `SCRIPT FLUSH`).
//! Any fault opens the breaker: requests then fail fast (the caller fails open) and one probe
//! per second tests whether Redis is back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};

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
        let day = c.now.date_naive();
        let reply: Vec<i64> = self
            .script
            .key(self.keys.sender(day, c.sender))
            .key(self.keys.global(day))
            .key(&self.violations_key)
            .arg(c.recipients)
            .arg(c.mailbox_cap.unwrap_or(0))
            .arg(c.global_cap)
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
            .arg(c.now.timestamp())
            .arg(c.sender.as_str())
            .arg(c.client)
            .invoke_async(&mut conn)
            .await?;
        let verdict = match reply.first() {
            Some(0) => Verdict::Fits,
            Some(1) => Verdict::OverMailbox,
            Some(2) => Verdict::OverGlobal,
            _ => return Err(StoreError::BadReply(format!("{reply:?}"))),
        };
        let count = |i: usize| reply.get(i).and_then(|&v| u64::try_from(v).ok());
        match (count(1), count(2)) {
            (Some(mailbox), Some(global)) => Ok(Counts { verdict, mailbox, global }),
            _ => Err(StoreError::BadReply(format!("{reply:?}"))),
        }
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
            Err(e) => self.trip(e),
        }
        result
    }
}
