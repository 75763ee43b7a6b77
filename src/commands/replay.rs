//! `replay`: what a config would have done with recorded requests; the summary text (or JSON).

use std::io::{BufRead, BufReader, BufWriter, Write};

use super::{CommandError, block_on, load};
use crate::cli::{Replay, ReplayInput, ReplayModeArg};
use crate::oserror;
use crate::replay::{self, Format, ReplayMode};

impl Replay {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        let failed = CommandError::Failed;
        let format = match self.input {
            ReplayInput::Jsonl => Format::Jsonl,
            ReplayInput::Journal => Format::Journal,
        };
        let mode = match self.mode {
            ReplayModeArg::Enforce => ReplayMode::Enforce,
            ReplayModeArg::AsConfigured => ReplayMode::AsConfigured,
        };
        let file = &self.file;
        let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            let f = std::fs::File::open(file)
                .map_err(|e| failed(format!("{}: {}", file.display(), oserror::plain(&e))))?;
            Box::new(BufReader::with_capacity(1 << 20, f))
        };
        let mut out = match &self.decisions {
            Some(path) => Some(BufWriter::new(
                std::fs::File::create(path)
                    .map_err(|e| failed(format!("{}: {}", path.display(), oserror::plain(&e))))?,
            )),
            None => None,
        };
        let decisions = out.as_mut().map(|w| w as &mut dyn Write);
        let report = block_on(replay::run(&config, reader, format, mode, decisions))?
            .map_err(|e| failed(e.to_string()))?;
        if let Some(mut w) = out {
            w.flush().map_err(|e| failed(e.to_string()))?;
        }
        print!("{}", if self.json { report.json().to_string() + "\n" } else { report.text() });
        Ok(())
    }
}
