//! The real daemon binary under test, and a raw policy connection to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::{Supervised, eom, erl, spawn_logged, wait_for};

/// The real daemon binary with a config file in a temporary directory.
pub struct Daemon {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    process: Supervised,
    /// Environment of every start (kept for `start_again`).
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts `serve` with `extra` appended to a config that listens on a temporary socket.
    /// `extra` must not set `[listen] socket`.
    pub fn start(extra: &str) -> Self {
        Self::start_with(extra, &[])
    }

    pub fn start_with(extra: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("policy.sock");
        Self::start_in(dir, socket, extra, env)
    }

    /// Starts on a given socket path (a Postfix instance's `private/email-ratelimit`).
    pub fn start_at(socket: PathBuf, extra: &str) -> Self {
        Self::start_at_with(socket, extra, &[])
    }

    pub fn start_at_with(socket: PathBuf, extra: &str, env: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().expect("tempdir"), socket, extra, env)
    }

    fn start_in(dir: TempDir, socket: PathBuf, extra: &str, env: &[(&str, &str)]) -> Self {
        let config = dir.path().join("config.toml");
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut d = Self { dir, socket, config, process: Supervised::default(), env };
        d.write_config(extra);
        d.spawn();
        d
    }

    /// Stops the process (SIGTERM, drain) and waits for it.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the process again with the same config and environment; the log is appended to.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// The config text with the temporary socket filled in.
    pub fn config_text(&self, extra: &str) -> String {
        let listen = format!("[listen]\nsocket = {:?}\n", self.socket.display().to_string());
        // Top-level keys must come before the first table.
        let (top, rest): (Vec<&str>, Vec<&str>) = {
            let mut top = Vec::new();
            let mut rest = Vec::new();
            let mut in_table = false;
            for line in extra.lines() {
                if line.trim_start().starts_with('[') {
                    in_table = true;
                }
                if in_table { rest.push(line) } else { top.push(line) }
            }
            (top, rest)
        };
        let mut rest = rest.join("\n");
        // Each daemon keeps its database cache in its own directory, never the system's.
        if rest.contains("[database]") && !rest.contains("cache_file") {
            let cache = format!("[database]\ncache_file = {:?}", self.cache_file().display().to_string());
            rest = rest.replacen("[database]", &cache, 1);
        }
        if rest.contains("[listen]") {
            format!("{}\n{}", top.join("\n"), rest.replacen("[listen]", &listen, 1))
        } else {
            format!("{}\n{listen}\n{rest}\n", top.join("\n"))
        }
    }

    pub fn write_config(&self, extra: &str) {
        std::fs::write(&self.config, self.config_text(extra)).expect("write config");
    }

    /// Where the daemon keeps its last good database read (when it has a `[database]`).
    pub fn cache_file(&self) -> PathBuf {
        self.dir.path().join("limits.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn spawn(&mut self) {
        let mut cmd = erl();
        cmd.arg("serve").arg("--config").arg(&self.config);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = spawn_logged(cmd.env("RUST_BACKTRACE", "1"), &self.log_path(), "the daemon");
        self.process.set(child);
        wait_for("the daemon to listen", Duration::from_secs(20), || {
            if let Some(status) = self.try_wait() {
                panic!("daemon exited early ({status}):\n{}", self.log());
            }
            UnixStream::connect(&self.socket).ok()
        });
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until the log holds `needle` `times` times.
    pub fn wait_log(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.log().matches(needle).count() < times {
            assert!(Instant::now() < deadline, "no {times}x {needle:?} in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn connect(&self) -> Conn {
        Conn::new(UnixStream::connect(&self.socket).expect("connect to the daemon"))
    }

    /// One END-OF-MESSAGE request on a new connection; returns the action.
    pub fn send(&self, user: &str, rcpt: u32) -> String {
        self.connect().ask(&eom(user, rcpt))
    }

    /// Runs an admin command (`status`, `lock`, ...) on this daemon's config; its exit status
    /// and stdout (stderr appended).
    pub fn admin(&self, args: &[&str]) -> (bool, String) {
        let (cmd, rest) = args.split_first().expect("a command");
        let out = erl()
            .arg(cmd)
            .arg("--config")
            .arg(&self.config)
            .args(rest)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run the admin command");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    pub fn signal(&self, sig: Signal) {
        self.process.signal(sig);
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.try_wait()
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        wait_for("the daemon to exit", within, || self.process.try_wait())
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// A raw policy connection.
pub struct Conn {
    reader: BufReader<UnixStream>,
}

impl Conn {
    pub fn new(stream: UnixStream) -> Self {
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Self { reader: BufReader::new(stream) }
    }

    /// Writes, tolerating a daemon that already closed the connection.
    pub fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write request");
    }

    /// Reads one reply; returns the action text (without `action=`).
    pub fn reply(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read reply");
        let mut blank = String::new();
        self.reader.read_line(&mut blank).expect("read reply end");
        assert_eq!(blank, "\n", "reply {line:?} not ended by an empty line");
        line.strip_prefix("action=")
            .unwrap_or_else(|| panic!("not an action: {line:?}"))
            .trim_end()
            .to_owned()
    }

    pub fn ask(&mut self, request: &str) -> String {
        self.write(request.as_bytes());
        self.reply()
    }

    /// True when the daemon closed the connection (EOF), waiting at most the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        match self.reader.read(&mut buf) {
            Ok(n) => n == 0,
            Err(e) => {
                matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
            }
        }
    }

    /// The underlying stream (for raw writes that may fail).
    pub fn stream(&self) -> &UnixStream {
        self.reader.get_ref()
    }

    /// Reads one reply, or `None` if the connection was closed first.
    pub fn try_reply(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
        let mut blank = String::new();
        self.reader.read_line(&mut blank).ok()?;
        line.strip_prefix("action=").map(|a| a.trim_end().to_owned())
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.reader.get_ref().set_read_timeout(Some(d)).expect("timeout");
    }
}
