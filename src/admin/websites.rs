//! The websites of a local user, for `status local:NAME`: `None` without `[database]`, or when
//! the database cannot say (the reason goes to stderr).

use crate::config::Config;

pub(super) async fn of(config: &Config, name: &str) -> Option<Vec<String>> {
    let db = config.database.as_ref()?;
    match crate::limits::websites::of(db, name).await {
        Ok(sites) => Some(sites),
        Err(e) => {
            eprintln!("websites of {name}: {e}");
            None
        }
    }
}
