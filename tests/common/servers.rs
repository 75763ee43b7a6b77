//! Temporary real servers for the tests: `redis-server` and `mariadbd` on free loopback ports
//! with temporary directories.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::{Supervised, free_port, have, spawn_logged, wait_for};

/// A `redis-server` on a temporary port and directory.
pub struct Redis {
    pub port: u16,
    dir: TempDir,
    process: Supervised,
    /// More `redis-server` arguments (`--replicaof ...`).
    extra: Vec<String>,
}

impl Redis {
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Option<Self> {
        if !have("redis-server") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = extra.iter().map(|a| (*a).to_owned()).collect();
        let mut r = Self { port: free_port(), dir, process: Supervised::default(), extra };
        r.spawn();
        Some(r)
    }

    /// SIGKILL: gone at once, nothing flushed, connections reset.
    pub fn kill(&mut self) {
        self.process.signal(Signal::SIGKILL);
        self.process.stop();
    }

    /// `INFO replication`'s `role:` (master or slave).
    pub fn role(&self) -> String {
        let info: String = redis::cmd("INFO").arg("replication").query(&mut self.conn()).expect("INFO");
        info.lines().find_map(|l| l.strip_prefix("role:")).unwrap_or_default().trim().to_owned()
    }

    fn spawn(&mut self) {
        let child = spawn_logged(
            Command::new("redis-server")
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
                .args(&self.extra),
            &self.dir.path().join("redis.log"),
            "redis-server",
        );
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

    /// Its role and `key`'s value, or `None` when the connection fails: a Sentinel promoting
    /// this server kills its clients' connections (`CLIENT KILL TYPE normal`), which a poll during
    /// a failover may meet.
    pub fn try_role_and_get(&self, key: &str) -> Option<(String, Option<u64>)> {
        let mut conn = redis::Client::open(self.url().as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .ok()?;
        let info: String = redis::cmd("INFO").arg("replication").query(&mut conn).ok()?;
        let role = info.lines().find_map(|l| l.strip_prefix("role:")).unwrap_or_default().trim().to_owned();
        let value: Option<u64> = redis::cmd("GET").arg(key).query(&mut conn).ok()?;
        Some((role, value))
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

/// A `redis-sentinel` on a temporary port, monitoring `mymaster` at a loopback port (down after
/// 1 s, quorum 2).
pub struct Sentinel {
    pub port: u16,
    _dir: TempDir,
    _process: Supervised,
}

impl Sentinel {
    pub fn start(master_port: u16) -> Option<Self> {
        if !have("redis-sentinel") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 3000\n\
                 sentinel parallel-syncs mymaster 1\n",
                dir.path().display()
            ),
        )
        .expect("sentinel.conf");
        let mut process = Supervised::default();
        process.set(spawn_logged(
            Command::new("redis-sentinel").arg(&conf),
            &dir.path().join("sentinel.log"),
            "redis-sentinel",
        ));
        let s = Self { port, _dir: dir, _process: process };
        wait_for("the sentinel to answer", Duration::from_secs(10), || {
            let mut c =
                redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?.get_connection().ok()?;
            redis::cmd("PING").query::<String>(&mut c).ok()
        });
        Some(s)
    }

    /// How many replicas and other Sentinels this one knows for `mymaster`.
    pub fn known(&self) -> (usize, usize) {
        let Ok(mut c) =
            redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).and_then(|c| c.get_connection())
        else {
            return (0, 0);
        };
        let mut count = |what: &str| {
            redis::cmd("SENTINEL")
                .arg(what)
                .arg("mymaster")
                .query::<Vec<redis::Value>>(&mut c)
                .map_or(0, |v| v.len())
        };
        (count("REPLICAS"), count("SENTINELS"))
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
        // Its own temporary directory: bootstraps running side by side (tests in parallel) must
        // not share /tmp's temporary tables (one CI run failed with "Unknown table
        // 'mysql.tmp_user_sys'" after "Could not remove temporary table '/tmp/#sql-...'").
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("mkdir tmp");
        let mysql = nix::unistd::User::from_name("mysql").ok().flatten().expect("a mysql user");
        std::os::unix::fs::chown(&tmp, Some(mysql.uid.as_raw()), Some(mysql.gid.as_raw()))
            .expect("chown tmp");
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db");
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        // The socket and pid file go where mariadbd (as mysql) may write.
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("mkdir run");
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

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/mysqld.sock")
    }

    fn spawn(&mut self) {
        let child = spawn_logged(
            Command::new("mariadbd")
                .args(["--no-defaults", "--user=mysql", "--bind-address=127.0.0.1", "--skip-log-bin"])
                .arg(format!("--datadir={}", self.dir.path().join("data").display()))
                .arg(format!("--tmpdir={}", self.dir.path().join("tmp").display()))
                .arg(format!("--socket={}", self.socket().display()))
                .arg(format!("--port={}", self.port))
                .arg(format!("--pid-file={}", self.dir.path().join("run/mariadb.pid").display())),
            &self.dir.path().join("mariadb.log"),
            "mariadbd",
        );
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
