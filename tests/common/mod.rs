//! Shared helpers for the integration tests: temporary real servers (`redis-server`,
//! `mariadbd`, `prometheus`) and the real daemon binary, each stopped by PID when dropped.
//!
//! A server binary that is missing fails the test when `CI` is set and skips it (loudly)
//! otherwise.

#![allow(dead_code, unused_imports)]

mod daemon;
pub mod mail;
pub mod prometheus;
mod servers;
pub mod syslog;

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

pub use daemon::{Conn, Daemon};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
pub use prometheus::{Prometheus, http_get};
pub use servers::{Mariadb, Redis, Sentinel};
pub use syslog::SyslogSink;

pub const BIN: &str = env!("CARGO_BIN_EXE_email-ratelimit");

/// Where the binary's admin commands send their syslog line in tests: nowhere (no such socket;
/// the command notes that on stderr). The host's `/dev/log` is never for tests.
pub const NO_SYSLOG: &str = "/nonexistent/email-ratelimit-tests/syslog";

/// The config file the binary reads without `--config` in tests: none (so the embedded defaults),
/// whatever the host has installed in `/etc/email-ratelimit`.
pub const NO_DEFAULT_CONFIG: &str = "/nonexistent/email-ratelimit-tests/config.toml";

/// The binary, as every test runs it: its syslog lines kept off the host's syslog, and the
/// host's installed config never read.
pub fn erl() -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.env("EMAIL_RATELIMIT_TEST_SYSLOG", NO_SYSLOG);
    cmd.env("EMAIL_RATELIMIT_TEST_DEFAULT_CONFIG", NO_DEFAULT_CONFIG);
    cmd
}

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

/// The bytes received and not yet read on each established loopback TCP connection whose local
/// port is `port` (the server's side), from `/proc/net/tcp`: what a server has yet to read.
pub fn received_unread(port: u16) -> Vec<u64> {
    let local = format!(":{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address rem_address st tx_queue:rx_queue; st 01 is ESTABLISHED.
            let (address, state, queues) = (fields.get(1)?, fields.get(3)?, fields.get(4)?);
            let rx = queues.split_once(':')?.1;
            (address.ends_with(&local) && *state == "01").then(|| u64::from_str_radix(rx, 16).ok())?
        })
        .collect()
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Starts a server with stdin closed and stdout and stderr appended to `log`: Dovecot and
/// MariaDB keep an inherited stderr open, and a pipe on it would never end.
pub fn spawn_logged(cmd: &mut std::process::Command, log: &Path, what: &str) -> Child {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open log");
    cmd.stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("dup log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"))
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

/// Sets the flag when dropped, also while a panic unwinds: threads of a `std::thread::scope`
/// that loop until it is set then stop, so a failed wait fails the test instead of hanging it.
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A realistic END-OF-MESSAGE request, as Postfix 3.7 sends it.
pub fn eom(user: &str, rcpt: u32) -> String {
    request("END-OF-MESSAGE", user, rcpt)
}

/// An END-OF-MESSAGE request from the SMTP client `client`.
pub fn eom_from(user: &str, rcpt: u32, client: &str) -> String {
    eom(user, rcpt).replace("client_address=192.0.2.10", &format!("client_address={client}"))
}

/// A request about a new message (its own transaction and size, so never taken for a retry).
pub fn request(state: &str, user: &str, rcpt: u32) -> String {
    static MESSAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = MESSAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    message(state, user, rcpt, &format!("{n:x}.{:x}", std::process::id()), 2048 + n)
}

/// A request about one message: sent again in a new transaction (`instance`) with the same
/// `size`, it is a retry of that message.
pub fn message(state: &str, user: &str, rcpt: u32, instance: &str, size: u64) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n\
         client_address=192.0.2.10\nclient_name=client.example\nclient_port=40000\n\
         reverse_client_name=client.example\nserver_address=127.0.0.1\nserver_port=587\n\
         helo_name=client.example\nsender={user}\nrecipient=\nrecipient_count={rcpt}\n\
         queue_id=ABC123\ninstance={instance}\nsize={size}\netrn_domain=\nstress=\nsasl_method=PLAIN\n\
         sasl_username={user}\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n\
         encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=submission\n\n"
    )
}

/// Today's counter of one sender, as the daemon names it (prefix `erl`, local date).
pub fn key(user: &str) -> String {
    format!("erl:{}:{user}", today())
}

/// Today's server-wide counter.
pub fn global() -> String {
    format!("erl:{}:global", today())
}

/// The daemon on `redis`, with `extra` config.
pub fn redis_daemon(redis: &Redis, extra: &str) -> Daemon {
    Daemon::start(&format!("{extra}\n[redis]\nurl = \"{}\"\n", redis.url()))
}

/// Today's local date as the counter keys use it.
pub fn today() -> String {
    chrono::Local::now().format("%Y-%m-%d").to_string()
}

/// "recipients", or "recipient" for a limit of 1 (DESIGN v4 "Replies name the unit").
pub fn recipients(limit: u64) -> &'static str {
    if limit == 1 { "recipient" } else { "recipients" }
}

pub fn defer_user(user: &str, limit: u64) -> String {
    format!("DEFER_IF_PERMIT {user}: Your daily limit of {limit} {} reached", recipients(limit))
}

pub fn defer_locked(user: &str) -> String {
    format!("DEFER_IF_PERMIT {user}: Sending is suspended for this account, contact your administrator")
}

pub fn defer_global(user: &str, limit: u64) -> String {
    format!("DEFER_IF_PERMIT {user}: Global daily limit of {limit} {} reached", recipients(limit))
}
