//! email-ratelimit: a Postfix SMTP access policy daemon that enforces per-mailbox, per-domain and
//! server-wide send caps over the day and shorter windows, counted per recipient in Redis,
//! failing open on every fault.
//!
//! Data flows one way: bytes -> request -> decision -> counter store -> reply -> bytes.
//!
//! ## The modules, in layers
//!
//! Each module imports only modules of lower layers, and each names here exactly the modules it
//! imports (the `crate::` paths it uses outside its tests). `scripts/layers.py` checks this map
//! against the code and finds no circle; run it after moving anything.
//!
//! ### Layer 0: words: plain types and pure functions
//! - [`cli`] (imports nothing): the command-line definitions only (one struct of arguments per
//!   command).
//! - [`clock`] (imports nothing): "now" (the system's, or a test's) and "today" in the configured
//!   time zone.
//! - [`network`] (imports nothing): a client address's network (`/24`, `/48`), for known networks.
//! - [`once`] (imports nothing): "log this at most once a minute".
//! - [`oserror`] (imports nothing): errors without Rust's `(os error N)` tail.
//! - [`protocol`] (imports nothing): the Postfix policy wire format; pure, no I/O.
//! - [`sender`] (imports nothing): SASL username -> normalized mailbox key.
//! - [`window`] (imports nothing): caps and their windows (`Rate`, `Window`, `Unit`).
//!
//! ### Layer 1: vocabulary and settings
//! - [`caps`] (imports `window`): the caps vocabulary beside `window`: whose counter (`Scope`),
//!   which counter (`Counter`), the check on it (`Check`).
//! - [`config`] (imports `clock`, `network`, `sender`, `window`): raw TOML and environment ->
//!   validated, typed settings; the config path (`default_path`).
//! - [`maillog`] (imports `clock`): Postfix's log read: each line's stamp and program, what it says
//!   about a queued message, the lines of one message joined, several files merged by time.
//! - [`generate`] (imports `cli`): from the command-line definitions, email-ratelimit(8), one page
//!   per command, email-ratelimit.toml(5) and the shell completions.
//! - [`postqueue`] (imports `oserror`): Postfix's queue through its own commands (held mail, a
//!   queued message's headers, release).
//! - [`probe`] (imports `oserror`): one request to a running daemon, as `probe` sends it.
//!
//! ### Layer 2: what a decision rests on
//! - [`limits`] (imports `config`, `sender`, `window`): the limit set from the config file and
//!   MariaDB (or the cache file of its last good read), refreshed on a thread of its own; which
//!   caps apply to a mailbox (`effective`).
//! - [`server`] (imports `config`, `oserror`, `protocol`): listeners (one `Endpoint` type: a Unix
//!   socket bound without path races, or TCP; systemd activation), connection cap, per-connection
//!   tasks with bounded input and idle time, graceful drain.
//! - [`store`] (imports `caps`, `clock`, `config`, `sender`, `window`): the counter stores (Redis
//!   with `consume.lua`, in-memory), the key schema, a sender's history, and `RedisClient`, the
//!   plain Redis client for work off the request path. Only `store` builds Redis keys and sends
//!   Redis commands.
//! - [`telemetry`] (imports `config`): logging (lines written by one thread in 20 ms batches;
//!   stdout or syslog).
//!
//! ### Layer 3: around the store
//! - [`learn`] (imports `clock`, `config`, `limits`, `network`, `sender`, `store`, `window`):
//!   learned allowances from each sender's history, computed off the request path.
//! - [`milter`] (imports `config`, `protocol`, `store`): website mail (`sendmail`, PHP `mail()`)
//!   through Postfix's `non_smtpd_milters`: the local user, the daemon's own decision, the hold
//!   queue.
//! - [`notify`] (imports `caps`, `clock`, `config`, `limits`, `once`, `sender`, `store`, `window`):
//!   mails and webhooks about refusals, suspects and locks, off the request path.
//!
//! ### Layer 4: the decision
//! - [`policy`] (imports `caps`, `clock`, `config`, `learn`, `limits`, `notify`, `once`,
//!   `protocol`, `sender`, `store`, `window`): the decision: one settings snapshot per request, one
//!   `decide`, talking to a `store::CounterStore`.
//!
//! ### Layer 5: users of the decision
//! - [`metrics`] (imports `caps`, `config`, `notify`, `policy`, `server`, `window`): Prometheus
//!   counters of the decisions and the `/metrics` endpoint.
//! - [`replay`] (imports `clock`, `config`, `learn`, `limits`, `maillog`, `milter`, `notify`,
//!   `policy`, `protocol`, `sender`, `store`, `window`): what a config would have done with
//!   recorded requests or Postfix's own log (the daemon's decision code on the memory store and
//!   a virtual clock).
//!
//! ### Layer 6: the operator's commands and the daemon
//! - [`admin`] (imports `caps`, `clock`, `config`, `learn`, `limits`, `milter`, `notify`,
//!   `oserror`, `postqueue`, `probe`, `sender`, `store`, `telemetry`, `window`): the operator
//!   commands' work (`status`, `top`, `raise`, `lock`, `reset`, `trial`, ...) and their typed
//!   arguments.
//! - [`daemon`] (imports `clock`, `config`, `learn`, `limits`, `metrics`, `milter`, `notify`,
//!   `policy`, `protocol`, `server`, `store`, `telemetry`, `window`): `serve`: bind and drop
//!   privileges (`start`), build the parts, put the listeners to work, and the signal loop.
//!
//! ### Layer 7: the command line
//! - [`commands`] (imports `admin`, `cli`, `clock`, `config`, `daemon`, `generate`, `maillog`,
//!   `oserror`, `probe`, `replay`, `telemetry`): one file per command: parse what it was given
//!   once, run, and one `CommandError` mapped to exit codes.

#![forbid(unsafe_code)]

pub mod admin;
pub mod caps;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod generate;
pub mod learn;
pub mod limits;
pub mod maillog;
pub mod metrics;
pub mod milter;
pub mod network;
pub mod notify;
pub mod once;
pub mod oserror;
pub mod policy;
pub mod postqueue;
pub mod probe;
pub mod protocol;
pub mod replay;
pub mod sender;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod window;
