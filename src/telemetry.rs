//! Logging setup: one line per event on stdout (journald collects it), without our own
//! timestamps when journald adds its own; the level can be changed on SIGHUP.
//!
//! Lines are handed to a writer thread and written in batches (one `write` per burst, not per
//! line), so logging costs the request path a channel send. Under extreme overload, lines beyond
//! the queue (100,000) are dropped rather than stalling mail.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, reload};

/// Changes the log level of the running process.
pub struct LogHandle(reload::Handle<EnvFilter, Registry>);

impl LogHandle {
    /// # Errors
    /// When the level is not a valid filter (config validation checks it first).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

/// Keeps the writer thread alive; dropping it flushes what is queued.
pub type FlushGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global subscriber; `None` if one is already installed (tests).
#[must_use]
pub fn init(level: &str) -> Option<(LogHandle, FlushGuard)> {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(100_000)
        .thread_name("erl-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let base = fmt::layer().with_target(false).with_ansi(false).with_writer(writer);
    let output =
        if std::env::var_os("JOURNAL_STREAM").is_some() { base.without_time().boxed() } else { base.boxed() };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .ok()
        .map(|()| (LogHandle(handle), guard))
}
