//! `top`: today's (or a date's) biggest senders, domains or local users.

use super::{CommandError, block_on, load};
use crate::admin::{self, TopOf};
use crate::cli::Top;

impl Top {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        let of = match (self.domains, self.local) {
            (true, _) => TopOf::Domains,
            (false, true) => TopOf::Local,
            (false, false) => TopOf::Senders,
        };
        print!("{}", block_on(admin::top(&config, self.limit, of, self.date, self.json))??);
        Ok(())
    }
}
