//! Where the Redis master is: a fixed URL, or whatever the Sentinels say it is now.
//!
//! With `[redis] sentinels`, every new connection asks the Sentinels for the current master
//! (redis-rs checks that the address answers `ROLE` as a master). The store drops its connection
//! on a link fault or a `READONLY` reply (a demoted master), so the next connection follows a
//! failover; while no master is known, connecting fails and the caller fails open.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo};

use super::StoreError;
use crate::config::RedisSettings;

/// A fixed server or a Sentinel-managed master.
pub enum Target {
    Direct(Client),
    Sentinel(Box<tokio::sync::Mutex<SentinelClient>>),
}

impl Target {
    /// # Errors
    /// When the URL or a Sentinel address is invalid.
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        if settings.sentinels.is_empty() {
            return Ok(Self::Direct(Client::open(settings.url.as_str())?));
        }
        // The URL gives the master's database, user and password.
        let info = settings.url.as_str().into_connection_info()?;
        let redis = info.redis_settings();
        let addrs = settings.sentinels.iter().map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder =
            SentinelClientBuilder::new(addrs, &settings.sentinel_master, SentinelServerType::Master)?
                .set_client_to_redis_db(redis.db());
        if let Some(user) = redis.username() {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = redis.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = &settings.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        Ok(Self::Sentinel(Box::new(tokio::sync::Mutex::new(builder.build()?))))
    }

    /// A client for the current master (for Sentinels: asks them now).
    async fn client(&self) -> Result<Client, StoreError> {
        match self {
            Self::Direct(c) => Ok(c.clone()),
            Self::Sentinel(s) => Ok(s.lock().await.async_get_client().await?),
        }
    }

    /// Opens one multiplexed connection to the current master, all within `timeout`.
    ///
    /// # Errors
    /// The Redis or Sentinel error, or [`StoreError::Timeout`].
    pub async fn connect(&self, timeout: Duration) -> Result<MultiplexedConnection, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let open = async {
            let client = self.client().await?;
            Ok::<_, StoreError>(client.get_multiplexed_async_connection_with_config(&config).await?)
        };
        tokio::time::timeout(timeout, open).await.map_err(|_| StoreError::Timeout(millis(timeout)))?
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
