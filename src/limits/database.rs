//! Reads the limits from ISPConfig's MariaDB with two configurable queries (see
//! `scripts/sql/schema.sql`). Columns are read by position and any integer type is accepted,
//! because installed panels differ.
//!
//! - global query: `server_id, global_limit, default_mailbox_limit`; the row of the configured
//!   server id wins, else the row with server id 0.
//! - mailbox query: `email, daily_limit`, one row per opted-in mailbox; a NULL or 0 limit means
//!   the default per-mailbox cap.

use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use futures_util::TryStreamExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use super::caps::{CapTable, CapTableBuilder};
use super::erl_columns;
pub use super::sql::LimitsError;
use super::sql::int_column;
use crate::config::{DatabaseSettings, Layout};
use crate::sender;
use crate::window::{Rate, Window};

/// What one successful read returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabaseLimits {
    pub global: Option<u64>,
    pub default_mailbox: Option<u64>,
    pub mailboxes: Arc<CapTable>,
    /// Aggregate caps of domains (all their senders together), normalized domain names.
    pub domains: Vec<(String, Rate)>,
    /// A hash of everything read, to skip rebuilding when nothing changed.
    pub fingerprint: u64,
}

/// The outcome of a read.
#[derive(Debug)]
pub enum Fetched {
    /// Same rows as the read with this fingerprint: nothing rebuilt.
    Unchanged,
    New(DatabaseLimits),
}

/// Where and how to read. Each refresh opens its own short connection: one connection a
/// minute costs nothing, and no pooled connection can go stale across a MariaDB restart.
#[derive(Debug)]
pub struct DatabaseSource {
    options: MySqlConnectOptions,
    /// erl-columns: where `email_ratelimit` lives, when not in the main database.
    master: Option<MySqlConnectOptions>,
    settings: DatabaseSettings,
    /// The missing `email_ratelimit` table is logged once, not at every refresh.
    said_missing: std::sync::atomic::AtomicBool,
}

