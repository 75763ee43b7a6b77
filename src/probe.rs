//! `probe`: sends one policy request the way smtpd does and returns the reply's action, for
//! checking a running daemon by hand or from scripts.

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
}

impl Probe {
    /// The request text, attribute lines and the closing empty line.
    #[must_use]
    pub fn request(&self) -> String {
        format!(
            "request=smtpd_access_policy\nprotocol_state={}\nprotocol_name=ESMTP\n\
             client_address={}\nclient_name=localhost\nsasl_method=PLAIN\nsasl_username={}\n\
             sender={}\nrecipient=\nrecipient_count={}\nqueue_id=PROBE\nsize=1024\n\n",
            self.state, self.client_address, self.user, self.user, self.recipients
        )
    }
}

/// Sends the probe to a Unix socket path or a `host:port` and returns the `action=` value.
///
/// # Errors
/// On connection faults, a timeout, or a reply that is not `action=...` plus an empty line.
pub async fn send(target: &str, probe: &Probe, timeout: Duration) -> std::io::Result<String> {
    let exchange = async {
        if Path::new(target).is_absolute() || !target.contains(':') {
            exchange(tokio::net::UnixStream::connect(target).await?, probe).await
        } else {
            exchange(tokio::net::TcpStream::connect(target).await?, probe).await
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply in time"))?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    probe: &Probe,
) -> std::io::Result<String> {
    stream.write_all(probe.request().as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut end = String::new();
    reader.read_line(&mut end).await?;
    let action = line.trim_end_matches('\n').strip_prefix("action=");
    match (action, end.as_str()) {
        (Some(action), "\n") => Ok(action.to_owned()),
        _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected reply {line:?}"))),
    }
}
