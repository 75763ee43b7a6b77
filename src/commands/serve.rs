//! `serve`: bind, write the pid file and drop to `[daemon] user` while this is the only thread;
//! the log's writer and jemalloc's threads start after, then the daemon runs until a signal.

use super::{CommandError, background_threads, load, runtime};
use crate::cli::Serve;
use crate::{daemon, telemetry};

impl Serve {
    pub(super) fn run(self) -> Result<(), CommandError> {
        let config = load(self.config.as_deref())?;
        let runtime = runtime()?;
        let failed = |e: daemon::DaemonError| {
            if e.is_config() {
                CommandError::Config(e.to_string())
            } else {
                CommandError::Failed(e.to_string())
            }
        };
        let prepared = runtime.block_on(daemon::prepare(&config, self.pidfile.as_deref())).map_err(failed)?;
        background_threads();
        let (log, _flush) = telemetry::init(&config.log).unzip();
        runtime.block_on(daemon::serve(self.config, config, log, prepared)).map_err(failed)
    }
}
