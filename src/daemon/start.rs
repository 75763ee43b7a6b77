//! The privileged part of the start, before any thread exists: bind every listener (the policy
//! sockets, the milter's, the metrics one, each on one [`Endpoint`]), give the socket files to
//! `[daemon] user`, write the pid file, and drop to that user. What it has to say is kept for the
//! log, which starts after.

use std::path::Path;

use super::DaemonError;
use super::privileges::{self, PidFile, Switch};
use crate::config::{Config, MetricsListen};
use crate::milter;
use crate::server::{self, Endpoint, Listener};

/// A line for the log, said once it is up.
#[derive(Debug)]
pub enum Note {
    Info(String),
    Warn(String),
    Error(String),
}

impl Note {
    pub fn log(&self) {
        match self {
            Self::Info(text) => tracing::info!("{text}"),
            Self::Warn(text) => tracing::warn!("{text}"),
            Self::Error(text) => tracing::error!("{text}"),
        }
    }
}

/// Every listener, bound: the policy service's, the milter's, the metrics endpoint's.
pub struct Listeners {
    pub policy: Vec<Listener>,
    /// Whether the policy sockets came from systemd.
    pub activated: bool,
    /// A Unix socket (a TCP one is refused when bound).
    pub milter: Option<Listener>,
    pub metrics: Option<Listener>,
}

impl Listeners {
    /// The socket files this process made (not those systemd handed over).
    fn owned_paths(&self) -> impl Iterator<Item = &Path> {
        self.policy.iter().chain(&self.milter).chain(&self.metrics).filter_map(Listener::owned_path)
    }
}

/// Everything bound, as the unprivileged part of the start takes it over.
pub struct Prepared {
    pub listeners: Listeners,
    pub pid_file: Option<PidFile>,
    pub notes: Vec<Note>,
}

/// Binds, writes the pid file and drops privileges (see the module).
///
/// # Errors
/// A listener that cannot be bound, a pid file that cannot be written, a drop that fails.
pub async fn prepare(config: &Config, pid_path: Option<&Path>) -> Result<Prepared, DaemonError> {
    let mut notes = Vec::new();
    let listeners = bind_listeners(config, &mut notes)?;
    let switch = Switch::decide(config.daemon.user.as_ref(), nix::unistd::getuid().as_raw());
    if let Some(uid) = switch.owner() {
        // The socket files this process made become the user's (their group and mode stay).
        for path in listeners.owned_paths() {
            std::os::unix::fs::lchown(path, Some(uid), None).map_err(|e| {
                DaemonError::Listen(server::ServerError::Io { path: path.display().to_string(), source: e })
            })?;
        }
    }
    let pid_file = pid_path.map(PidFile::write).transpose()?;
    match &switch {
        Switch::Stay => {}
        Switch::To(user) => {
            privileges::drop_to(user)?;
            notes.push(Note::Info(format!(
                "running as user {} (uid {}, gid {}): sockets bound{} as root",
                user.name,
                user.uid,
                user.gid,
                if pid_file.is_some() { " and pid file written" } else { "" }
            )));
        }
        Switch::Cannot { user, uid } => notes.push(Note::Warn(format!(
            "daemon.user = {user:?}, but started as uid {uid}, which is not root: it runs on as uid {uid}"
        ))),
    }
    Ok(Prepared { listeners, pid_file, notes })
}

/// Binds the policy service (systemd's sockets, else `[listen]`), the milter (systemd's socket
/// named `milter`, else `[milter]`) and the metrics endpoint, each on a [`server::Endpoint`].
/// The milter is secondary: a socket it cannot bind is noted, and the others serve.
fn bind_listeners(config: &Config, notes: &mut Vec<Note>) -> Result<Listeners, DaemonError> {
    let bound = server::bind(&config.listen, &[milter::FD_NAME])?;
    let milter = milter_listener(config, bound.named, notes).unwrap_or_else(|e| {
        notes.push(Note::Error(format!(
            "milter not started: {e}; website mail passes unchecked (default_action=accept)"
        )));
        None
    });
    let metrics = match &config.metrics {
        Some(listen) => Some(metrics_endpoint(listen).bind().map_err(metrics_error)?.0),
        None => None,
    };
    Ok(Listeners { policy: bound.listeners, activated: bound.activated, milter, metrics })
}

/// The milter's listener: systemd's socket named `milter`, else `[milter]`'s socket bound here
/// (its own mode and group; a group it may not use is noted, and the socket keeps the
/// daemon's).
fn milter_listener(
    config: &Config,
    named: Vec<(String, Listener)>,
    notes: &mut Vec<Note>,
) -> Result<Option<Listener>, DaemonError> {
    let listener = match (named.into_iter().next(), &config.milter) {
        (Some((_, l)), _) => l,
        (None, Some(m)) => {
            let group = m.socket_group.as_ref();
            let change = server::GroupChange::BestEffort;
            let endpoint = Endpoint::Unix { path: &m.socket, mode: Some(m.socket_mode), group, change };
            let (l, note) = endpoint.bind()?;
            if let Some(note) = note {
                notes.push(Note::Warn(format!(
                    "milter socket {note}: Postfix may not reach it; run the daemon as root or in that group, or set milter.socket_group"
                )));
            }
            l
        }
        (None, None) => return Ok(None),
    };
    if let Listener::Tcp(_) = listener {
        // systemd handed a TCP socket: refused like `listen = "127.0.0.1:8893"`.
        notes.push(Note::Error(format!(
            "milter socket from systemd is {}, a TCP port: refused (any local user could speak for any other); website mail passes uncounted. Fix: ListenStream=/var/spool/postfix/private/email-ratelimit-milter in email-ratelimit-milter.socket",
            listener.describe()
        )));
        return Ok(None);
    }
    Ok(Some(listener))
}

/// `[metrics] listen`: a TCP address, or a socket file whose mode the umask decides.
fn metrics_endpoint(listen: &MetricsListen) -> Endpoint<'_> {
    match listen {
        MetricsListen::Tcp(addr) => Endpoint::Tcp(*addr),
        MetricsListen::Unix(path) => {
            Endpoint::Unix { path, mode: None, group: None, change: server::GroupChange::Required }
        }
    }
}

/// A metrics listener that cannot be bound, worded as before the endpoints were one type.
fn metrics_error(e: server::ServerError) -> DaemonError {
    match e {
        server::ServerError::Io { source, .. } => DaemonError::Metrics(source),
        other => DaemonError::Listen(other),
    }
}
