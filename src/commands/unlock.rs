//! `unlock`: a sender's (or a domain's) lock lifted.

use super::{CommandError, block_on, load};
use crate::admin;
use crate::cli::Unlock;

impl Unlock {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        print!("{}", block_on(admin::unlock(&config, &self.user))??);
        Ok(())
    }
}
