//! The command-line definitions: one source for the parser, the man page and the shell
//! completions. Dispatch lives in `main.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const LONG_ABOUT: &str = "A Postfix SMTP access policy daemon that enforces send limits for \
authenticated senders: caps per mailbox, per domain and per server, over the local day and \
shorter windows (an hour, 15 minutes...), counted per recipient in Redis. Postfix asks once per message at \
end-of-data; over a cap the whole message is deferred (4xx, the client retries). Any fault of \
Redis, MariaDB or the daemon lets mail through (fail-open).";

const AFTER_LONG_HELP: &str = "FILES:
  /etc/email-ratelimit/config.toml   the configuration (check it with check-config)
  /var/spool/postfix/private/email-ratelimit   the policy socket (created by systemd)

ENVIRONMENT:
  EMAIL_RATELIMIT__<SECTION>__<KEY>   overrides a config key, e.g. EMAIL_RATELIMIT__REDIS__URL

SIGNALS:
  SIGHUP            re-read the config and the database caps (an invalid config is ignored)
  SIGTERM, SIGINT   finish in-flight replies and exit 0

EXIT STATUS:
  0 success, 1 failure, 78 invalid configuration

LOGS:
  One line per decision on stdout (the journal, and mail.log under the shipped unit):
  journalctl -u email-ratelimit -f | grep erl

SEE ALSO:
  email-ratelimit(8), email-ratelimit.toml(5), /usr/share/doc/email-ratelimit/README.md";

const REPLAY_EXAMPLES: &str =
    "Your own mail: Postfix's log, from the journal (a stock Debian 12 has no mail.log)
or from mail.log, rotated and gzipped files merged by time:
  journalctl --facility=mail -o short-iso | email-ratelimit replay --input maillog -
  email-ratelimit replay --input maillog /var/log/mail.log*
The daemon's own requests:
  journalctl -u email-ratelimit -o json | email-ratelimit replay --input journal -";

#[derive(Debug, Parser)]
#[command(
    name = "email-ratelimit",
    version,
    about = "Postfix policy daemon: per-mailbox, per-domain and server-wide send limits over windows",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the policy daemon.
    Serve(Serve),
    /// Validate the config and print the effective settings (passwords masked).
    CheckConfig(CheckConfig),
    /// Ask a running daemon what it would answer now (changes nothing; --count sends a real
    /// request) and print the reply's action.
    Probe(Probe),
    /// Show every applicable cap of a sender (or @domain): used, limit, remaining; lock, raise.
    Status(Status),
    /// List recent violations, newest first.
    Violations(Violations),
    /// Clear the counters of the current windows (today's and each window of the caps in force) of
    /// a sender (and its top score), a domain, or the server.
    Reset(Reset),
    /// Today's biggest senders (or domains), biggest first.
    Top(Top),
    /// Replace a sender's caps for a while, on every server sharing the Redis.
    Raise(Raise),
    /// Lock a sender (or every sender of @domain): its mail is deferred on every server sharing
    /// the Redis until unlocked.
    Lock(Lock),
    /// Lift the lock of a sender (and forget its client addresses and refusals of today) or of
    /// @domain; exit 1 when it was not locked.
    Unlock(Unlock),
    /// Release the website mail of local:NAME that this server put on hold (postsuper -H on the
    /// queue IDs it recorded that are still held; mail held for other reasons stays held); exit 1
    /// when there is none.
    Release(Release),
    /// What enforcing would change now: the caps, today's would-be refusals of the log-only
    /// trial by sender, and who is over a cap already (install.sh enforce prints it first).
    Trial(Trial),
    /// Record an admin action done outside these commands (install.sh enforce and log-only use
    /// it): a syslog line and a "type": "admin" record in the violations list.
    Record(Record),
    /// What would this config have done? Run timestamped requests (Postfix's own log, JSON
    /// lines, or the daemon's journal) through the daemon's decision code on a virtual clock;
    /// nothing is sent.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(Replay),
    /// The locked senders.
    Locks(Locks),
    /// Print the local date after today in the config's timezone (install.sh enforce
    /// --at-midnight).
    #[command(hide = true)]
    NextDate(NextDate),
    /// Write the man pages into a directory, or print a shell completion script (packaging).
    #[command(hide = true)]
    Generate(Generate),
}

