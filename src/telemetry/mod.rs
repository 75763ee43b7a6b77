//! Logging setup: one line per event on stdout (journald collects it), or to syslog when no one
//! reads stdout (`[log] target`, [`syslog`]); the level can be changed on SIGHUP. Under systemd (`JOURNAL_STREAM` set) a line carries no timestamp of its own
//! (journald adds one) and starts with its syslog priority (`<3>` error, `<4>` warning, `<6>`
//! info, `<7>` debug), so `journalctl -p warning` shows only warnings and errors.
//!
//! Lines are handed to a writer thread and written in batches ([`batch`]: one `write` and one
//! thread wake-up per batch of up to 20 ms, not per line). When the output is stuck, lines
//! beyond 8 MiB are dropped and counted rather than stalling mail.

mod batch;
pub mod syslog;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::config::{LogSettings, LogTarget};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, reload};

/// The syslog priority journald reads from a line's `<N>` prefix (sd-daemon(3)).
#[must_use]
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// journald's line format: `<N>` and the message, no time, no level word (the priority is it).
struct Journal;

impl<S, N> FormatEvent<S, N> for Journal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    write!(writer, "{}{{{fields}}}: ", span.name())?;
                }
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

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

/// Keeps the writer thread alive; dropping it writes what is queued.
pub type FlushGuard = batch::Flush;

/// Where the lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Syslog,
}

impl Output {
    /// `[log] target`: `auto` is stdout unless stdout is `/dev/null` (as `start-stop-daemon
    /// --background` leaves it; a closed stdout is `/dev/null` too, since Rust reopens closed
    /// standard descriptors there at start).
    #[must_use]
    pub fn of(target: LogTarget) -> Self {
        match target {
            LogTarget::Stdout => Self::Stdout,
            LogTarget::Syslog => Self::Syslog,
            LogTarget::Auto if stdout_is_null() => Self::Syslog,
            LogTarget::Auto => Self::Stdout,
        }
    }
}

fn stdout_is_null() -> bool {
    use std::os::fd::AsFd;
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else { return true };
    let Ok(out) = std::fs::File::from(fd).metadata() else { return true };
    let Ok(null) = std::fs::metadata("/dev/null") else { return false };
    out.file_type().is_char_device() && out.rdev() == null.rdev()
}

/// Installs the global subscriber; `None` if one is already installed (tests) or the writer
/// thread cannot start.
#[must_use]
pub fn init(settings: &LogSettings) -> Option<(LogHandle, FlushGuard)> {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let output = Output::of(settings.target);
    let (writer, guard) = match output {
        Output::Stdout => batch::start(std::io::stdout(), batch::GATHER, batch::MAX_PENDING).ok()?,
        Output::Syslog => {
            let sender = syslog::Sender::new(syslog::socket_path()).ok()?;
            batch::start(sender, batch::GATHER, batch::MAX_PENDING).ok()?
        }
    };
    let base = fmt::layer().with_target(false).with_ansi(false).with_writer(writer);
    // syslog and journald take the severity from the line's `<N>` and stamp it themselves.
    let output = if output == Output::Syslog || std::env::var_os("JOURNAL_STREAM").is_some() {
        base.event_format(Journal).boxed()
    } else {
        base.event_format(format::Format::default().with_target(false).with_ansi(false)).boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .ok()
        .map(|()| (LogHandle(handle), guard))
}
