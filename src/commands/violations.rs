//! `violations`: the recent records, newest first.

use super::{CommandError, block_on, load};
use crate::admin::{self, Only, Span, Subject};
use crate::cli::Violations;

impl Violations {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        let only = Only {
            user: self.user.map(|u| Subject::parse(&u, &config.server_name)).transpose()?,
            since: self.since.as_deref().map(Span::parse).transpose()?,
        };
        print!("{}", block_on(admin::violations(&config, self.limit, &only, self.json))??);
        Ok(())
    }
}
