//! `status`: a sender's (or a domain's) caps; without one, the health of what the daemon needs.

use super::{CommandError, block_on, load};
use crate::admin;
use crate::cli::Status;

impl Status {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        let Some(user) = self.user else {
            let (text, health) = block_on(admin::health(&config, self.json))??;
            // Printed either way; the exit status says what is down (for checks): 0 nothing,
            // 1 the daemon, 2 Redis.
            print!("{text}");
            return match health.exit_code() {
                0 => Ok(()),
                code => Err(CommandError::Down(code)),
            };
        };
        print!("{}", block_on(admin::status(&config, &user, self.json))??);
        Ok(())
    }
}
