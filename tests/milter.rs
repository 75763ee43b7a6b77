//! Issue 24: the milter at the protocol level (the Sendmail milter protocol, as Postfix's cleanup
//! speaks it for `non_smtpd_milters`): a connection cut mid-message costs nothing and counts
//! nothing; the next message is decided without any edit of the message, and over the cap it is
//! quarantined; a marker with another message's queue ID is not believed.
//!
//! Issue 31: only Postfix may speak for a local user. The milter listens on a Unix socket only
//! (mode 0660, group postfix by default); a TCP address from a v3 config is refused with the fix
//! while the policy service serves on.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    BIN, Daemon, NO_SYSLOG, Redis, Supervised, erl, free_port, http_get, spawn_logged, today, wait_for,
};

/// The milter protocol's flags (libmilter's mfdef.h): no reply to a header, a MAIL, a RCPT.
const NO_REPLY_HEADER: u32 = 0x80;
const NO_REPLY_MAIL: u32 = 0x4000;
const NO_REPLY_RCPT: u32 = 0x8000;

/// A raw milter connection, as Postfix's cleanup opens one per message.
struct Mta {
    s: UnixStream,
    protocol: u32,
}

impl Mta {
    fn connect(path: &Path) -> Self {
        let s = UnixStream::connect(path).expect("connect to the milter");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut m = Self { s, protocol: 0 };
        // Version 6, every action, every protocol step and no-reply flag Postfix 3.7 offers.
        let mut data = Vec::new();
        for v in [6u32, 0x1ff, 0x1f_ffff] {
            data.extend_from_slice(&v.to_be_bytes());
        }
        m.send(b'O', &data);
        let (cmd, reply) = m.read();
        assert_eq!(cmd, b'O', "option negotiation");
        m.protocol = u32::from_be_bytes(reply[8..12].try_into().expect("protocol mask"));
        m
    }

    fn send(&mut self, cmd: u8, data: &[u8]) {
        let len = u32::try_from(data.len() + 1).expect("length");
        let mut packet = len.to_be_bytes().to_vec();
        packet.push(cmd);
        packet.extend_from_slice(data);
        self.s.write_all(&packet).expect("write");
    }

    fn read(&mut self) -> (u8, Vec<u8>) {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).expect("reply length");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut body).expect("reply");
        (body[0], body[1..].to_vec())
    }

    /// Macros for the next command `for_cmd`.
    fn macros(&mut self, for_cmd: u8, pairs: &[(&str, &str)]) {
        let mut data = vec![for_cmd];
        for (k, v) in pairs {
            data.extend_from_slice(k.as_bytes());
            data.push(0);
            data.extend_from_slice(v.as_bytes());
            data.push(0);
        }
        self.send(b'D', &data);
    }

    /// A command whose reply is `c` (continue), unless the milter asked for none.
    fn step(&mut self, cmd: u8, args: &[&str], no_reply: u32) {
        self.send(cmd, &zeroed(args));
        if self.protocol & no_reply == 0 {
            assert_eq!(self.read().0, b'c', "continue after {}", cmd as char);
        }
    }

    fn header(&mut self, name: &str, value: &str) {
        self.send(b'L', &zeroed(&[name, value]));
        if self.protocol & NO_REPLY_HEADER == 0 {
            assert_eq!(self.read().0, b'c');
        }
    }

    /// One message up to its headers: sender, recipients, a marker header.
    fn message(&mut self, queue_id: &str, rcpts: usize, marker: &str) {
        self.macros(b'M', &[("i", queue_id), ("{mail_addr}", "www-data@mail.local.test")]);
        self.step(b'M', &["<www-data@mail.local.test>"], NO_REPLY_MAIL);
        for i in 0..rcpts {
            self.step(b'R', &[&format!("<r{i}@remote.test>")], NO_REPLY_RCPT);
        }
        self.header("X-Email-Ratelimit-Uid", marker);
        self.header("Subject", "contact form");
    }

    /// The end of the message: the modification requests, until the final accept.
    fn end(&mut self, queue_id: &str) -> Vec<(u8, Vec<u8>)> {
        self.macros(b'E', &[("i", queue_id)]);
        self.send(b'E', b"");
        let mut replies = Vec::new();
        loop {
            let (cmd, data) = self.read();
            replies.push((cmd, data));
            if matches!(cmd, b'a' | b'c' | b't' | b'r') {
                return replies;
            }
        }
    }
}

