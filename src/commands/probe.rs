//! `probe`: one request to a running daemon, its reply's action printed.

use std::time::Duration;

use super::{CommandError, block_on, load};
use crate::cli::Probe;
use crate::probe;

impl Probe {
    pub(super) fn run(self) -> Result<(), CommandError> {
        // The config is read for its socket only when none is given.
        let socket = match self.socket {
            Some(socket) => socket,
            None => load(self.config.as_deref())?.listen.socket.display().to_string(),
        };
        let request = probe::Probe {
            user: self.user,
            recipients: self.recipients,
            state: self.state,
            client_address: self.client_address,
            sender: self.sender.unwrap_or_default(),
            recipient: self.recipient,
            size: self.size,
            count: self.count,
        };
        let answer = block_on(probe::send(&socket, &request, Duration::from_secs(self.timeout)))?
            .map_err(|e| CommandError::Failed(e.to_string()))?;
        print!("{answer}");
        Ok(())
    }
}
