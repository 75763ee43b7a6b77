//! `raise`: a sender's caps replaced for a while (`--cancel`: ended now).

use super::{CommandError, block_on, load};
use crate::admin::{self, AdminError, Lowering, Span};
use crate::cli::Raise;

impl Raise {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        let server = &config.server_name;
        if self.cancel {
            let mailbox = admin::mailbox_only(&self.user, server, "raise --cancel")?;
            print!("{}", block_on(admin::cancel_raise(&config, &mailbox))??);
            return Ok(());
        }
        let mailbox = admin::mailbox_only(&self.user, server, "raise")?;
        let rates = admin::parse_caps(&self.caps.join(" ")).map_err(AdminError::Usage)?;
        let duration = Span::parse(self.duration.as_deref().unwrap_or_default())?;
        let lowering = if self.lower { Lowering::Allowed } else { Lowering::Refused };
        print!("{}", block_on(admin::raise(&config, &mailbox, &rates, &duration, lowering))??);
        Ok(())
    }
}