impl DatabaseSource {
    /// # Errors
    /// When the URL cannot be parsed into connection options.
    pub fn new(settings: &DatabaseSettings) -> Result<Self, LimitsError> {
        let open = |url: &str| {
            MySqlConnectOptions::from_str(url).map(|o| o.log_statements(tracing::log::LevelFilter::Trace))
        };
        Ok(Self {
            options: open(&settings.url)?,
            master: settings.master_url.as_deref().map(open).transpose()?,
            settings: settings.clone(),
            said_missing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The settings it reads with.
    #[must_use]
    pub fn settings(&self) -> &DatabaseSettings {
        &self.settings
    }

    /// Runs both queries, bounded by the configured timeout. Rows are streamed into one raw
    /// buffer and hashed; only when they differ from `previous` (a fingerprint) are the
    /// addresses normalized and the table built, on a blocking thread, off the request path.
    ///
    /// # Errors
    /// [`LimitsError`] on any connection, query, timeout or column-type fault.
    pub async fn fetch(&self, previous: Option<u64>) -> Result<Fetched, LimitsError> {
        if self.settings.layout == Layout::ErlColumns {
            return self.fetch_columns(previous).await;
        }
        let timeout = self.settings.timeout;
        let raw = tokio::time::timeout(timeout, self.fetch_raw())
            .await
            .map_err(|_| LimitsError::Timeout(timeout.as_secs()))??;
        if previous == Some(raw.fingerprint) {
            return Ok(Fetched::Unchanged);
        }
        tokio::task::spawn_blocking(move || raw.build())
            .await
            .map_err(|e| LimitsError::Build(e.to_string()))
            .map(Fetched::New)
    }

    /// The erl-columns layout: the rows of this server, resolved off the request path.
    async fn fetch_columns(&self, previous: Option<u64>) -> Result<Fetched, LimitsError> {
        let timeout = self.settings.timeout;
        let (rows, missing) = tokio::time::timeout(timeout, self.read_columns())
            .await
            .map_err(|_| LimitsError::Timeout(timeout.as_secs()))??;
        let said = self.said_missing.swap(missing, std::sync::atomic::Ordering::Relaxed);
        if missing && !said {
            tracing::warn!(
                "database: no table email_ratelimit{}: explicit limits skipped (logged once)",
                if self.master.is_some() { " in the master database" } else { "" }
            );
        }
        let fingerprint = rows.fingerprint();
        if previous == Some(fingerprint) {
            return Ok(Fetched::Unchanged);
        }
        tokio::task::spawn_blocking(move || {
            let resolved = erl_columns::resolve(&rows);
            if resolved.skipped > 0 {
                tracing::warn!(
                    "database: skipped {} rows with an unusable address or domain",
                    resolved.skipped
                );
            }
            let mut builder = CapTableBuilder::with_capacity(resolved.mailboxes.len());
            for (mailbox, rates) in resolved.mailboxes {
                let inherited = resolved.inherited.contains(&mailbox);
                builder.push_as(&mailbox, Some(rates), inherited);
            }
            DatabaseLimits {
                global: None,
                default_mailbox: None,
                mailboxes: Arc::new(builder.build()),
                domains: resolved.domains,
                fingerprint,
            }
        })
        .await
        .map_err(|e| LimitsError::Build(e.to_string()))
        .map(Fetched::New)
    }

    async fn read_columns(&self) -> Result<(erl_columns::Rows, bool), LimitsError> {
        let mut conn = MySqlConnection::connect_with(&self.options).await?;
        let mut master = match &self.master {
            Some(options) => match MySqlConnection::connect_with(options).await {
                Ok(m) => Some(m),
                Err(e) => {
                    let _ = conn.close().await;
                    return Err(e.into());
                }
            },
            None => None,
        };
        let rows = erl_columns::read(&mut conn, master.as_mut(), self.settings.server_id).await;
        let _ = conn.close().await;
        if let Some(m) = master {
            let _ = m.close().await;
        }
        rows
    }

    async fn fetch_raw(&self) -> Result<RawRows, LimitsError> {
        let mut conn = MySqlConnection::connect_with(&self.options).await?;
        let rows = self.read(&mut conn).await;
        // A failed close only leaves the server to drop the connection itself.
        let _ = conn.close().await;
        rows
    }

    async fn read(&self, conn: &mut MySqlConnection) -> Result<RawRows, LimitsError> {
        let global = AssertSqlSafe(self.settings.global_query.clone());
        let rows = sqlx::query(global).fetch_all(&mut *conn).await?;
        let mut own = None;
        let mut fallback = None;
        for row in &rows {
            let id = int_column(row, 0)?;
            let values = (positive(int_column(row, 1)?), positive(int_column(row, 2)?));
            if id == Some(u64::from(self.settings.server_id)) {
                own = Some(values);
            } else if id == Some(0) {
                fallback = Some(values);
            }
        }
        let (global, default_mailbox) = own.or(fallback).unwrap_or((None, None));

        let mut raw = RawRows { global, default_mailbox, ..RawRows::default() };
        let query = AssertSqlSafe(self.settings.mailbox_query.clone());
        let mut stream = sqlx::query(query).fetch(&mut *conn);
        while let Some(row) = stream.try_next().await? {
            raw.push(&row)?;
        }
        drop(stream);
        raw.fingerprint = raw.hash();
        Ok(raw)
    }
}

/// The mailbox rows as read: addresses in one buffer, not yet normalized.
#[derive(Debug, Default)]
struct RawRows {
    global: Option<u64>,
    default_mailbox: Option<u64>,
    text: String,
    rows: Vec<(usize, usize, Option<u64>)>,
    fingerprint: u64,
}

impl RawRows {
    fn push(&mut self, row: &MySqlRow) -> Result<(), LimitsError> {
        let start = self.text.len();
        match row.try_get::<Option<&str>, _>(0) {
            Ok(v) => self.text.push_str(v.unwrap_or_default()),
            Err(_) => {
                let bytes = row
                    .try_get::<Option<&[u8]>, _>(0)
                    .map_err(|e| LimitsError::Column { column: 0, reason: e.to_string() })?;
                self.text.push_str(&String::from_utf8_lossy(bytes.unwrap_or_default()));
            }
        }
        self.rows.push((start, self.text.len(), positive(int_column(row, 1)?)));
        Ok(())
    }

    fn hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.global, self.default_mailbox, &self.text, &self.rows).hash(&mut h);
        h.finish()
    }

    fn build(self) -> DatabaseLimits {
        let mut builder = CapTableBuilder::with_capacity(self.rows.len());
        let mut rejected = 0usize;
        for &(start, end, daily) in &self.rows {
            match sender::normalize(&self.text[start..end]) {
                Ok(m) if builder.push(&m, daily.map(|limit| vec![Rate::rcpt(limit, Window::Day)])) => {}
                _ => rejected += 1,
            }
        }
        if rejected > 0 {
            tracing::warn!("database: skipped {rejected} mailbox rows with an unusable email");
        }
        DatabaseLimits {
            global: self.global,
            default_mailbox: self.default_mailbox,
            mailboxes: Arc::new(builder.build()),
            domains: Vec::new(),
            fingerprint: self.fingerprint,
        }
    }
}

/// NULL and 0 both mean "not set here".
fn positive(v: Option<u64>) -> Option<u64> {
    v.filter(|&n| n > 0)
}
