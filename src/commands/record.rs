//! `record`: an admin action done elsewhere, in syslog and the violations list.

use super::{CommandError, block_on, load};
use crate::admin;
use crate::cli::Record;

impl Record {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        print!("{}", block_on(admin::record(&config, &self.action, &self.user, &self.reason))??);
        Ok(())
    }
}
