//! `generate` (hidden): the man pages, or a shell completion script (packaging).

use super::CommandError;
use crate::cli::Generate;
use crate::generate;

impl Generate {
    pub(super) fn run(self) -> Result<(), CommandError> {
        generate::generate(self.what, self.dir.as_deref(), &mut std::io::stdout().lock())
            .map_err(|e| CommandError::Failed(e.to_string()))
    }
}