fn zeroed(args: &[&str]) -> Vec<u8> {
    args.iter().flat_map(|a| a.bytes().chain([0])).collect()
}

/// A daemon whose milter listens on `milter.sock` in a directory of its own (returned, to keep),
/// with `extra` config and `milter` more lines of `[milter]`; `store = "memory"` unless `extra`
/// names a Redis.
fn milter_daemon(extra: &str, milter: &str) -> (Daemon, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("milter.sock");
    let store = if extra.contains("[redis]") { "" } else { "store = \"memory\"\n" };
    let daemon = Daemon::start_at(
        dir.path().join("policy.sock"),
        &format!(
            "{store}server_name = \"mx1\"\n{extra}\n[milter]\nlisten = {:?}\n{milter}",
            path.display().to_string()
        ),
    );
    daemon.wait_log(&format!("milter on unix:{}", path.display()), 1);
    (daemon, path, dir)
}

#[test]
fn a_cut_connection_counts_nothing_and_the_next_message_is_decided() {
    let metrics = free_port();
    let (daemon, path, _dir) = milter_daemon(
        &format!("[limits.local]\ndaily = 3\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"),
        "",
    );
    let port = path.as_path();

    // Cut after the headers, before the end of the message: nothing is decided or counted.
    let mut cut = Mta::connect(port);
    cut.message("CUT1", 3, "33 CUT1");
    drop(cut);

    let mut mta = Mta::connect(port);
    // Pickup hands over one message at a time: no reply is waited for before the end.
    let quiet = NO_REPLY_MAIL | NO_REPLY_RCPT | NO_REPLY_HEADER;
    assert_eq!(mta.protocol & quiet, quiet, "negotiated: {:#x}", mta.protocol);
    mta.message("Q2", 2, "33 Q2");
    let replies = mta.end("Q2");
    assert_eq!(replies.last().map(|r| r.0), Some(b'a'), "accepted: {replies:?}");
    // Nothing is edited (an edit makes Postfix rewrite the queue file) and nothing held.
    assert_eq!(replies.len(), 1, "only the accept: {replies:?}");
    daemon.wait_log("erl ok user=local:www-data@mx1 rcpt=2 local=2/3 client=127.0.0.1 queue_id=Q2", 1);
    assert!(!daemon.log().contains("CUT1"), "the cut message was never decided:\n{}", daemon.log());

    // Over the cap (2 + 2 > 3): quarantined, then accepted into the hold queue.
    let mut mta = Mta::connect(port);
    mta.message("Q3", 2, "33 Q3");
    let replies = mta.end("Q3");
    let quarantine = replies.iter().find(|(c, _)| *c == b'q').expect("a quarantine request");
    let reason = String::from_utf8_lossy(&quarantine.1).into_owned();
    assert!(reason.contains("local:www-data@mx1: Your daily limit of 3 recipients reached"), "{reason}");
    assert_eq!(replies.last().map(|r| r.0), Some(b'a'));
    daemon.wait_log("erl HOLD user=local:www-data@mx1 rcpt=2 local=2/3", 1);
    let (_, body) = http_get(metrics, "/metrics", None);
    for series in [
        "email_ratelimit_decisions_total{outcome=\"hold\"} 1",
        "email_ratelimit_decisions_total{outcome=\"ok\"} 1",
        "email_ratelimit_deferrals_total{scope=\"local\",window=\"1d\"} 1",
    ] {
        assert!(body.lines().any(|l| l == series), "{series} in:\n{body}");
    }

    // A marker naming another message (copied or forged) is not believed.
    let mut mta = Mta::connect(port);
    mta.message("Q4", 1, "0 Q2");
    assert_eq!(mta.end("Q4").last().map(|r| r.0), Some(b'a'));
    daemon.wait_log("erl ok user=local:unknown@mx1 rcpt=1 local=1/- client=127.0.0.1 queue_id=Q4", 1);
}

/// Whether `user` (with the supplementary `groups`, comma-separated, or none) can connect to
/// the socket at `path`: a separate process, as another local account would try.
fn can_connect_as(user: &str, groups: Option<&str>, path: &Path) -> Result<(), String> {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--no-new-privs", &format!("--reuid={user}"), "--regid=nogroup"]);
    match groups {
        Some(g) => cmd.arg(format!("--groups={g}")),
        None => cmd.arg("--clear-groups"),
    };
    let out = cmd
        .args([
            "perl",
            "-MIO::Socket::UNIX",
            "-e",
            "IO::Socket::UNIX->new(Peer => $ARGV[0]) or die \"$!\\n\"",
        ])
        .arg(path)
        .output()
        .expect("setpriv perl");
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
}

