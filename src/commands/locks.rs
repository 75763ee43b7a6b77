//! `locks`: the locked senders.

use super::{CommandError, block_on, load};
use crate::admin;
use crate::cli::Locks;

impl Locks {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        print!("{}", block_on(admin::locks(&config, self.json))??);
        Ok(())
    }
}
