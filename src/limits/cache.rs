//! The in-memory limit set that requests read lock-free, and its refresh: every
//! `refresh_secs` and on SIGHUP. A failed refresh keeps the last good database set; with none
//! yet, the config file's values serve.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::{DatabaseLimits, DatabaseSource, Fetched, Limits, LimitsError};
use crate::config::LimitSettings;

pub struct LimitsCache {
    current: ArcSwap<Limits>,
    config: Mutex<LimitSettings>,
    last_db: Mutex<Option<DatabaseLimits>>,
    db: Option<DatabaseSource>,
}

impl LimitsCache {
    /// Starts with the config file's limits; call [`Self::refresh`] to read the database.
    #[must_use]
    pub fn new(config: LimitSettings, db: Option<DatabaseSource>) -> Self {
        Self {
            current: ArcSwap::from_pointee(Limits::from_config(&config)),
            config: Mutex::new(config),
            last_db: Mutex::new(None),
            db,
        }
    }

    /// The current set (a cheap pointer copy).
    #[must_use]
    pub fn current(&self) -> Arc<Limits> {
        self.current.load_full()
    }

    /// Replaces the config file's part (after SIGHUP) and rebuilds the set at once.
    pub fn set_config(&self, config: LimitSettings) {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = config;
        self.rebuild();
    }

    fn rebuild(&self) {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let db = self.last_db.lock().unwrap_or_else(PoisonError::into_inner);
        self.current.store(Arc::new(Limits::merged(&config, db.as_ref())));
    }

    /// Re-reads the database (when configured) and swaps in the new set.
    ///
    /// # Errors
    /// The database fault; the previous set stays in force.
    pub async fn refresh(&self) -> Result<(), LimitsError> {
        let Some(db) = &self.db else {
            self.rebuild();
            return Ok(());
        };
        let started = Instant::now();
        let previous =
            self.last_db.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|d| d.fingerprint);
        let fetched = match db.fetch(previous).await? {
            Fetched::Unchanged => {
                tracing::debug!("limits unchanged in the database ({} ms)", started.elapsed().as_millis());
                return Ok(());
            }
            Fetched::New(fetched) => fetched,
        };
        let caps = fetched.mailboxes.len();
        *self.last_db.lock().unwrap_or_else(PoisonError::into_inner) = Some(fetched);
        self.rebuild();
        let limits = self.current();
        tracing::debug!(
            "limits refreshed from database: global={} default_mailbox={} mailbox_caps={} ({caps} from the database) in {} ms",
            limits.global,
            limits.default_mailbox,
            limits.capped_mailboxes(),
            started.elapsed().as_millis()
        );
        Ok(())
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
                    let kept = match self.current().origin {
                        super::Origin::Database => "the last good database limits",
                        super::Origin::ConfigFile => "the config file's limits",
                    };
                    tracing::warn!("limits refresh failed ({text}); keeping {kept}");
                }
                Some(text)
            }
        }
    }
}
