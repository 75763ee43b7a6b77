//! The in-memory limit set that requests read lock-free, and its refresh: every
//! `refresh_secs` and on SIGHUP. A failed refresh keeps the last good database set. Before the
//! first good read the cache file's set serves; with neither, the caps the database provides are
//! [`Cap::Unknown`](super::Cap::Unknown) (counted, never deferred on).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::saved::{self, SavedError};
use super::{DatabaseLimits, DatabaseSource, Fetched, FileLimits, Limits, LimitsError, Origin};
use crate::config::{Layout, LimitSettings};

/// What is known of the database.
struct DbState {
    last: Option<DatabaseLimits>,
    origin: Origin,
    /// The fingerprint in the cache file (written or read), to write only what changed.
    saved: Option<u64>,
    /// The last cache-file write failure, logged once until it changes or clears.
    save_failing: Option<String>,
}

pub struct LimitsCache {
    current: ArcSwap<Limits>,
    /// The config file's part, compiled once per load (its mailbox table is shared).
    config: Mutex<FileLimits>,
    state: Mutex<DbState>,
    /// The database (SIGHUP may add, change or remove it).
    db: arc_swap::ArcSwapOption<DatabaseSource>,
    /// Whether good reads are written to the cache file (the daemon; not the admin commands).
    persist: bool,
    /// Unix seconds of the last good database read (0: none yet).
    last_success: std::sync::atomic::AtomicI64,
    /// One refresh at a time (the periodic one and SIGHUP's): an older read that finished last
    /// would replace newer limits, and two saves would share the file.
    refreshing: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LimitsCache {
    /// Starts with the config file's limits, or, with a database, with its caps unknown; call
    /// [`Self::load_saved`] and [`Self::refresh`] to learn them.
    #[must_use]
    pub fn new(config: LimitSettings, db: Option<DatabaseSource>) -> Self {
        let origin = if db.is_some() { Origin::Unknown } else { Origin::ConfigFile };
        let layout = db.as_ref().map_or(Layout::ErTables, |d| d.settings().layout);
        let config = FileLimits::from(config);
        Self {
            current: ArcSwap::from_pointee(Limits::assemble(&config, None, origin, layout)),
            config: Mutex::new(config),
            state: Mutex::new(DbState { last: None, origin, saved: None, save_failing: None }),
            db: arc_swap::ArcSwapOption::from(db.map(Arc::new)),
            persist: false,
            last_success: std::sync::atomic::AtomicI64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes every good read that changed something to the cache file.
    #[must_use]
    pub fn persisting(mut self) -> Self {
        self.persist = true;
        self
    }

    /// Unix seconds of the last good database read, if any (for the metrics).
    #[must_use]
    pub fn last_success(&self) -> Option<i64> {
        Some(self.last_success.load(std::sync::atomic::Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// The current set (a cheap pointer copy).
    #[must_use]
    pub fn current(&self) -> Arc<Limits> {
        self.current.load_full()
    }

    /// Replaces the config file's part (after SIGHUP) and rebuilds the set at once. Build
    /// `config` off the request thread: for a long mailbox list that takes a while.
    pub fn set_config(&self, config: FileLimits) {
        *lock(&self.config) = config;
        self.rebuild();
    }

    /// Replaces the database (SIGHUP added, changed or removed `[database]`): what the old one
    /// said is forgotten, and the new one's caps are unknown until its cache file or a read
    /// says; without one, the config file's caps alone apply. Waits for a refresh in flight.
    pub async fn set_database(&self, db: Option<DatabaseSource>) {
        let _one = self.refreshing.lock().await;
        let origin = if db.is_some() { Origin::Unknown } else { Origin::ConfigFile };
        self.db.store(db.map(Arc::new));
        *lock(&self.state) = DbState { last: None, origin, saved: None, save_failing: None };
        self.last_success.store(0, std::sync::atomic::Ordering::Relaxed);
        self.rebuild();
    }

    fn rebuild(&self) {
        let config = lock(&self.config).clone();
        let state = lock(&self.state);
        let layout = self.db.load().as_ref().map_or(Layout::ErTables, |d| d.settings().layout);
        self.current.store(Arc::new(Limits::assemble(&config, state.last.as_ref(), state.origin, layout)));
    }

    /// Reads the cache file of the last good database read, unless the database has answered
    /// already. Returns the unix time it was written, or `None` without a database or file.
    ///
    /// # Errors
    /// [`SavedError`] for a file that is unreadable, malformed or from other settings; the
    /// caller logs it and the caps stay unknown until the database answers.
    pub fn load_saved(&self) -> Result<Option<i64>, SavedError> {
        let Some(db) = self.db.load_full() else { return Ok(None) };
        let settings = db.settings();
        let Some((limits, written)) = saved::load(&settings.cache_file, settings)? else { return Ok(None) };
        {
            let mut state = lock(&self.state);
            if state.origin == Origin::Database {
                return Ok(None);
            }
            state.saved = Some(limits.fingerprint);
            state.last = Some(limits);
            state.origin = Origin::CacheFile;
        }
        self.rebuild();
        Ok(Some(written))
    }

    /// Re-reads the database (when configured) and swaps in the new set.
    ///
    /// # Errors
    /// The database fault; the previous set stays in force.
    pub async fn refresh(&self) -> Result<(), LimitsError> {
        let _one = self.refreshing.lock().await;
        let Some(db) = self.db.load_full() else {
            self.rebuild();
            return Ok(());
        };
        let started = Instant::now();
        // Only a set this process read itself may be kept as "unchanged": a cache file's was
        // resolved by whatever rules wrote it (maybe an older version's), so the first read
        // after a start always resolves the rows afresh.
        let previous = {
            let state = lock(&self.state);
            state.last.as_ref().filter(|_| state.origin == Origin::Database).map(|d| d.fingerprint)
        };
        let fetched = db.fetch(previous).await?;
        self.last_success.store(chrono::Utc::now().timestamp(), std::sync::atomic::Ordering::Relaxed);
        match fetched {
            Fetched::Unchanged => {
                let mut state = lock(&self.state);
                if state.origin != Origin::Database {
                    // The cache file held exactly what the database says: now it is confirmed.
                    state.origin = Origin::Database;
                    drop(state);
                    self.rebuild();
                }
                tracing::debug!("limits unchanged in the database ({} ms)", started.elapsed().as_millis());
            }
            Fetched::New(fetched) => {
                let caps = fetched.mailboxes.len();
                {
                    let mut state = lock(&self.state);
                    if state.origin != Origin::Database {
                        // Rewrite the cache file even when the rows are the same as its own.
                        state.saved = None;
                    }
                    state.last = Some(fetched);
                    state.origin = Origin::Database;
                }
                self.rebuild();
                let limits = self.current();
                tracing::debug!(
                    "limits refreshed from database: global={} default_mailbox={} mailbox_caps={} ({caps} from the database) in {} ms",
                    limits.global,
                    limits.default_mailbox,
                    limits.capped_mailboxes(),
                    started.elapsed().as_millis()
                );
            }
        }
        self.save().await;
        Ok(())
    }

    /// Writes the last good read to the cache file when it differs from what the file holds.
    async fn save(&self) {
        let Some(db) = self.db.load_full().filter(|_| self.persist) else { return };
        let last = {
            let state = lock(&self.state);
            match &state.last {
                Some(last) if state.saved != Some(last.fingerprint) => last.clone(),
                _ => return,
            }
        };
        let settings = db.settings().clone();
        let now = chrono::Utc::now().timestamp();
        let fingerprint = last.fingerprint;
        let result =
            tokio::task::spawn_blocking(move || saved::save(&settings.cache_file, &settings, &last, now))
                .await
                .unwrap_or_else(|e| {
                    Err(SavedError::Io { path: "(cache writer)".into(), source: std::io::Error::other(e) })
                });
        let mut state = lock(&self.state);
        match result {
            Ok(()) => {
                state.saved = Some(fingerprint);
                if state.save_failing.take().is_some() {
                    tracing::info!("limits cache file written again");
                }
            }
            Err(e) => {
                let text = e.to_string();
                if state.save_failing.as_ref() != Some(&text) {
                    tracing::warn!(
                        "cannot write the limits cache file ({text}); a restart while the database is down will not know its caps"
                    );
                    state.save_failing = Some(text);
                }
            }
        }
    }

    /// Refreshes every `every` until `shutdown`; logs a failure once per outage (again only
    /// when its cause changes) and the recovery once.
    /// `failing` carries the outcome of a refresh made just before.
    pub async fn refresh_loop(
        self: Arc<Self>,
        every: std::time::Duration,
        mut failing: Option<String>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            failing = self.refresh_logged(failing).await;
        }
    }

    /// One refresh with outage-aware logging: `failing` is the last failure's text, if the
    /// previous refresh failed; returns this refresh's.
    pub async fn refresh_logged(&self, failing: Option<String>) -> Option<String> {
        match self.refresh().await {
            Ok(()) => {
                if failing.is_some() {
                    tracing::info!("database reachable again; limits refreshed");
                }
                None
            }
            Err(e) => {
                let text = e.to_string();
                if failing.as_ref() != Some(&text) {
                    let origin = self.current().origin;
                    let kept = match origin {
                        Origin::Database => "keeping the last good database limits".to_owned(),
                        Origin::CacheFile => "keeping the limits of the cache file".to_owned(),
                        Origin::Unknown => {
                            "its caps are counted but not enforced until it answers (erl fail-open reason=limits-unknown)"
                                .to_owned()
                        }
                        Origin::ConfigFile => format!("using {}", origin.describe()),
                    };
                    tracing::warn!("limits refresh failed ({text}); {kept}");
                }
                Some(text)
            }
        }
    }
}
