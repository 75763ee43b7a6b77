//! The database reads on a thread of their own.
//!
//! The daemon answers Postfix on one current-thread runtime. sqlx reads and decodes the rows as
//! async code, so on that runtime every refresh would take a share of the request thread's
//! time (~0.3 us per decision while 100,000 caps were re-read every second; `benches/refresh.sh`,
//! BENCHMARKS.md). So the refreshes run on a second current-thread runtime, on the `erl-limits`
//! thread; the request thread only reads the swapped-in set.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::LimitsCache;

/// The `erl-limits` thread, running until the token it was started with is cancelled.
#[derive(Debug, Clone)]
pub struct Refresher {
    handle: tokio::runtime::Handle,
    stop: CancellationToken,
}

impl Refresher {
    /// Starts the thread and its runtime.
    ///
    /// # Errors
    /// When the runtime or the thread cannot be created.
    pub fn start(stop: CancellationToken) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("erl-limits-io")
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new().name("erl-limits".into()).spawn({
            let stop = stop.clone();
            move || runtime.block_on(stop.cancelled())
        })?;
        Ok(Self { handle, stop })
    }

    /// The first read now, then one every `every` until the stop or until the returned token is
    /// cancelled (a SIGHUP that changes or removes `[database]`); failures are logged once per
    /// outage ([`LimitsCache::refresh_logged`]).
    pub fn run(&self, cache: Arc<LimitsCache>, every: Duration) -> CancellationToken {
        let stop = self.stop.child_token();
        let looping = stop.clone();
        self.handle.spawn(async move {
            let failing = cache.refresh_logged(None).await;
            if failing.is_none() {
                let l = cache.current();
                tracing::info!(
                    "limits loaded from database: global={} default_mailbox={} mailbox_caps={}",
                    l.global,
                    l.default_mailbox,
                    l.capped_mailboxes()
                );
            }
            cache.refresh_loop(every, failing, stop).await;
        });
        looping
    }

    /// One refresh on the refresher's thread (SIGHUP), awaited from any runtime; `None` when it
    /// succeeded, else the failure's text.
    pub async fn refresh_now(&self, cache: Arc<LimitsCache>) -> Option<String> {
        self.handle
            .spawn(async move { cache.refresh_logged(None).await })
            .await
            .unwrap_or_else(|e| Some(format!("the refresher stopped: {e}")))
    }
}

/// The daemon's database side: the refresher thread, started when a database is first
/// configured (at start or by SIGHUP), and its periodic loop, restarted when `[database]`
/// changes and stopped when it is removed.
#[derive(Debug)]
pub struct Reader {
    stop: CancellationToken,
    refresher: Option<Refresher>,
    looping: Option<CancellationToken>,
}

impl Reader {
    /// Nothing is read until [`Self::start`]; everything stops with `stop`.
    #[must_use]
    pub fn new(stop: CancellationToken) -> Self {
        Self { stop, refresher: None, looping: None }
    }

    /// Reads `cache`'s database now and every `every` (ending an earlier loop first).
    ///
    /// # Errors
    /// When the refresher thread cannot be started.
    pub fn start(&mut self, cache: Arc<LimitsCache>, every: Duration) -> std::io::Result<()> {
        self.stop_reading();
        let refresher = match &self.refresher {
            Some(r) => r.clone(),
            None => self.refresher.insert(Refresher::start(self.stop.clone())?).clone(),
        };
        self.looping = Some(refresher.run(cache, every));
        Ok(())
    }

    /// Ends the periodic loop (the database was removed).
    pub fn stop_reading(&mut self) {
        if let Some(looping) = self.looping.take() {
            looping.cancel();
        }
    }

    /// One refresh now (SIGHUP with the same database); `None` when it succeeded or nothing is
    /// read, else the failure's text.
    pub async fn refresh_now(&self, cache: Arc<LimitsCache>) -> Option<String> {
        match (&self.refresher, &self.looping) {
            (Some(r), Some(_)) => r.refresh_now(cache).await,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitSettings;

    fn settings() -> LimitSettings {
        crate::config::from_toml("").expect("defaults").limits
    }

    #[tokio::test]
    async fn refreshes_on_its_own_thread_and_stops_with_the_token() {
        let stop = CancellationToken::new();
        let refresher = Refresher::start(stop.clone()).expect("started");
        let here = std::thread::current().id();
        let there = refresher.handle.spawn(async { std::thread::current().id() }).await.expect("ran");
        assert_ne!(here, there, "the refresh must not run on the caller's thread");
        let name = refresher
            .handle
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .expect("ran");
        assert_eq!(name.as_deref(), Some("erl-limits"));

        // No database: a refresh only rebuilds from the file's caps, and succeeds.
        let cache = Arc::new(LimitsCache::new(settings(), None));
        assert_eq!(refresher.refresh_now(cache.clone()).await, None);

        stop.cancel();
        // Once the thread has ended, a refresh reports it instead of hanging.
        let mut said = None;
        for _ in 0..200 {
            said = refresher.refresh_now(cache.clone()).await;
            if said.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(said.as_deref().is_some_and(|s| s.contains("refresher stopped")), "{said:?}");
    }
}