#[test]
fn the_milter_socket_is_for_postfix_only() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs the suite as root");
        eprintln!("SKIPPED: needs root to try other users");
        return;
    }
    let postfix =
        nix::unistd::Group::from_name("postfix").ok().flatten().expect("group postfix (CI installs postfix)");
    let (daemon, path, dir) = milter_daemon("[limits.local]\ndaily = 3\n", "");
    let meta = std::fs::symlink_metadata(&path).expect("the milter socket");
    assert_eq!(
        (meta.mode() & 0o777, meta.gid()),
        (0o660, postfix.gid.as_raw()),
        "mode 0660, group postfix by default"
    );
    // Another local account cannot reach it, even where the directory is open to it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let refused = can_connect_as("nobody", None, &path).expect_err("nobody must not connect");
    assert!(refused.contains("Permission denied"), "{refused}");
    // Postfix's group can (the control: the attempt above failed for the socket's permissions).
    can_connect_as("nobody", Some("postfix"), &path).expect("a member of group postfix connects");

    // socket_mode and socket_group are the milter's own.
    drop(daemon);
    let (_daemon, path, _dir) =
        milter_daemon("[limits.local]\ndaily = 3\n", "socket_mode = \"0600\"\nsocket_group = \"nogroup\"\n");
    let meta = std::fs::symlink_metadata(&path).expect("the milter socket");
    let nogroup = nix::unistd::Group::from_name("nogroup").ok().flatten().expect("nogroup");
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o600, nogroup.gid.as_raw()));
}

/// A daemon that may not give its milter socket group postfix (not root, not a member) keeps its
/// own group there, says so, and serves (DESIGN v4).
#[test]
fn a_group_the_daemon_may_not_use_leaves_the_socket_in_its_own_group_with_a_warning() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs the suite as root");
        eprintln!("SKIPPED: needs root to start the daemon as another user");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("nobody");
    let nogroup = nix::unistd::Group::from_name("nogroup").ok().flatten().expect("nogroup");
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(nobody.uid.as_raw()), Some(nogroup.gid.as_raw()))
        .expect("chown");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (policy, milter) = (dir.path().join("policy.sock"), dir.path().join("milter.sock"));
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"memory\"\n[listen]\nsocket = {:?}\n[milter]\nlisten = {:?}\n",
            policy.display().to_string(),
            milter.display().to_string()
        ),
    )
    .expect("config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = dir.path().join("daemon.log");
    // A copy nobody can run wherever the build directory is (a checkout under /root, say).
    let bin = dir.path().join("email-ratelimit");
    std::fs::copy(BIN, &bin).expect("copy the binary");
    let mut daemon = Supervised::default();
    daemon.set(spawn_logged(
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(&bin)
            .args(["serve", "--config"])
            .arg(&config)
            .env("EMAIL_RATELIMIT_TEST_SYSLOG", NO_SYSLOG),
        &log,
        "the daemon as nobody",
    ));
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the policy socket", Duration::from_secs(20), || {
        assert!(daemon.try_wait().is_none(), "the daemon exited:\n{}", said());
        UnixStream::connect(&policy).ok()
    });
    wait_for("the warning", Duration::from_secs(10), || {
        said().contains("group postfix not set").then_some(())
    });
    let meta = std::fs::symlink_metadata(&milter).expect("the milter socket");
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, nogroup.gid.as_raw()), "{}", said());
    assert!(said().contains(&format!("milter on unix:{}", milter.display())), "{}", said());
    assert!(said().contains("Postfix may not reach it"), "{}", said());
    daemon.stop();
}

#[test]
fn a_tcp_milter_from_a_v3_config_is_refused_and_the_policy_service_serves() {
    let port = free_port();
    let config =
        format!("store = \"memory\"\n[milter]\nlisten = \"127.0.0.1:{port}\"\n[limits.local]\ndaily = 1\n");
    let daemon = Daemon::start(&config);
    let refusal = format!(
        "milter.listen = \"127.0.0.1:{port}\" refused: a TCP port lets any local user speak for any other local user"
    );
    daemon.wait_log(&refusal, 1);
    let fix = "fix: listen = \"/var/spool/postfix/private/email-ratelimit-milter\"";
    assert!(daemon.log().contains(fix), "{}", daemon.log());
    // Nothing listens there: no local user can speak for www-data.
    let e = std::net::TcpStream::connect(("127.0.0.1", port)).expect_err("the milter port is closed");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    // The policy service answers all the same.
    assert_eq!(daemon.send("alice@example.com", 1), "DUNNO");
    // Said again on every reload, until changed.
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_log(&refusal, 2);
    // check-config says so and fails (78), with the one-line fix.
    let out = erl().args(["check-config", "--config"]).arg(&daemon.config).output().expect("check-config");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.contains("refused")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(&refusal) && line.contains(fix), "{line}");
}

