//! `reset`: the counters of the current windows of a sender, a domain or the server.

use super::{CommandError, block_on, load};
use crate::admin;
use crate::cli::Reset;

impl Reset {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        print!("{}", block_on(admin::reset(&config, self.user.as_deref()))??);
        Ok(())
    }
}
