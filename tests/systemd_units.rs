//! The shipped systemd units: `systemd-analyze verify`, the `security` exposure score (offline,
//! on the unit files), the contract's directives, and what socket activation buys: a daemon
//! restart behind a socket that stays open loses no request.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");

fn unit(name: &str) -> String {
    std::fs::read_to_string(Path::new(UNITS).join(name)).expect("read unit")
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    // verify insists that ExecStart= exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for name in ["email-ratelimit.socket", "email-ratelimit-milter.socket", "email-ratelimit.service"] {
        let path = dir.path().join(name);
        std::fs::write(&path, unit(name).replace("/usr/bin/email-ratelimit", BIN)).expect("write");
        files.push(path);
    }
    let out =
        Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&files).output().expect("run");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

/// `systemd-analyze security --offline` of one unit file: the overall exposure.
fn exposure(path: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(path)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{text}"));
    eprintln!("{}: {}", path.display(), line.trim());
    line.split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn service_exposure_is_at_most_1_5() {
    if !have("systemd-analyze") {
        return;
    }
    let score = exposure(&Path::new(UNITS).join("email-ratelimit.service"));
    assert!(score <= 1.5, "{score}");
}

/// The sendmail drop-in (for `[notify]` mails through Postfix's sendmail) is valid and keeps the
/// unit hardened: the unit with the drop-in's settings appended (as systemd applies a drop-in).
#[test]
fn the_sendmail_drop_in_verifies_and_keeps_exposure_at_most_1_5() {
    if !have("systemd-analyze") {
        return;
    }
    let drop_in = unit("sendmail.conf");
    assert!(
        drop_in.contains("SupplementaryGroups=postdrop")
            && drop_in.contains("ReadWritePaths=/var/spool/postfix/maildrop")
    );
    let settings: String = drop_in
        .lines()
        .filter(|l| !l.starts_with('#') && *l != "[Service]")
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let merged = unit("email-ratelimit.service").replacen("[Install]", &format!("{settings}\n[Install]"), 1);
    let path = dir.path().join("email-ratelimit.service");
    std::fs::write(&path, merged.replace("/usr/bin/email-ratelimit", BIN)).expect("write");
    std::fs::write(dir.path().join("email-ratelimit.socket"), unit("email-ratelimit.socket")).expect("write");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .arg(dir.path().join("email-ratelimit.socket"))
        .output()
        .expect("run");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    let score = exposure(&path);
    assert!(score <= 1.5, "{score}");
}

#[test]
fn units_say_what_the_contract_asks() {
    let service = unit("email-ratelimit.service");
    for directive in [
        "Type=notify",
        "ExecStartPre=/usr/bin/email-ratelimit check-config",
        "ExecStart=/usr/bin/email-ratelimit serve --config /etc/email-ratelimit/config.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "User=email-ratelimit",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "Requires=email-ratelimit.socket",
        // Issue 24: the milter's socket is handed over by name, with the policy one.
        "Sockets=email-ratelimit.socket email-ratelimit-milter.socket\n",
        // Issue 21 item 7: in mail.log next to Postfix's lines; journald drops no decision line.
        "SyslogFacility=mail\n",
        "SyslogIdentifier=email-ratelimit\n",
        "LogRateLimitIntervalSec=0\n",
        "Documentation=man:email-ratelimit(8)",
    ] {
        assert!(service.contains(directive), "service lacks {directive:?}");
    }
    let socket = unit("email-ratelimit.socket");
    for directive in [
        "ListenStream=/var/spool/postfix/private/email-ratelimit\n",
        "SocketUser=postfix",
        "SocketGroup=postfix",
        "SocketMode=0660",
        // Issue 36: the page the daemon has (section 8).
        "Documentation=man:email-ratelimit(8)\n",
    ] {
        assert!(socket.contains(directive), "socket lacks {directive:?}");
    }
    let milter = unit("email-ratelimit-milter.socket");
    for directive in [
        "ListenStream=/var/spool/postfix/private/email-ratelimit-milter\n",
        "FileDescriptorName=milter\n",
        "Service=email-ratelimit.service\n",
        "SocketUser=postfix",
        "SocketGroup=postfix",
        "SocketMode=0660",
    ] {
        assert!(milter.contains(directive), "milter socket lacks {directive:?}");
    }
}

/// Plays systemd: holds the listening socket as fd 3 and starts or stops the daemon on command.
const SOCKET_HOLDER: &str = r#"
import os, socket, subprocess, sys
path, binary, config, log = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1024)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
out = open(log, "ab")
child = None
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "start":
        child = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve --config "$1"', binary, config],
                                 pass_fds=(3,), stdout=out, stderr=out)
    elif line.strip() == "stop" and child:
        child.terminate()
        child.wait()
        child = None
    print("done", flush=True)
