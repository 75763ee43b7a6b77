//! `release`: the website mail of a local user that this server put on hold.

use super::{CommandError, block_on, load};
use crate::admin;
use crate::cli::Release;

impl Release {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        print!("{}", block_on(admin::release(&config, &self.user))??);
        Ok(())
    }
}
