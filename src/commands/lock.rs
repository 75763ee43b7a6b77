//! `lock`: a sender's (or a domain's) mail deferred on every server sharing the Redis.

use super::{CommandError, block_on, load};
use crate::admin::{self, Span, Subject};
use crate::cli::Lock;

impl Lock {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        let subject = Subject::parse(&self.user, &config.server_name)?;
        let duration = self.duration.as_deref().map(Span::parse).transpose()?;
        print!("{}", block_on(admin::lock(&config, &subject, &self.reason, duration.as_ref()))??);
        Ok(())
    }
}
