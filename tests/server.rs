//! The daemon binary on its Unix socket (in-memory store): the wire protocol, its bounds,
//! listeners and the connection lifecycle, spoken as raw text.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const MEMORY: &str = "store = \"memory\"\n[[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 5\n";

fn memory(extra: &str) -> Daemon {
    Daemon::start(&format!("{MEMORY}{extra}"))
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let d = memory("");
    let mut c = d.connect();
    let burst =
        [eom("alice@example.com", 2), eom("alice@example.com", 3), eom("alice@example.com", 1), eom("", 9)];
    c.write(burst.concat().as_bytes());
    let replies: Vec<String> = (0..4).map(|_| c.reply()).collect();
    assert_eq!(replies, ["DUNNO", "DUNNO", &defer_user("alice@example.com", 5), "DUNNO"]);
    // The connection stays open for more.
    assert_eq!(c.ask(&request("CONNECT", "", 0)), "DUNNO");
}

#[test]
fn a_request_split_into_single_bytes_is_answered() {
    let d = memory("");
    let mut slow = d.connect();
    let fast = d.connect();
    let text = eom("alice@example.com", 1);
    let (head, tail) = text.as_bytes().split_at(40);
    for b in head {
        slow.write(&[*b]);
    }
    // Someone else is served while the slow client dawdles.
    let mut fast = fast;
    assert_eq!(fast.ask(&eom("bob@example.com", 1)), "DUNNO");
    for b in tail {
        slow.write(&[*b]);
    }
    assert_eq!(slow.reply(), "DUNNO");
}

fn assert_closes(d: &Daemon, payload: &[u8], warning: &str) {
    let mut bad = d.connect();
    let _ = bad.try_write(payload);
    assert!(bad.is_closed(), "connection should be closed after {warning}");
    d.wait_log(warning, 1);
    // Everyone else is still served.
    assert_eq!(d.send("bob@example.com", 1), "DUNNO");
}

#[test]
fn an_oversized_line_closes_only_that_connection() {
    let d = memory("");
    let line = format!("sasl_username={}\n", "a".repeat(9000));
    assert_closes(&d, line.as_bytes(), "line longer than 8192 bytes");
}

#[test]
fn an_endless_line_without_newline_closes_the_connection() {
    let d = memory("");
    assert_closes(&d, &vec![b'x'; 100_000], "line longer than 8192 bytes");
}

#[test]
fn an_oversized_request_closes_the_connection() {
    let d = memory("");
    let line = format!("x={}\n", "b".repeat(4000));
    assert_closes(&d, line.repeat(20).as_bytes(), "request larger than 65536 bytes");
}

#[test]
fn too_many_attributes_close_the_connection() {
    let d = memory("");
    assert_closes(&d, "a=1\n".repeat(300).as_bytes(), "request with more than 256 attributes");
}

#[test]
fn odd_input_gets_an_answer_and_keeps_the_connection() {
    let d = memory("");
    let mut c = d.connect();
    c.write(b"protocol_state=END-OF-MESSAGE\nthis line has no equals sign\nsasl_username=alice@example.com\nrecipient_count=1\n\n");
    assert_eq!(c.reply(), "DUNNO");
    d.wait_log("erl fail-open reason=malformed-request", 1);
    // Issue 21 item 8: logged whatever else the request lacks (no stage, no login).
    c.write(b"GET / HTTP/1.0\n\n");
    assert_eq!(c.reply(), "DUNNO");
    d.wait_log("erl fail-open reason=malformed-request", 2);
    c.write(b"protocol_state=END-OF-MESSAGE\nsasl_username=al\xff\xfeice@example.com\nrecipient_count=1\nclient_address=\xc3\n\n");
    assert_eq!(c.reply(), "DUNNO");
    c.write(b"\n");
    assert_eq!(c.reply(), "DUNNO");
    assert_eq!(c.ask(&eom("alice@example.com", 5)), "DUNNO");
    assert_eq!(c.ask(&eom("alice@example.com", 1)), defer_user("alice@example.com", 5));
}

#[test]
fn idle_connections_are_closed() {
    let d = memory("[listen]\nidle_timeout_secs = 1\n");
    let mut c = d.connect();
    assert_eq!(c.ask(&eom("bob@example.com", 1)), "DUNNO");
    c.set_read_timeout(Duration::from_secs(5));
    let started = Instant::now();
    assert!(c.is_closed());
    assert!(started.elapsed() >= Duration::from_millis(500));
}

/// A connection that got an answer (retrying while the cap is still taken by a connection the
/// daemon has not yet seen close).
fn served(d: &Daemon) -> Conn {
    wait_for("a served connection", Duration::from_secs(5), || {
        let mut c = d.connect();
        c.try_write(eom("bob@example.com", 1).as_bytes()).ok()?;
        (c.try_reply()? == "DUNNO").then_some(c)
    })
}

