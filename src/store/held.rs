//! The queue IDs of website mail this server put on hold (`erl:held:<server>:<name>`), as
//! `release` reads and clears them.

use redis::AsyncCommands;

use super::StoreError;
use super::client::RedisClient;

impl RedisClient {
    /// The queue IDs recorded held for the local user `name` by `server`, oldest first.
    ///
    /// # Errors
    /// Redis faults (a key of another type among them).
    pub async fn held(&mut self, server: &str, name: &str) -> Result<Vec<String>, StoreError> {
        let key = self.keys.held(server, name).to_string();
        Ok(self.conn.zrange(&key, 0, -1).await?)
    }

    /// Forgets `ids` (released, or no longer held).
    ///
    /// # Errors
    /// Redis faults.
    pub async fn forget_held(&mut self, server: &str, name: &str, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let key = self.keys.held(server, name).to_string();
        let _: i64 = self.conn.zrem(&key, ids).await?;
        Ok(())
    }
}