/// One message of `rcpts` recipients from uid 33 (www-data); whether it was put on hold.
fn held(path: &Path, queue_id: &str, rcpts: usize) -> bool {
    let mut mta = Mta::connect(path);
    mta.message(queue_id, rcpts, &format!("33 {queue_id}"));
    mta.end(queue_id).iter().any(|(c, _)| *c == b'q')
}

/// Issue 31 item 5: after a hacked site is cleaned, the admin commands act on its local user:
/// reset, raise, lock (its mail then held, apart from cap holds), unlock, violations --user.
#[test]
fn admin_commands_take_a_local_user() {
    let Some(redis) = Redis::start() else { return };
    let (daemon, path, _dir) =
        milter_daemon(&format!("[limits.local]\ndaily = 2\n[redis]\nurl = \"{}\"\n", redis.url()), "");
    let counter = format!("erl:{}:local:www-data@mx1", today());
    assert!(!held(&path, "A1", 2));
    assert!(held(&path, "A2", 1), "over the cap of 2");
    let admin = |args: &[&str]| {
        let (ok, out) = daemon.admin(args);
        assert!(ok, "{args:?}: {out}");
        out
    };

    let out = admin(&["reset", "local:www-data"]);
    assert!(out.contains("reset local:www-data@mx1: today's counter was 2, now 0"), "{out}");
    assert_eq!(redis.get(&counter), None);
    assert!(!held(&path, "A3", 2), "the cleared counter has room again");

    let out = admin(&["raise", "local:www-data", "10/1d", "--for", "1h"]);
    assert!(out.contains("raised local:www-data@mx1 to 10/1d for 1h"), "{out}");
    assert!(!held(&path, "A4", 5), "the raise replaces [limits.local]'s cap: 2 + 5 <= 10");
    let (ok, out) = daemon.admin(&["raise", "local:www-data", "1/1d", "--for", "1h"]);
    assert!(!ok && out.contains("1/1d is below the 1d cap in force for local:www-data@mx1 (2)"), "{out}");

    let out = admin(&["lock", "local:www-data", "--for", "1h", "--reason", "hacked site"]);
    assert!(out.contains("locked local:www-data@mx1 for 1h"), "{out}");
    assert_eq!(redis.cmd(&["EXISTS", "erl:lock:local:www-data@mx1"]), redis::Value::Int(1));
    assert!(held(&path, "A5", 1), "a locked local user's mail is held");
    daemon.wait_log("erl HOLD user=local:www-data@mx1 rcpt=1 cap=locked by=admin", 1);
    let ids = |key: &str| redis.cmd(&["ZRANGE", key, "0", "-1"]);
    assert_eq!(
        ids("erl:lockheld:mx1:local:www-data@mx1"),
        redis::Value::Array(vec![redis::Value::BulkString(b"A5".to_vec())])
    );
    assert_eq!(
        ids("erl:held:mx1:www-data"),
        redis::Value::Array(vec![redis::Value::BulkString(b"A2".to_vec())]),
        "held for its cap, apart from what the lock held"
    );
    let out = admin(&["unlock", "local:www-data"]);
    assert!(out.contains("unlocked local:www-data@mx1"), "{out}");
    assert!(!held(&path, "A6", 1), "unlocked, under its raise (8 of 10)");
    let out = admin(&["raise", "local:www-data", "--cancel"]);
    assert!(out.contains("cancelled the raise of local:www-data@mx1 (10/1d)"), "{out}");

    let out = admin(&["violations", "--user", "local:www-data"]);
    for action in [
        " reset by=root",
        " raise by=root",
        " lock by=root reason=\"hacked site\"",
        " unlock by=root",
        " held window=1d",
    ] {
        assert!(out.contains(action), "{action} in:\n{out}");
    }
    assert!(out.lines().all(|l| l.contains("local:www-data@mx1")), "{out}");
    let (ok, out) = daemon.admin(&["lock", "local:www-data@mx2"]);
    assert!(!ok && out.contains("a local user belongs to its server (mx2)"), "{out}");
}
