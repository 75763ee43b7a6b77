//! `probe`: sends one policy request the way smtpd does and returns the reply's action, for
//! checking a running daemon by hand or from scripts. Unless told to count, the request is a dry
//! run (`erl_dry_run=yes`): the daemon answers what it would answer now and changes nothing.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// One request's attributes.
#[derive(Debug, Clone)]
pub struct Probe {
    pub user: String,
    pub recipients: u32,
    pub state: String,
    pub client_address: String,
    /// The envelope sender (`""`: the user).
    pub sender: String,
    pub recipient: String,
    pub size: u64,
    /// A real, counted request instead of a dry run.
    pub count: bool,
}

/// The daemon's answer: the action, and in log-only mode what enforcing would answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub action: String,
    pub would: Option<String>,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.action)?;
        match &self.would {
            Some(would) => writeln!(f, "would: {would}"),
            None => Ok(()),
        }
    }
}

impl Probe {
    /// The request text, attribute lines and the closing empty line.
    #[must_use]
    pub fn request(&self) -> String {
        let sender = if self.sender.is_empty() { &self.user } else { &self.sender };
        format!(
            "request=smtpd_access_policy\nprotocol_state={}\nprotocol_name=ESMTP\n\
             client_address={}\nclient_name=localhost\nsasl_method=PLAIN\nsasl_username={}\n\
             sender={sender}\nrecipient={}\nrecipient_count={}\nqueue_id=PROBE\nsize={}\n{}\n",
            self.state,
            self.client_address,
            self.user,
            self.recipient,
            self.recipients,
            self.size,
            if self.count { "" } else { "erl_dry_run=yes\n" }
        )
    }
}

/// Sends the probe to a Unix socket path or a `host:port` and returns the answer.
///
/// # Errors
/// On connection faults, a timeout, or a reply that is not `action=...` plus an empty line; the
/// message names the target (`connect to PATH: No such file or directory`).
pub async fn send(target: &str, probe: &Probe, timeout: Duration) -> std::io::Result<Answer> {
    let named = |e: std::io::Error, what: &str| {
        std::io::Error::new(e.kind(), format!("{what} {target}: {}", crate::oserror::plain(&e)))
    };
    let connected = async {
        let result = if Path::new(target).is_absolute() || !target.contains(':') {
            match tokio::net::UnixStream::connect(target).await {
                Ok(s) => exchange(s, probe).await,
                Err(e) => return Err(named(e, "connect to")),
            }
        } else {
            match tokio::net::TcpStream::connect(target).await {
                Ok(s) => exchange(s, probe).await,
                Err(e) => return Err(named(e, "connect to")),
            }
        };
        result.map_err(|e| named(e, "read from"))
    };
    tokio::time::timeout(timeout, connected).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{target}: no reply in {} s", timeout.as_secs()),
        )
    })?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    probe: &Probe,
) -> std::io::Result<Answer> {
    stream.write_all(probe.request().as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut action = None;
    let mut would = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the reply ended early"));
        }
        let line = line.trim_end_matches('\n');
        if line.is_empty() {
            break;
        }
        if let Some(a) = line.strip_prefix("action=") {
            action = Some(a.to_owned());
        } else if let Some(w) = line.strip_prefix("erl_would=") {
            would = Some(w.to_owned());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unexpected reply {line:?}"),
            ));
        }
    }
    let action = action
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no action= in the reply"))?;
    Ok(Answer { action, would })
}
