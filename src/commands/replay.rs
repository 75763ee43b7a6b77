//! `replay`: what a config would have done with recorded requests; the summary text (or JSON).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use super::{CommandError, block_on, load};
use crate::cli::{Replay, ReplayInput, ReplayModeArg};
use crate::config::Config;
use crate::replay::{self, Input, ReplayMode, lines::Lines};
use crate::{clock, maillog, oserror};

impl Replay {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        let failed = CommandError::Failed;
        let mode = match self.mode {
            ReplayModeArg::Enforce => ReplayMode::Enforce,
            ReplayModeArg::AsConfigured => ReplayMode::AsConfigured,
        };
        let input = self.input(&config)?;
        let mut out = match &self.decisions {
            Some(path) => {
                Some(BufWriter::new(std::fs::File::create(path).map_err(|e| failed(named(path, &e)))?))
            }
            None => None,
        };
        let decisions = out.as_mut().map(|w| w as &mut dyn Write);
        let report =
            block_on(replay::run(&config, input, mode, decisions))?.map_err(|e| failed(e.to_string()))?;
        if let Some(mut w) = out {
            w.flush().map_err(|e| failed(e.to_string()))?;
        }
        print!("{}", if self.json { report.json().to_string() + "\n" } else { report.text() });
        Ok(())
    }

    /// The inputs opened: read line by line, or (Postfix's log) read whole and merged.
    fn input(&self, config: &Config) -> Result<Input, CommandError> {
        let failed = CommandError::Failed;
        let names = self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        if self.input == ReplayInput::Maillog {
            let zone = config.timezone;
            let today = zone.moment(clock::from_env().0.now()).day();
            let sources = self
                .files
                .iter()
                .map(|f| maillog::Source::open(f, &zone, today).map_err(|e| failed(named(f, &e))))
                .collect::<Result<Vec<_>, _>>()?;
            let passwd =
                replay::maillog::Passwd::read(&self.passwd).map_err(|e| failed(named(&self.passwd, &e)))?;
            let log = maillog::read(sources, &zone, self.year)
                .map_err(|e| failed(format!("{names}: {}", oserror::plain(&e))))?;
            let (requests, counts) = replay::maillog::requests(log, &passwd);
            return Ok(Input::Maillog { requests: requests.into_iter(), counts, names });
        }
        let mut sources: Vec<(String, Box<dyn BufRead>)> = Vec::new();
        for file in &self.files {
            let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(BufReader::new(std::io::stdin()))
            } else {
                let f = std::fs::File::open(file).map_err(|e| failed(named(file, &e)))?;
                Box::new(BufReader::with_capacity(1 << 20, f))
            };
            sources.push((file.display().to_string(), reader));
        }
        Ok(Input::Lines(match self.input {
            ReplayInput::Journal => Lines::journal(sources),
            ReplayInput::Jsonl | ReplayInput::Maillog => Lines::jsonl(sources),
        }))
    }
}

/// `path: error`, without Rust's `(os error N)`.
fn named(path: &Path, e: &std::io::Error) -> String {
    format!("{}: {}", path.display(), oserror::plain(e))
}
