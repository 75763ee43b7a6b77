//! Which ISPConfig websites run as a local user: `web_domain.domain` where `system_user` is
//! the user (ISPConfig's `web12`). For `status local:web12` and the hold notification; read
//! on demand (never on the request path) with the `[database]` credentials, which need
//! `SELECT (domain, system_user)` on `web_domain` (`install.sh db-user` grants it).

use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Row};

use super::LimitsError;
use crate::config::DatabaseSettings;

/// The websites of the system user `name`, sorted.
///
/// # Errors
/// [`LimitsError`] on any connection, query or timeout fault.
pub async fn of(settings: &DatabaseSettings, name: &str) -> Result<Vec<String>, LimitsError> {
    let read = async {
        let options = MySqlConnectOptions::from_str(&settings.url)?;
        let mut conn = MySqlConnection::connect_with(&options).await?;
        let rows = sqlx::query("SELECT domain FROM web_domain WHERE system_user = ? ORDER BY domain")
            .bind(name)
            .fetch_all(&mut conn)
            .await;
        let _ = conn.close().await;
        let mut sites = Vec::new();
        for row in rows? {
            sites.push(row.try_get::<String, _>(0)?);
        }
        Ok(sites)
    };
    tokio::time::timeout(settings.timeout, read)
        .await
        .map_err(|_| LimitsError::Timeout(settings.timeout.as_secs()))?
}