if child:
    child.terminate()
    child.wait()
"#;

/// One request, the way smtpd's policy client treats a connection that the daemon closed:
/// reconnect and send again when no reply came.
fn ask_retrying(socket: &Path, conn: &mut Option<Conn>, user: &str) -> String {
    for _ in 0..100 {
        if conn.is_none() {
            *conn = std::os::unix::net::UnixStream::connect(socket).ok().map(Conn::new);
        }
        if let Some(c) = conn.as_mut()
            && c.try_write(eom(user, 1).as_bytes()).is_ok()
            && let Some(reply) = c.try_reply()
        {
            return reply;
        }
        *conn = None;
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no reply after 100 attempts");
}

#[test]
fn a_daemon_restart_behind_a_held_socket_loses_no_request() {
    if !have("python3") {
        return;
    }
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("held.sock");
    let config = dir.path().join("config.toml");
    let log = dir.path().join("daemon.log");
    std::fs::write(
        &config,
        format!(
            "[listen]\nsocket = {:?}\n[limits]\nglobal = 100000000\n[redis]\nurl = \"{}\"\n",
            dir.path().join("unused.sock").display().to_string(),
            redis.url()
        ),
    )
    .expect("config");
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(SOCKET_HOLDER)
        .arg(&socket)
        .arg(BIN)
        .arg(&config)
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut to_holder = holder.stdin.take().expect("stdin");
    let mut from_holder = BufReader::new(holder.stdout.take().expect("stdout"));
    let mut command = |what: &str| {
        writeln!(to_holder, "{what}").expect("command");
        let mut line = String::new();
        from_holder.read_line(&mut line).expect("answer");
        line
    };
    assert_eq!(command("start"), "ready\n");

    let stop = AtomicBool::new(false);
    let answered = AtomicU64::new(0);
    std::thread::scope(|s| {
        let _stop_senders = common::StopOnDrop(&stop);
        for t in 0..8 {
            let (stop, answered, socket) = (&stop, &answered, &socket);
            s.spawn(move || {
                let mut conn = None;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(ask_retrying(socket, &mut conn, &format!("held{t}@example.com")), "DUNNO");
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Each restart under load: the senders' answers flow before it, and again after it.
        let flowing = |more: u64| {
            let from = answered.load(Ordering::Relaxed);
            wait_for("answers", Duration::from_secs(20), || {
                (answered.load(Ordering::Relaxed) >= from + more).then_some(())
            });
        };
        flowing(200);
        for _ in 0..3 {
            assert_eq!(command("stop"), "done\n");
            assert_eq!(command("start"), "done\n");
            flowing(200);
        }
        stop.store(true, Ordering::Relaxed);
    });
    drop(to_holder);
    let _ = holder.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(log.matches("serving on unix:").count(), 4, "{log}");
    assert!(!log.contains("fail-open"), "{log}");
    let answered = answered.load(Ordering::Relaxed);
    eprintln!("{answered} requests answered across 3 daemon restarts");
    assert_eq!(redis.get(&format!("erl:{}:global", today())), Some(answered), "every request counted once");
}
