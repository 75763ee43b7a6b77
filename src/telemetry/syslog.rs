//! syslog over its local socket (`/dev/log`), facility mail, identifier `email-ratelimit`: the
//! daemon's lines when no one reads its stdout, and the admin commands' audit lines.
//!
//! Written by hand on purpose: the `syslog` crate's formatter unwraps the local time, which
//! fails (and panics) in a process with more than one thread, and its connected socket stays
//! dead once syslogd restarts. Here every datagram is sent to the path, RFC 3164 without a
//! timestamp (the receiver stamps it, as journald and rsyslog do).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// Where syslog listens. Tests point it elsewhere with [`TEST_SYSLOG_ENV`].
pub const SYSLOG_SOCKET: &str = "/dev/log";
pub const TEST_SYSLOG_ENV: &str = "EMAIL_RATELIMIT_TEST_SYSLOG";

/// syslog facility mail (2), times 8: add the severity.
const MAIL: u8 = 2 * 8;
/// The severity of the admin commands' lines: notice.
pub const NOTICE: u8 = 5;

/// The socket's path: `/dev/log`, or the test's.
#[must_use]
pub fn socket_path() -> PathBuf {
    std::env::var_os(TEST_SYSLOG_ENV).map_or_else(|| PathBuf::from(SYSLOG_SOCKET), PathBuf::from)
}

/// Sends one line to syslog at `path` with `severity` (0 emerg .. 7 debug).
///
/// # Errors
/// When the socket cannot be reached (the path is named).
pub fn send(path: &Path, severity: u8, line: &str) -> io::Result<()> {
    Sender::new(path.to_owned())?.send(severity, line.as_bytes())
}

/// One socket, reused for every line of the daemon.
pub struct Sender {
    socket: UnixDatagram,
    path: PathBuf,
    header: Vec<u8>,
}

impl Sender {
    /// # Errors
    /// When no socket can be made.
    pub fn new(path: PathBuf) -> io::Result<Self> {
        let header = format!("email-ratelimit[{}]: ", std::process::id()).into_bytes();
        Ok(Self { socket: UnixDatagram::unbound()?, path, header })
    }

    /// Sends `line` as one datagram.
    ///
    /// # Errors
    /// When the socket cannot be reached.
    pub fn send(&self, severity: u8, line: &[u8]) -> io::Result<()> {
        let mut message = Vec::with_capacity(8 + self.header.len() + line.len());
        message.extend_from_slice(format!("<{}>", MAIL + severity.min(7)).as_bytes());
        message.extend_from_slice(&self.header);
        message.extend_from_slice(line);
        self.socket
            .send_to(&message, &self.path)
            .map(|_| ())
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

/// The daemon's log output as syslog: each line `<N>text` (the journal format, `N` the
/// severity) becomes one datagram. A line that cannot be sent is lost; mail is not.
impl io::Write for Sender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let (severity, text) = severity(line);
            let _ = self.send(severity, text);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The `<N>` a journal-format line starts with, and the rest (info when there is none).
fn severity(line: &[u8]) -> (u8, &[u8]) {
    match line {
        [b'<', n @ b'0'..=b'7', b'>', rest @ ..] => (n - b'0', rest),
        _ => (6, line),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_syslog_line_has_the_mail_facility_and_the_identifier() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).expect("bind");
        send(&path, NOTICE, "erl admin action=reset user=global by=root reason=\"\"").expect("sent");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<21>email-ratelimit["), "{got}");
        assert!(got.ends_with("]: erl admin action=reset user=global by=root reason=\"\""), "{got}");
        let missing = send(&dir.path().join("none"), NOTICE, "x").expect_err("no socket");
        assert!(missing.to_string().contains("/none: No such file or directory"), "{missing}");
    }

    #[test]
    fn each_daemon_line_is_a_datagram_with_its_severity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).expect("bind");
        let mut sender = Sender::new(path).expect("sender");
        sender.write_all(b"<4>erl DEFER user=a@example.com\n<6>serving\nplain\n").expect("written");
        let pid = std::process::id();
        for want in [
            format!("<20>email-ratelimit[{pid}]: erl DEFER user=a@example.com"),
            format!("<22>email-ratelimit[{pid}]: serving"),
            format!("<22>email-ratelimit[{pid}]: plain"),
        ] {
            let mut buf = [0u8; 512];
            let n = server.recv(&mut buf).expect("recv");
            assert_eq!(String::from_utf8_lossy(&buf[..n]), want);
        }
    }
}