#[test]
fn the_connection_cap_refuses_the_excess_and_serves_the_rest() {
    let d = memory("[listen]\nmax_connections = 2\n");
    let mut a = served(&d);
    let b = served(&d);
    let mut third = d.connect();
    assert!(third.is_closed(), "the third connection is refused at once");
    d.wait_log("connection cap of 2 reached", 1);
    assert_eq!(a.ask(&eom("bob@example.com", 1)), "DUNNO", "held connections keep being answered");
    drop(b);
    let mut again = served(&d);
    assert_eq!(again.ask(&eom("bob@example.com", 1)), "DUNNO");
}

#[test]
fn socket_gets_the_configured_mode_and_is_removed_on_exit() {
    let mut d = memory("[listen]\nsocket_mode = \"0600\"\n");
    let mode = std::fs::metadata(&d.socket).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    d.signal(Signal::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists(), "socket removed on exit");
    assert!(d.log().contains("stopped"));
}

#[test]
fn a_stale_socket_is_replaced_but_other_files_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists(), "stale socket file left behind");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("store = \"memory\"\n[listen]\nsocket = {:?}\n", path.display().to_string()),
    )
    .expect("write");
    let mut child = erl().arg("serve").arg("-c").arg(&config).spawn().expect("spawn");
    let mut c = wait_for("the daemon on the stale path", Duration::from_secs(10), || {
        UnixStream::connect(&path).ok().map(Conn::new)
    });
    assert_eq!(c.ask(&eom("x@example.com", 1)), "DUNNO");

    // A second instance must not steal a live socket.
    let out = erl().arg("serve").arg("-c").arg(&config).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{out:?}");
    assert_eq!(c.ask(&eom("x@example.com", 1)), "DUNNO", "the first instance still serves");
    let _ = child.kill();
    let _ = child.wait();

    let file = dir.path().join("file.sock");
    std::fs::write(&file, "precious").expect("write");
    let out = erl()
        .arg("serve")
        .env("EMAIL_RATELIMIT__STORE", "memory")
        .env("EMAIL_RATELIMIT__LISTEN__SOCKET", &file)
        .arg("-c")
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&file).expect("still there"), "precious");
}

#[test]
fn optional_tcp_listener_on_loopback() {
    let port = free_port();
    let d = memory(&format!("[listen]\ntcp = \"127.0.0.1:{port}\"\n"));
    d.wait_log(
        &format!("listen.tcp = 127.0.0.1:{port}: loopback clients are answered, so every local user"),
        1,
    );
    let out = erl()
        .args([
            "probe",
            "--socket",
            &format!("127.0.0.1:{port}"),
            "--user",
            "alice@example.com",
            "--recipients",
            "6",
        ])
        .output()
        .expect("probe");
    assert!(out.status.success(), "{out:?}");
    // 6 recipients under a cap of 5 can never fit.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "REJECT alice@example.com: This message has 6 recipients, more than your daily limit of 5 allows\n"
    );
    assert_eq!(d.send("alice@example.com", 5), "DUNNO", "unix socket serves the same counters");
}

#[test]
fn socket_gets_the_configured_group() {
    use std::os::unix::fs::MetadataExt;
    let group = nix::unistd::Group::from_name("nogroup").ok().flatten().expect("Debian has nogroup");
    let d = memory("[listen]\nsocket_group = \"nogroup\"\n");
    let meta = std::fs::metadata(&d.socket).expect("socket");
    assert_eq!(meta.gid(), group.gid.as_raw());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
}

#[test]
fn raises_a_low_open_file_limit_to_fit_the_connection_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let mut process = Supervised::default();
    process.set(
        Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -Sn 512 && exec {BIN} serve"))
            .env("EMAIL_RATELIMIT__STORE", "memory")
            .env("EMAIL_RATELIMIT__LISTEN__SOCKET", &socket)
            // stdout on /dev/null: the lines go to syslog, the test's (none), never the host's.
            .env("EMAIL_RATELIMIT_TEST_SYSLOG", common::NO_SYSLOG)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    wait_for("the socket", Duration::from_secs(10), || UnixStream::connect(&socket).ok());
    // The socket is bound (and connectable) before the limit is raised: wait for the raise.
    let soft = || {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", process.id())).expect("limits");
        let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open files line");
        line.split_whitespace().nth(3).and_then(|v| v.parse::<u64>().ok()).expect("soft limit")
    };
    let raised = wait_for("the soft open-file limit raised to 2048 + 256", Duration::from_secs(10), || {
        Some(soft()).filter(|&n| n >= 2048 + 256)
    });
    assert!(raised >= 2304, "{raised}");
}

