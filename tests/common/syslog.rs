//! A syslog socket of the test's own: a datagram socket anyone may write to (as `/dev/log`), in
//! a directory anyone may enter, whose messages a thread collects. The daemon logs there when
//! its stdout is `/dev/null` (`EMAIL_RATELIMIT_TEST_SYSLOG`), also after dropping to its user.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct SyslogSink {
    _dir: tempfile::TempDir,
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl SyslogSink {
    #[must_use]
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = dir.path().join("log");
        let socket = UnixDatagram::bind(&path).expect("bind the syslog socket");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            // Ends when the test's process does; a dropped sink's socket file is gone with it.
            while let Ok(n) = socket.recv(&mut buf) {
                seen.lock().expect("lock").push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Self { _dir: dir, path, lines }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every message so far, one a line.
    #[must_use]
    pub fn text(&self) -> String {
        self.lines.lock().expect("lock").iter().map(|l| format!("{l}\n")).collect()
    }

    /// Waits for a message that contains `needle`; returns it.
    pub fn wait_for(&self, needle: &str) -> String {
        super::wait_for(&format!("syslog: {needle}"), Duration::from_secs(20), || {
            self.lines.lock().expect("lock").iter().find(|l| l.contains(needle)).cloned()
        })
    }
}
