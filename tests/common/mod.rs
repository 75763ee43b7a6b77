//! Shared helpers for the integration tests: temporary real servers (`redis-server`,
//! `mariadbd`) and the real daemon binary, each stopped by PID when dropped.
//!
//! A server binary that is missing fails the test when `CI` is set and skips it (loudly)
//! otherwise.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_email-ratelimit");

/// Returns false (and says so) when `program` is missing outside CI; panics in CI.
pub fn have(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || Path::new(program).is_file();
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{program} is required in CI but not installed");
        eprintln!("SKIPPED: {program} not installed (set CI=true to make this a failure)");
    }
    found
}

/// Polls `f` until it returns `Some`, or panics after `within`.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A child process that is stopped (SIGCONT, SIGTERM, then SIGKILL after 10 s) when dropped.
#[derive(Default)]
pub struct Supervised(Option<Child>);

impl Supervised {
    pub fn set(&mut self, child: Child) {
        self.stop();
        self.0 = Some(child);
    }

    fn child(&self) -> &Child {
        self.0.as_ref().expect("the process is running")
    }

    pub fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child().id()).expect("pid fits"));
        let _ = kill(pid, sig);
    }

    pub fn id(&self) -> u32 {
        self.child().id()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.0.take() else { return };
        if matches!(child.try_wait(), Ok(None)) {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `redis-server` on a temporary port and directory.
pub struct Redis {
    pub port: u16,
    dir: TempDir,
    process: Supervised,
}

impl Redis {
    pub fn start() -> Option<Self> {
        if !have("redis-server") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Self { port: free_port(), dir, process: Supervised::default() };
        r.spawn();
        Some(r)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("log file");
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start redis-server");
        self.process.set(child);
        let url = self.url();
        wait_for("redis to answer PING", Duration::from_secs(10), || {
            let mut c = redis::Client::open(url.as_str()).ok()?.get_connection().ok()?;
            redis::cmd("PING").query::<String>(&mut c).ok()
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url().as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to test redis")
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        redis::cmd("GET").arg(key).query(&mut self.conn()).expect("GET")
    }

    pub fn cmd(&self, args: &[&str]) -> redis::Value {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut self.conn()).expect("redis command")
    }

    pub fn violations(&self) -> Vec<serde_json::Value> {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg("erl:violations")
            .arg(0)
            .arg(-1)
            .query(&mut self.conn())
            .expect("LRANGE");
        raw.iter().map(|r| serde_json::from_str(r).expect("violation is JSON")).collect()
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn pause(&self) {
        self.process.signal(Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.process.signal(Signal::SIGCONT);
    }
}

/// A `mariadbd` with a temporary datadir, reachable over TCP as `erl`/`erlpw` and over its
/// socket as root.
pub struct Mariadb {
    pub port: u16,
    dir: TempDir,
    process: Supervised,
}

impl Mariadb {
    pub fn start() -> Option<Self> {
        if !have("mariadbd") && !have("/usr/sbin/mariadbd") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // mariadbd runs as mysql and must reach its datadir inside our tempdir.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let data = dir.path().join("data");
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db");
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        // The socket and pid file go where mariadbd (as mysql) may write.
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("mkdir run");
        let mysql = nix::unistd::User::from_name("mysql").ok().flatten().expect("a mysql user");
        std::os::unix::fs::chown(&run, Some(mysql.uid.as_raw()), Some(mysql.gid.as_raw()))
            .expect("chown run");
        let mut m = Self { port: free_port(), dir, process: Supervised::default() };
        m.spawn();
        m.sql(
            "CREATE DATABASE dbispconfig; \
             CREATE USER 'erl'@'127.0.0.1' IDENTIFIED BY 'erlpw'; \
             GRANT SELECT ON dbispconfig.* TO 'erl'@'127.0.0.1'; \
             CREATE TABLE dbispconfig.mail_user (mailuser_id INT UNSIGNED PRIMARY KEY AUTO_INCREMENT, \
                 email VARCHAR(255) NOT NULL);",
        );
        let schema = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sql/schema.sql"))
            .expect("read schema.sql");
        m.sql(&format!("USE dbispconfig; {schema}"));
        Some(m)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/mysqld.sock")
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("mariadb.log")).expect("log");
        let child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=mysql", "--bind-address=127.0.0.1", "--skip-log-bin"])
            .arg(format!("--datadir={}", self.dir.path().join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--pid-file={}", self.dir.path().join("run/mariadb.pid").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start mariadbd");
        self.process.set(child);
        let log = self.dir.path().join("mariadb.log");
        wait_for("mariadb to accept connections", Duration::from_secs(60), || {
            if let Some(status) = self.process.try_wait() {
                panic!("mariadbd exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            let ping = Command::new("mariadb-admin")
                .args(["--no-defaults", "-u", "root", "--connect-timeout=1"])
                .arg(format!("--socket={}", self.socket().display()))
                .arg("ping")
                .output()
                .ok()?;
            (ping.status.success() && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok())
                .then_some(())
        });
    }

    pub fn url(&self) -> String {
        format!("mysql://erl:erlpw@127.0.0.1:{}/dbispconfig", self.port)
    }

    /// Runs SQL as root over the socket.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-u", "root", "-N", "-B"])
            .arg(format!("--socket={}", self.socket().display()))
            .arg("-e")
            .arg(sql)
            .output()
            .expect("run mariadb client");
        assert!(out.status.success(), "SQL failed: {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

/// The real daemon binary with a config file in a temporary directory.
pub struct Daemon {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    process: Supervised,
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
        let config = dir.path().join("config.toml");
        let mut d = Self { dir, socket, config, process: Supervised::default() };
        d.write_config(extra);
        d.spawn(env);
        d
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
        let rest = rest.join("\n");
        if rest.contains("[listen]") {
            format!("{}\n{}", top.join("\n"), rest.replacen("[listen]", &listen, 1))
        } else {
            format!("{}\n{listen}\n{rest}\n", top.join("\n"))
        }
    }

    pub fn write_config(&self, extra: &str) {
        std::fs::write(&self.config, self.config_text(extra)).expect("write config");
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.log_path()).expect("log");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").arg("--config").arg(&self.config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start the daemon");
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

/// A realistic END-OF-MESSAGE request, as Postfix 3.7 sends it.
pub fn eom(user: &str, rcpt: u32) -> String {
    request("END-OF-MESSAGE", user, rcpt)
}

pub fn request(state: &str, user: &str, rcpt: u32) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n\
         client_address=192.0.2.10\nclient_name=client.example\nclient_port=40000\n\
         reverse_client_name=client.example\nserver_address=127.0.0.1\nserver_port=587\n\
         helo_name=client.example\nsender={user}\nrecipient=\nrecipient_count={rcpt}\n\
         queue_id=ABC123\ninstance=1.2.3\nsize=2048\netrn_domain=\nstress=\nsasl_method=PLAIN\n\
         sasl_username={user}\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n\
         encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=submission\n\n"
    )
}

/// Today's local date as the counter keys use it.
pub fn today() -> String {
    chrono::Local::now().format("%Y-%m-%d").to_string()
}

pub fn defer_user(user: &str, limit: u64) -> String {
    format!("DEFER_IF_PERMIT {user}: Your daily limit of {limit} messages reached")
}

pub fn defer_global(user: &str, limit: u64) -> String {
    format!("DEFER_IF_PERMIT {user}: Global daily limit of {limit} reached")
}
