//! `next-date` (hidden): the local date after today in the config's time zone, for
//! `install.sh enforce --at-midnight`.

use super::{CommandError, load};
use crate::cli::NextDate;
use crate::clock;

impl NextDate {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        println!("{}", config.timezone.next_date(clock::from_env().0.now()));
        Ok(())
    }
}