/// One END-OF-MESSAGE request to the TCP listener on 127.0.0.1:`port` from the local address
/// `from`: the reply, or `None` when the connection is closed unanswered.
fn ask_from(from: &str, port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(format!("{from}:0").parse().expect("address")).expect("bind");
        let mut s =
            socket.connect(format!("127.0.0.1:{port}").parse().expect("address")).await.expect("connect");
        let _ = s.write_all(eom("alice@example.com", 1).as_bytes()).await;
        let mut buf = vec![0u8; 512];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => None,
            Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => panic!("from {from}: neither answered nor closed within 5 s"),
        }
    })
}

/// Issue 32 item 4: `[listen] tcp_allow` names the clients the TCP listener answers; any other
/// is closed unanswered and logged. Whenever loopback may connect, the warning says what every
/// local user can then do; an entry no client can match is named.
#[test]
fn tcp_allow_answers_only_the_clients_it_names() {
    let port = free_port();
    let d = memory(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\ntcp_allow = [\"127.0.0.2\", \"10.0.0.0/8\"]\n"
    ));
    assert_eq!(ask_from("127.0.0.2", port).as_deref(), Some("action=DUNNO\n\n"));
    assert_eq!(ask_from("127.0.0.1", port), None, "not in tcp_allow");
    d.wait_log("listen.tcp: connection from 127.0.0.1 closed unanswered (not in listen.tcp_allow)", 1);
    let warned = "loopback clients are answered, so every local user (a PHP script on shared hosting) can send requests in any sender's name: burn its quota, or get it locked with forged client addresses";
    for said in [warned, &format!("listen.tcp_allow: 10.0.0.0/8 can never connect to 127.0.0.1:{port}")] {
        assert!(d.log().contains(said), "{said:?} not in:\n{}", d.log());
    }
    // Said again on every reload.
    d.signal(Signal::SIGHUP);
    d.wait_log(warned, 2);
    // A non-loopback bind needs tcp_allow (or v3's tcp_allow_remote).
    let (dir, config) = {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[listen]\ntcp = \"0.0.0.0:10040\"\n").expect("write");
        (dir, path)
    };
    let out = erl().args(["check-config", "--config"]).arg(&config).output().expect("check-config");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen.tcp_allow"), "{out:?}");
    std::fs::write(&config, "[listen]\ntcp = \"0.0.0.0:10040\"\ntcp_allow = [\"192.0.2.10\"]\n")
        .expect("write");
    let out = erl().args(["check-config", "--config"]).arg(&config).output().expect("check-config");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tcp_allow = [\"192.0.2.10/32\"]"), "{out:?}");
    drop(dir);
}

/// Issue 32 item 1: `[log] target = "auto"` writes to stdout unless stdout is /dev/null (as
/// start-stop-daemon --background leaves it), then to syslog (facility mail); "syslog" and
/// "stdout" force one.
#[test]
fn the_log_goes_to_syslog_when_no_one_reads_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |name: &str, target: &str, stdout: std::process::Stdio, sink: &SyslogSink| {
        let mut process = Supervised::default();
        let socket = dir.path().join(format!("{name}.sock"));
        process.set(
            erl()
                .args(["serve"])
                .env("EMAIL_RATELIMIT__STORE", "memory")
                .env("EMAIL_RATELIMIT__LISTEN__SOCKET", &socket)
                .env("EMAIL_RATELIMIT__LOG__TARGET", target)
                .env("EMAIL_RATELIMIT_TEST_SYSLOG", sink.path())
                .stdout(stdout)
                .spawn()
                .expect("spawn"),
        );
        wait_for("the socket", Duration::from_secs(10), || UnixStream::connect(&socket).ok());
        process
    };
    // auto, stdout on /dev/null: syslog, facility mail (2 x 8 + info 6 = 22).
    let sink = SyslogSink::start();
    let mut quiet = start("auto-null", "auto", std::process::Stdio::null(), &sink);
    let line = sink.wait_for("serving on unix:");
    assert!(line.starts_with(&format!("<22>email-ratelimit[{}]: email-ratelimit ", quiet.id())), "{line}");
    quiet.stop();
    // auto, stdout read: stdout, nothing to syslog.
    let sink = SyslogSink::start();
    let log = dir.path().join("stdout.log");
    let file = std::fs::File::create(&log).expect("log");
    let mut read = start("auto-file", "auto", file.into(), &sink);
    wait_for("the serving line on stdout", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).ok().filter(|t| t.contains("serving on unix:"))
    });
    read.stop();
    assert_eq!(sink.text(), "", "nothing to syslog while stdout is read");
    // syslog forced, though stdout is read.
    let sink = SyslogSink::start();
    let mut forced = start("forced", "syslog", std::process::Stdio::piped(), &sink);
    sink.wait_for("serving on unix:");
    forced.stop();
}
