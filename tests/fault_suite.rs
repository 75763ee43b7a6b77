//! The fault suite: the daemon under load from the load tool (`erl-load`) while Redis dies,
//! hangs or loses its scripts, MariaDB goes away, clients misbehave and signals arrive. For
//! each: no crash, every well-formed request answered (DUNNO while a backend is down) within
//! 1 s, RSS bounded, enforcement back within 5 s after recovery, counts exact afterwards.
//! Also exactness under load: 100,000 requests over 64 connections against small caps.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const LOAD: &str = env!("CARGO_BIN_EXE_erl-load");

/// One fault at a time: each test saturates the machine on purpose, and answer times are part
/// of what is checked.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The load tool's RESULT line.
#[derive(Debug, Default)]
struct Load {
    rps: u64,
    max_us: u64,
    dunno: u64,
    defer: u64,
    other: u64,
    errors: u64,
}

fn start_load(socket: &Path, args: &[&str]) -> Child {
    Command::new(LOAD)
        .arg("--socket")
        .arg(socket)
        .args(["--warmup", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start erl-load")
}

fn finish_load(child: Child) -> Load {
    let out = child.wait_with_output().expect("erl-load output");
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        text.lines().find(|l| l.starts_with("RESULT ")).unwrap_or_else(|| panic!("no RESULT in {text}"));
    let mut load = Load::default();
    for field in line.split_whitespace().skip(1) {
        let (k, v) = field.split_once('=').expect("key=value");
        let v: u64 = v.parse().unwrap_or(0);
        match k {
            "rps" => load.rps = v,
            "max_us" => load.max_us = v,
            "dunno" => load.dunno = v,
            "defer" => load.defer = v,
            "other" => load.other = v,
            "errors" => load.errors = v,
            _ => {}
        }
    }
    eprintln!("  load: {line}");
    load
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Every request answered, as DUNNO or DEFER, each within 1 s.
fn assert_served(load: &Load) {
    assert_eq!((load.errors, load.other), (0, 0), "{load:?}");
    assert!(load.dunno + load.defer > 0, "{load:?}");
    assert!(load.max_us < 1_000_000, "slowest answer {} us", load.max_us);
}

/// Answers given while Redis is down or hung before it comes back: the outage is met under load.
const OUTAGE_ANSWERS: usize = 200;

/// Waits until the server's counter in Redis has counted `more` recipients from now: the load
/// flows (and, after a fault, flows again).
fn wait_counted(redis: &Redis, more: u64) {
    let key = format!("erl:{}:global", today());
    let from = redis.get(&key).unwrap_or(0);
    wait_for(&format!("{more} more recipients counted"), Duration::from_secs(20), || {
        (redis.get(&key).unwrap_or(0) >= from + more).then_some(())
    });
}

fn capped_daemon(redis: &Redis, extra: &str) -> Daemon {
    Daemon::start(&format!(
        "[limits]\nglobal = 1000000000\n[[limits.mailbox]]\nemail = \"capped@example.com\"\ndaily = 3\n\
         {extra}\n[redis]\nurl = \"{}\"\n",
        redis.url()
    ))
}

/// Enforcement is back (a sender over its cap is deferred again) within 5 s, and a fresh
/// sender's count is exact.
fn assert_recovered(d: &Daemon, redis: &Redis, tag: &str) {
    let rss = rss_kib(d.pid());
    assert!(rss > 0 && rss < 64 * 1024, "RSS {rss} KiB after {tag}");
    let started = Instant::now();
    wait_for("enforcement after recovery", Duration::from_secs(5), || {
        (d.send("capped@example.com", 5) != "DUNNO").then_some(())
    });
    eprintln!("  enforcing again {:?} after recovery", started.elapsed());
    let user = format!("exact-{tag}@example.com");
    for _ in 0..10 {
        assert_eq!(d.send(&user, 2), "DUNNO");
    }
    assert_eq!(redis.get(&format!("erl:{}:{user}", today())), Some(20), "exact count after {tag}");
}

#[test]
fn redis_killed_under_load() {
    let _serial = serial();
    let Some(mut redis) = Redis::start() else { return };
    let d = capped_daemon(&redis, "");
    let load = start_load(&d.socket, &["--connections", "32", "--duration", "4"]);
    wait_counted(&redis, 1000);
    redis.stop();
    d.wait_log("erl fail-open reason=redis-", OUTAGE_ANSWERS);
    redis.restart();
    assert_served(&finish_load(load));
    assert_recovered(&d, &redis, "killed");
}

#[test]
fn redis_hung_then_resumed_under_load() {
    let _serial = serial();
    let Some(redis) = Redis::start() else { return };
    let d = capped_daemon(&redis, "");
    let load = start_load(&d.socket, &["--connections", "32", "--duration", "4"]);
    wait_counted(&redis, 1000);
    redis.pause();
    d.wait_log("erl fail-open reason=redis-", OUTAGE_ANSWERS);
    redis.resume();
    assert_served(&finish_load(load));
    d.wait_log("erl fail-open reason=redis-timeout", 1);
    assert_recovered(&d, &redis, "hung");
}

#[test]
fn redis_loses_its_scripts_under_load() {
    let _serial = serial();
    let Some(redis) = Redis::start() else { return };
    let d = capped_daemon(&redis, "");
    let load = start_load(&d.socket, &["--connections", "32", "--duration", "3"]);
    // Five flushes, each once the script has counted again since the one before.
    for _ in 0..5 {
        wait_counted(&redis, 1000);
        redis.cmd(&["SCRIPT", "FLUSH"]);
    }
    assert_served(&finish_load(load));
    assert_recovered(&d, &redis, "flushed");
}

#[test]
fn mariadb_down_at_start_and_mid_run() {
    let _serial = serial();
    let Some(redis) = Redis::start() else { return };
    let Some(mut db) = Mariadb::start() else { return };
    db.sql(
        "INSERT INTO dbispconfig.mail_user VALUES (1, 'dbcap@example.com'); \
         INSERT INTO dbispconfig.er_mail_user_ratelimit VALUES (1, 'y', 2); \
         UPDATE dbispconfig.er_global_ratelimit SET global_limit = 1000000000;",
    );
    db.stop();
    let d = capped_daemon(
        &redis,
        &format!("[database]\nurl = \"{}\"\nrefresh_secs = 1\ntimeout_secs = 1\n", db.url()),
    );
    let load = start_load(&d.socket, &["--connections", "32", "--duration", "3"]);
    d.wait_log("limits refresh failed", 1);
    db.restart();
    d.wait_log("database reachable again", 1);
    assert_served(&finish_load(load));
    assert_eq!(d.send("dbcap@example.com", 2), "DUNNO");
    assert_eq!(d.send("dbcap@example.com", 1), defer_user("dbcap@example.com", 2));

    let load = start_load(&d.socket, &["--connections", "32", "--duration", "3"]);
    wait_counted(&redis, 1000);
    db.stop();
    d.wait_log("limits refresh failed", 2);
    assert_served(&finish_load(load));
    assert_eq!(d.send("dbcap@example.com", 1), defer_user("dbcap@example.com", 2), "caps kept");
    assert_recovered(&d, &redis, "mariadb");
}

#[test]
fn more_idle_connections_than_the_cap() {
    let _serial = serial();
    // 5,000 connections need file descriptors on this side too.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 16_384, 16_384);
    let Some(redis) = Redis::start() else { return };
    let d = capped_daemon(&redis, "[listen]\nmax_connections = 1000\n");
    let pid = d.pid();
    let mut conns: Vec<Conn> =
        (0..5000).filter_map(|_| UnixStream::connect(&d.socket).ok().map(Conn::new)).collect();
    assert_eq!(conns.len(), 5000, "connect() succeeds into the backlog");
    // The excess is closed at once (from the first one over the cap, logged); the held ones are
    // answered.
    d.wait_log("connection cap of 1000 reached", 1);
    let mut answered = 0;
    let mut refused = 0;
    for c in conns.iter_mut() {
        c.set_read_timeout(Duration::from_secs(2));
        if c.try_write(eom("idle@example.com", 1).as_bytes()).is_ok() && c.try_reply().is_some() {
            answered += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!("  5000 connections: {answered} answered, {refused} refused");
    assert!((990..=1000).contains(&answered), "{answered} answered");
    assert!(refused >= 4000, "{refused} refused");
    d.wait_log("connection cap of 1000 reached", 1);
    assert!(rss_kib(pid) < 64 * 1024, "RSS {} KiB", rss_kib(pid));
    drop(conns);
    let load = start_load(&d.socket, &["--connections", "32", "--duration", "2"]);
    assert_served(&finish_load(load));
}

#[test]
fn hostile_clients_do_not_disturb_the_others() {
    let _serial = serial();
    let Some(redis) = Redis::start() else { return };
    let d = capped_daemon(&redis, "");
    let pid = d.pid();
    let load = start_load(&d.socket, &["--connections", "32", "--duration", "4"]);
    std::thread::scope(|s| {
        // slow-loris: 100 clients sending one byte a second
        for _ in 0..100 {
            let socket = d.socket.clone();
            s.spawn(move || {
                let Ok(mut c) = UnixStream::connect(&socket) else { return };
                for b in eom("slow@example.com", 1).bytes().take(3) {
                    if c.write_all(&[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
        // a 10 MiB line, and random bytes
        for i in 0..4 {
            let socket = d.socket.clone();
            s.spawn(move || {
                let Ok(mut c) = UnixStream::connect(&socket) else { return };
                let junk: Vec<u8> = if i == 0 {
                    vec![b'x'; 10 * 1024 * 1024]
                } else {
                    (0..1_048_576u32).map(|n| (n.wrapping_mul(2_654_435_761) >> (i * 3)) as u8).collect()
                };
                let _ = c.write_all(&junk);
            });
        }
    });
    assert_served(&finish_load(load));
    d.wait_log("line longer than 8192 bytes", 1);
    assert!(rss_kib(pid) < 64 * 1024, "RSS {} KiB", rss_kib(pid));
    assert_recovered(&d, &redis, "hostile");
}

#[test]
fn sighup_storm_under_load() {
    let _serial = serial();
    let Some(redis) = Redis::start() else { return };
    let d = capped_daemon(&redis, "");
    let load = start_load(&d.socket, &["--connections", "32", "--duration", "3"]);
    // One after the other, each once the one before is applied (signals sent faster would merge
    // into one).
    for n in 1..=50 {
        d.signal(Signal::SIGHUP);
        d.wait_log("reloaded:", n);
    }
    assert_served(&finish_load(load));
    assert_recovered(&d, &redis, "sighup");
}

#[test]
fn sigterm_under_load_answers_in_flight_and_exits_0() {
    let _serial = serial();
    let Some(redis) = Redis::start() else { return };
    let mut d = capped_daemon(&redis, "");
    let load = start_load(&d.socket, &["--connections", "32", "--duration", "3"]);
    wait_counted(&redis, 1000);
    d.signal(Signal::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let load = finish_load(load);
    // The daemon is gone for good: the generator gives up (errors), but no answer was garbled.
    assert_eq!(load.other, 0, "{load:?}");
    assert!(load.dunno > 0);
    assert!(d.log().contains("stopped"));
}

#[test]
fn exact_under_load_for_several_hot_senders_and_the_server() {
    let _serial = serial();
    let Some(redis) = Redis::start() else { return };
    // user0..user4 take turns; three have small caps, the server cap binds the rest.
    let d = Daemon::start(&format!(
        "[limits]\nglobal = 5000\n\
         [[limits.mailbox]]\nemail = \"user0@example.com\"\ndaily = 500\n\
         [[limits.mailbox]]\nemail = \"user1@example.com\"\ndaily = 700\n\
         [[limits.mailbox]]\nemail = \"user2@example.com\"\ndaily = 900\n\
         [redis]\nurl = \"{}\"\n[log]\nlevel = \"warn\"\n",
        redis.url()
    ));
    let load = finish_load(start_load(
        &d.socket,
        &["--connections", "64", "--requests", "100000", "--senders", "5"],
    ));
    assert_eq!((load.errors, load.other), (0, 0), "{load:?}");
    assert_eq!(load.dunno + load.defer, 100_000);
    assert_eq!(load.dunno, 5000, "accepted = the server cap, to the unit");
    let day = today();
    let count = |u: &str| redis.get(&format!("erl:{day}:{u}")).unwrap_or(0);
    assert_eq!(
        (count("user0@example.com"), count("user1@example.com"), count("user2@example.com")),
        (500, 700, 900)
    );
    assert_eq!(count("user3@example.com") + count("user4@example.com"), 5000 - 2100);
    assert_eq!(count("global"), 5000);
}