#[derive(Debug, Args)]
pub struct Serve {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Write the process ID here once the sockets are bound (before dropping to `[daemon]
    /// user`); removed at exit (the init script uses /run/email-ratelimit/email-ratelimit.pid)
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckConfig {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Only validate; print nothing when the config is valid
    #[arg(long, short)]
    pub quiet: bool,
    /// Print only the settings that differ from the defaults (like postconf -n), with the
    /// time zone resolved
    #[arg(short = 'n', long = "non-default")]
    pub non_default: bool,
}

#[derive(Debug, Args)]
pub struct Probe {
    /// The config whose [listen] socket is asked when --socket is not given
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Unix socket path, or host:port [default: [listen] socket of the config]
    #[arg(long)]
    pub socket: Option<String>,
    /// sasl_username to send
    #[arg(long)]
    pub user: String,
    #[arg(long, default_value_t = 1)]
    pub recipients: u32,
    /// protocol_state to send
    #[arg(long, default_value = "END-OF-MESSAGE")]
    pub state: String,
    /// client_address to send
    #[arg(long = "client", visible_alias = "client-address", default_value = "127.0.0.1")]
    pub client_address: String,
    /// The envelope sender (MAIL FROM) [default: the user]
    #[arg(long)]
    pub sender: Option<String>,
    /// The recipient (as at RCPT)
    #[arg(long, default_value = "")]
    pub recipient: String,
    /// The message size in bytes
    #[arg(long, default_value_t = 1024)]
    pub size: u64,
    /// Send a real request: counted, recorded and notified like any message
    #[arg(long)]
    pub count: bool,
    /// Seconds to wait for the reply
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct Status {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
    /// A sender, or @domain; without one, the health of Redis, the limits and the server's count
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct Violations {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Only this sender's records (an address), or every sender's of a domain (`@domain`)
    #[arg(long)]
    pub user: Option<String>,
    /// Only the records of the last DURATION (90m, 24h, 2d)
    #[arg(long)]
    pub since: Option<String>,
    /// Print the stored JSON records
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("whom").required(true).args(["user", "server"])))]
pub struct Reset {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A sender, or @domain (the domain's own counters)
    pub user: Option<String>,
    /// The server's counters (every sender counts there)
    #[arg(long)]
    pub server: bool,
}

#[derive(Debug, Args)]
pub struct Top {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Sum per domain
    #[arg(long, conflicts_with = "local")]
    pub domains: bool,
    /// Local users (website mail, local:NAME) instead of SMTP senders
    #[arg(long)]
    pub local: bool,
    /// Another local day than today (kept 8 days)
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<chrono::NaiveDate>,
    /// Print a JSON list
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Raise {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    pub user: String,
    /// Caps like 500/1d 100/1h
    #[arg(required_unless_present = "cancel")]
    pub caps: Vec<String>,
    /// How long: 90m, 24h, 2d
    #[arg(long = "for", required_unless_present = "cancel")]
    pub duration: Option<String>,
    /// End the sender's raise now (its caps from the config or the database apply again)
    #[arg(long, conflicts_with_all = ["caps", "duration", "lower"])]
    pub cancel: bool,
    /// Allow a cap below the one in force for the same window (a raise that lowers)
    #[arg(long)]
    pub lower: bool,
}

#[derive(Debug, Args)]
pub struct Lock {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    pub user: String,
    /// Why (shown by locks, status and the notifications)
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Lift it by itself after this long: 90m, 24h, 2d
    #[arg(long = "for")]
    pub duration: Option<String>,
}

#[derive(Debug, Args)]
pub struct Unlock {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    pub user: String,
}

#[derive(Debug, Args)]
pub struct Release {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// local:NAME, e.g. local:web12
    pub user: String,
}

#[derive(Debug, Args)]
pub struct Trial {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Record {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// What was done: enforce, log-only, ...
    pub action: String,
    /// Whom it concerns
    #[arg(long, default_value = "global")]
    pub user: String,
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct Replay {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// How the input is written
    #[arg(long, value_enum, default_value = "jsonl")]
    pub input: ReplayInput,
    /// Write one JSON line per decided request here
    #[arg(long, value_name = "FILE")]
    pub decisions: Option<PathBuf>,
    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,
    /// enforce (default: what enforcing would have done) or as-configured (keep log-only)
    #[arg(long, value_enum, default_value = "enforce")]
    pub mode: ReplayModeArg,
    /// --input maillog: the year the newest input ends in (traditional stamps have none)
    /// [default: from each file's modification time; for -, today]
    #[arg(long, value_name = "YYYY")]
    pub year: Option<i32>,
    /// --input maillog: the passwd file that names the local users of website mail (a log from
    /// another server)
    #[arg(long, value_name = "FILE", default_value = "/etc/passwd")]
    pub passwd: PathBuf,
    /// The input files (Postfix's logs are merged by time; plain or gzip), or - for standard
    /// input
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Locks {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NextDate {
    /// Config file [default: /etc/email-ratelimit/config.toml, embedded defaults if absent]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Generate {
    #[arg(value_enum)]
    pub what: Generated,
    /// Directory for the man pages
    #[arg(long, required_if_eq("what", "man"))]
    pub dir: Option<PathBuf>,
}

/// What `generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// `replay --input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayInput {
    /// One JSON object per line: ts and Postfix's attribute names
    Jsonl,
    /// journalctl -u email-ratelimit -o json (approximate)
    Journal,
    /// Postfix's own log: mail.log (syslog stamps), or journalctl --facility=mail -o short-iso
    Maillog,
}

/// `replay --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayModeArg {
    Enforce,
    AsConfigured,
}
