//! `trial`: what enforcing would change now.

use super::{CommandError, block_on, load};
use crate::admin;
use crate::cli::Trial;

impl Trial {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        print!("{}", block_on(admin::trial(&config))??);
        Ok(())
    }
}
