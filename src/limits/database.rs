//! Reads the limits from ISPConfig's MariaDB with two configurable queries (see
//! `scripts/sql/schema.sql`). Columns are read by position and any integer type is accepted,
//! because installed panels differ.
//!
//! - global query: `server_id, global_limit, default_mailbox_limit`; the row of the configured
//!   server id wins, else the row with server id 0.
//! - mailbox query: `email, daily_limit`, one row per opted-in mailbox; a NULL or 0 limit means
//!   the default per-mailbox cap.

use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use crate::config::DatabaseSettings;
use crate::sender::{self, Mailbox};

/// What one successful read returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabaseLimits {
    pub global: Option<u64>,
    pub default_mailbox: Option<u64>,
    pub mailboxes: Vec<(Mailbox, Option<u64>)>,
}

/// A failed read; the caller keeps its last good set.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database query timed out after {0} s")]
    Timeout(u64),
    #[error("database column {column}: {reason}")]
    Column { column: usize, reason: String },
}

/// Where and how to read. Each refresh opens its own short connection: one connection a
/// minute costs nothing, and no pooled connection can go stale across a MariaDB restart.
#[derive(Debug)]
pub struct DatabaseSource {
    options: MySqlConnectOptions,
    settings: DatabaseSettings,
}

impl DatabaseSource {
    /// # Errors
    /// When the URL cannot be parsed into connection options.
    pub fn new(settings: &DatabaseSettings) -> Result<Self, LimitsError> {
        let options =
            MySqlConnectOptions::from_str(&settings.url)?.log_statements(tracing::log::LevelFilter::Trace);
        Ok(Self { options, settings: settings.clone() })
    }

    /// Runs both queries, bounded by the configured timeout.
    ///
    /// # Errors
    /// [`LimitsError`] on any connection, query, timeout or column-type fault.
    pub async fn fetch(&self) -> Result<DatabaseLimits, LimitsError> {
        let timeout = self.settings.timeout;
        tokio::time::timeout(timeout, self.fetch_inner())
            .await
            .map_err(|_| LimitsError::Timeout(timeout.as_secs()))?
    }

    async fn fetch_inner(&self) -> Result<DatabaseLimits, LimitsError> {
        let mut conn = MySqlConnection::connect_with(&self.options).await?;
        let limits = self.read(&mut conn).await;
        // A failed close only leaves the server to drop the connection itself.
        let _ = conn.close().await;
        limits
    }

    async fn read(&self, conn: &mut MySqlConnection) -> Result<DatabaseLimits, LimitsError> {
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

        let rows =
            sqlx::query(AssertSqlSafe(self.settings.mailbox_query.clone())).fetch_all(&mut *conn).await?;
        let mut mailboxes = Vec::with_capacity(rows.len());
        let mut rejected = 0usize;
        for row in &rows {
            match sender::normalize(&text_column(row, 0)?) {
                Ok(m) => mailboxes.push((m, positive(int_column(row, 1)?))),
                Err(_) => rejected += 1,
            }
        }
        if rejected > 0 {
            tracing::warn!("database: skipped {rejected} mailbox rows with an unusable email");
        }
        Ok(DatabaseLimits { global, default_mailbox, mailboxes })
    }
}

/// NULL and 0 both mean "not set here".
fn positive(v: Option<u64>) -> Option<u64> {
    v.filter(|&n| n > 0)
}

fn int_column(row: &MySqlRow, i: usize) -> Result<Option<u64>, LimitsError> {
    if let Ok(v) = row.try_get::<Option<u64>, _>(i) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v.map(|n| u64::try_from(n).unwrap_or(0)));
    }
    match row.try_get::<Option<String>, _>(i) {
        Ok(None) => Ok(None),
        Ok(Some(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| LimitsError::Column { column: i, reason: format!("{s:?} is not a whole number") }),
        Err(e) => Err(LimitsError::Column { column: i, reason: e.to_string() }),
    }
}

fn text_column(row: &MySqlRow, i: usize) -> Result<String, LimitsError> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return Ok(v.unwrap_or_default());
    }
    row.try_get::<Option<Vec<u8>>, _>(i)
        .map(|v| String::from_utf8_lossy(&v.unwrap_or_default()).into_owned())
        .map_err(|e| LimitsError::Column { column: i, reason: e.to_string() })
}
