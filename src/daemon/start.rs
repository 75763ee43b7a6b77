//! The privileged part of the start, before any thread exists: bind every listener (the policy
//! sockets, the milter's, the metrics one), give the socket files to `[daemon] user`, write the
//! pid file, and drop to that user. What it has to say is kept for the log, which starts after.

use std::path::{Path, PathBuf};

use super::DaemonError;
use super::privileges::{self, PidFile, Switch};
use crate::config::{Config, MetricsListen};
use crate::metrics;
use crate::milter;
use crate::server::{self, Listener};

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

/// The milter's listener, its socket file (removed at exit) and its name for the log.
pub type Website = (tokio::net::UnixListener, Option<server::OwnedSocket>, String);

/// Everything bound, as the unprivileged part of the start takes it over.
pub struct Prepared {
    pub listeners: Vec<Listener>,
    /// Whether the policy sockets came from systemd.
    pub activated: bool,
    pub website: Option<Website>,
    pub metrics: Option<metrics::http::Listener>,
    pub pid_file: Option<PidFile>,
    pub notes: Vec<Note>,
}

/// Binds, writes the pid file and drops privileges (see the module).
///
/// # Errors
/// A listener that cannot be bound, a pid file that cannot be written, a drop that fails.
pub async fn prepare(config: &Config, pid_path: Option<&Path>) -> Result<Prepared, DaemonError> {
    let mut notes = Vec::new();
    let bound = server::bind(&config.listen, &[milter::FD_NAME])?;
    // The milter is secondary: a socket it cannot bind is logged, and the policy socket serves.
    let website = milter_listener(config, bound.named, &mut notes).unwrap_or_else(|e| {
        notes.push(Note::Error(format!(
            "milter not started: {e}; website mail passes unchecked (default_action=accept)"
        )));
        None
    });
    let metrics = match &config.metrics {
        Some(listen) => Some(bind_metrics(listen).await.map_err(DaemonError::Metrics)?),
        None => None,
    };
    let switch = Switch::decide(config.daemon.user.as_ref(), nix::unistd::getuid().as_raw());
    if let Some(uid) = switch.owner() {
        // The socket files this process made become the user's (their group and mode stay).
        let mut ours: Vec<PathBuf> = Vec::new();
        if !bound.activated {
            ours.extend(bound.listeners.iter().filter_map(Listener::unix_path));
        }
        if let (Some((_, Some(_), _)), Some(m)) = (&website, &config.milter) {
            ours.push(m.socket.clone());
        }
        if let Some(MetricsListen::Unix(path)) = &config.metrics {
            ours.push(path.clone());
        }
        for path in &ours {
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
    Ok(Prepared { listeners: bound.listeners, activated: bound.activated, website, metrics, pid_file, notes })
}

/// The milter's listener: systemd's socket named `milter`, else `[milter]`'s socket bound here
/// (its own mode and group; a group it may not use is noted, and the socket keeps the
/// daemon's).
fn milter_listener(
    config: &Config,
    named: Vec<(String, Listener)>,
    notes: &mut Vec<Note>,
) -> Result<Option<Website>, DaemonError> {
    let listener = match (named.into_iter().next(), &config.milter) {
        (Some((_, l)), _) => l,
        (None, Some(m)) => {
            let group = m.socket_group.as_ref();
            let (l, note) =
                server::bind_path(&m.socket, m.socket_mode, group, server::GroupChange::BestEffort)?;
            if let Some(note) = note {
                notes.push(Note::Warn(format!(
                    "milter socket {note}: Postfix may not reach it; run the daemon as root or in that group, or set milter.socket_group"
                )));
            }
            l
        }
        (None, None) => return Ok(None),
    };
    let name = listener.describe();
    Ok(Some(match listener {
        Listener::Unix(l, owned) => (l, owned, name),
        // systemd handed a TCP socket: refused like `listen = "127.0.0.1:8893"`.
        Listener::Tcp(_) => {
            notes.push(Note::Error(format!(
                "milter socket from systemd is {name}, a TCP port: refused (any local user could speak for any other); website mail passes uncounted. Fix: ListenStream=/var/spool/postfix/private/email-ratelimit-milter in email-ratelimit-milter.socket"
            )));
            return Ok(None);
        }
    }))
}

async fn bind_metrics(listen: &MetricsListen) -> std::io::Result<metrics::http::Listener> {
    Ok(match listen {
        MetricsListen::Tcp(addr) => metrics::http::Listener::Tcp(tokio::net::TcpListener::bind(addr).await?),
        MetricsListen::Unix(path) => {
            // A socket left by an earlier run; anything else at the path is an error below.
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                std::fs::remove_file(path)?;
            }
            metrics::http::Listener::Unix(tokio::net::UnixListener::bind(path)?, path.clone())
        }
    })
}
