//! email-ratelimit: a Postfix SMTP access policy daemon that enforces per-mailbox, per-domain and
//! server-wide send caps over the day and shorter windows, counted per recipient in Redis,
//! failing open on every fault.
//!
//! Data flows one way: bytes -> request -> decision -> counter store -> reply -> bytes.
//!
//! - [`config`]: raw TOML and environment -> validated, typed settings.
//! - [`window`]: caps and their windows (`Rate`, `Window`): plain types that `config` and
//!   `limits` share, importing neither.
//! - [`protocol`]: the Postfix policy wire format; pure, no I/O.
//! - [`server`]: listeners (Unix socket bound without path races, systemd activation, TCP),
//!   connection cap, per-connection tasks with bounded input and idle time, graceful drain.
//! - [`policy`]: the decision table; talks to a [`store::CounterStore`].
//! - [`sender`]: SASL username -> normalized mailbox key.
//! - [`limits`]: the limit set from the config file and MariaDB (or the cache file of its last
//!   good read), refreshed on a thread of its own; the database's caps are "unknown" until one of
//!   them is known.
//! - [`clock`]: "now" (the system's, or a test's) and "today" in the configured time zone.
//! - [`store`]: the counter stores (Redis with `consume.lua`, in-memory) and the key schema.
//! - [`daemon`]: `serve`, wiring it all together with signals and systemd notification.
//! - [`cli`]: the command-line definitions only.
//! - [`learn`]: learned allowances from each sender's history, computed off the request path;
//!   [`network`]: a client address's network (a leaf `config` and `learn` share).
//! - [`replay`]: what a config would have done with recorded requests (the daemon's decision
//!   code on the memory store and a virtual clock).
//! - [`admin`], [`probe`]: the operator commands (`status`, `top`, `raise`, `reset`, ...).
//! - [`metrics`]: Prometheus counters of the decisions and the `/metrics` endpoint.
//! - [`milter`]: website mail (`sendmail`, PHP `mail()`) through Postfix's `non_smtpd_milters`:
//!   the local user, the daemon's own decision, the hold queue; [`postqueue`]: Postfix's queue
//!   through its own commands (held mail, a queued message's headers, release).
//! - [`notify`]: mails and webhooks about refusals, suspects and locks, off the request path.
//! - [`generate`]: from the command-line definitions, email-ratelimit(8), one page per command,
//!   email-ratelimit.toml(5) and the shell completions; [`oserror`]: errors without Rust's
//!   `(os error N)` tail.
//! - [`telemetry`]: logging setup (lines written by one thread in 20 ms batches); [`once`]: "log
//!   this at most once a minute".

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
