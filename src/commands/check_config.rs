//! `check-config`: the warnings `serve` would log, on stderr (stdout stays the effective config);
//! a setting refused (the daemon runs without its part) fails the check.

use super::{CommandError, load};
use crate::cli::CheckConfig;
use crate::config;

impl CheckConfig {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        for warning in config::warnings(&config) {
            eprintln!("warning: {warning}");
        }
        if self.non_default {
            print!("{}", config.render_non_default());
        } else if !self.quiet {
            print!("{}", config.render());
        }
        if config.refused.is_empty() {
            Ok(())
        } else {
            Err(CommandError::Refused(config.refused.iter().map(ToString::to_string).collect()))
        }
    }
}
