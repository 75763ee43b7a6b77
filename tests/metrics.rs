//! `[metrics] listen`: after known traffic against a real redis-server (n accepted, m deferred,
//! unauthenticated ones skipped, Redis stopped for k requests), `GET /metrics` shows exactly
//! those counts with HELP and TYPE lines, in OpenMetrics for Prometheus and in the text format
//! for everything else; anything else is 404. (`tests/prometheus.rs` has promtool and a real
//! Prometheus.)

mod common;

use std::time::Duration;

use common::{Daemon, Redis, defer_user, eom, free_port, http_get, received_unread, wait_for};

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

fn get(port: u16, path: &str) -> (String, String) {
    http_get(port, path, Some(OPENMETRICS))
}

/// The value of one sample line, `name{labels} value`.
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

#[test]
fn the_counts_of_known_traffic() {
    let Some(mut redis) = Redis::start() else { return };
    let port = free_port();
    let d = Daemon::start(&format!(
        "[[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 5\n[redis]\nurl = \"{}\"\n\
         [metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        redis.url()
    ));
    d.wait_log(&format!("metrics on http://127.0.0.1:{port}/metrics"), 1);
    for _ in 0..5 {
        assert_eq!(d.send("alice@example.com", 1), "DUNNO");
    }
    for _ in 0..3 {
        assert_eq!(d.send("alice@example.com", 1), defer_user("alice@example.com", 5));
    }
    for _ in 0..2 {
        assert_eq!(d.connect().ask(&eom("", 1)), "DUNNO", "unauthenticated");
    }
    let (head, body) = get(port, "/metrics");
    assert!(head.contains(" 200 OK") && head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(sample(&body, "email_ratelimit_redis_up"), 1.0);
    redis.stop();
    for _ in 0..4 {
        assert_eq!(d.send("bob@example.com", 1), "DUNNO", "fail-open");
    }
    let _held = d.connect();
    let (_, body) = get(port, "/metrics");
    for (series, want) in [
        ("email_ratelimit_decisions_total{outcome=\"ok\"}", 5.0),
        ("email_ratelimit_decisions_total{outcome=\"defer\"}", 3.0),
        ("email_ratelimit_decisions_total{outcome=\"fail_open\"}", 4.0),
        ("email_ratelimit_decisions_total{outcome=\"skip\"}", 2.0),
        ("email_ratelimit_deferrals_total{scope=\"mailbox\",window=\"1d\"}", 3.0),
        ("email_ratelimit_request_duration_seconds_count", 14.0),
        ("email_ratelimit_redis_up", 0.0),
        ("email_ratelimit_limits_loaded", 1.0),
        ("email_ratelimit_database_last_success_timestamp_seconds", 0.0),
        ("email_ratelimit_database_configured", 0.0),
        ("email_ratelimit_notifications_dropped_total", 0.0),
    ] {
        assert_eq!(sample(&body, series), want, "{series}");
    }
    assert!(sample(&body, "email_ratelimit_connections") >= 1.0, "the held connection");
    for name in [
        "decisions",
        "request_duration_seconds",
        "redis_up",
        "database_last_success_timestamp_seconds",
        "limits_loaded",
        "connections",
        "locked_senders",
        "notifications_dropped",
    ] {
        assert!(body.contains(&format!("# HELP email_ratelimit_{name} ")), "no HELP for {name}:\n{body}");
        assert!(body.contains(&format!("# TYPE email_ratelimit_{name} ")), "no TYPE for {name}:\n{body}");
    }
    assert!(!body.contains("alice") && !body.contains("example.com"), "no sender in a label");
    // Without an Accept header (curl, promtool): the text format, the same samples, counters
    // declared under their `_total` names.
    let (head, text) = http_get(port, "/metrics", None);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        text.contains("# TYPE email_ratelimit_decisions_total counter\n") && !text.contains("# EOF"),
        "{text}"
    );
    assert_eq!(sample(&text, "email_ratelimit_decisions_total{outcome=\"ok\"}"), 5.0);
    let (head, _) = get(port, "/other");
    assert!(head.contains(" 404 Not Found"), "{head}");
}

/// Issue 20 item 9: the locked senders are counted from their two indexes, so a Redis with
/// 400,000 unrelated keys still reports them at once; a lock written from outside is indexed at
/// start; an expired or lifted lock leaves the count.
#[test]
fn locked_senders_are_counted_on_a_large_redis() {
    let Some(redis) = Redis::start_with(&["--enable-debug-command", "yes"]) else { return };
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(400_000)
        .arg("unrelated")
        .query(&mut redis.conn())
        .expect("DEBUG POPULATE");
    // Locked by a panel or an older version: no index entry.
    let outside = r#"{"ts":1700000000,"by":"admin","reason":"from the panel"}"#;
    let _: () =
        redis::cmd("SET").arg("erl:lock:old@example.com").arg(outside).query(&mut redis.conn()).expect("SET");
    let port = free_port();
    let d = Daemon::start(&format!(
        "[[limits.mailbox]]\nemail = \"bot@example.com\"\ndaily = 1\n[protect]\nlock = true\nlock_after_refusals = 1\n\
         [redis]\nurl = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        redis.url()
    ));
    d.wait_log("lock index repaired: 1 locked sender(s)", 1);
    assert_eq!(d.send("bot@example.com", 1), "DUNNO");
    for _ in 0..2 {
        assert_eq!(d.send("bot@example.com", 1), defer_user("bot@example.com", 1));
    }
    let (ok, out) = d.admin(&["lock", "carol@example.com", "--for", "2s"]);
    assert!(ok, "{out}");
    let count = |by: &str| {
        sample(&get(port, "/metrics").1, &format!("email_ratelimit_locked_senders{{by=\"{by}\"}}"))
    };
    assert_eq!((count("auto"), count("admin")), (1.0, 2.0));
    let score = redis.cmd(&["ZSCORE", "erl:locks:auto", "bot@example.com"]);
    assert_eq!(score, redis::Value::BulkString(b"inf".to_vec()), "an automatic lock never expires");
    common::wait_for("the 2 s lock to leave the count", std::time::Duration::from_secs(10), || {
        (count("admin") == 1.0).then_some(())
    });
    let (ok, out) = d.admin(&["unlock", "bot@example.com"]);
    assert!(ok, "{out}");
    assert_eq!((count("auto"), count("admin")), (0.0, 1.0));
}

/// Issue 20 item 11: idle connections (any local user can open them) never lock scrapes out: a
/// new scrape gets in even when every slot is taken by one that sent nothing, and a silent
/// connection is closed after about a second.
#[test]
fn idle_connections_never_block_a_scrape() {
    use std::io::Read;
    let port = free_port();
    let d = Daemon::start(&format!("store = \"memory\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    d.wait_log(&format!("metrics on http://127.0.0.1:{port}/metrics"), 1);
    for round in 0..3 {
        let idle: Vec<std::net::TcpStream> =
            (0..8).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect")).collect();
        let (head, body) = get(port, "/metrics");
        assert!(
            head.contains(" 200 OK") && body.contains("email_ratelimit_connections"),
            "round {round}: {head}"
        );
        drop(idle);
    }
    // A silent connection is closed by the daemon (read sees the end), long before 10 s.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    silent.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let mut buf = [0u8; 16];
    assert!(matches!(silent.read(&mut buf), Ok(0)), "closed by the daemon");
}

/// A scrape is never turned away: when every slot is answering a request (here four clients that
/// sent half a request head and stopped), a new connection waits for a slot (each is bounded,
/// 2 s for a head) and is then answered, never closed with its request unread (a reset).
#[test]
fn a_scrape_waits_for_a_busy_slot_and_is_answered() {
    use std::io::Write;
    let port = free_port();
    let d = Daemon::start(&format!("store = \"memory\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    d.wait_log(&format!("metrics on http://127.0.0.1:{port}/metrics"), 1);
    let busy: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n").expect("half a head");
            s
        })
        .collect();
    // Every slot holds a started request before the scrape comes: the server has read the four
    // half heads.
    wait_for("the four requests read", Duration::from_secs(10), || {
        let queues = received_unread(port);
        (queues.len() == 4 && queues.iter().all(|&n| n == 0)).then_some(())
    });
    let (head, body) = get(port, "/metrics");
    assert!(head.contains(" 200 OK") && body.contains("email_ratelimit_connections"), "{head}");
    drop(busy);
}

/// Issue 21 item 16: the trial can be watched (the mode, would-be deferrals by cap), the
/// server's usage against its caps, the recipients counted, the build and the process.
#[test]
fn the_trial_the_server_usage_and_the_process() {
    let Some(redis) = Redis::start() else { return };
    let port = free_port();
    let mut d = Daemon::start(&format!(
        "mode = \"log-only\"\n[limits]\nglobal = 500\nglobal_rates = [\"300/1h\"]\n\
         [[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 2\n[redis]\nurl = \"{}\"\n\
         [metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        redis.url()
    ));
    d.wait_log(&format!("metrics on http://127.0.0.1:{port}/metrics"), 1);
    for n in [1, 1, 1, 3] {
        assert_eq!(d.send("alice@example.com", n), "DUNNO", "log-only");
    }
    assert_eq!(d.send("bob@example.com", 4), "DUNNO");
    let (_, body) = get(port, "/metrics");
    for (series, want) in [
        ("email_ratelimit_mode{mode=\"log-only\"}", 1.0),
        ("email_ratelimit_mode{mode=\"enforce\"}", 0.0),
        ("email_ratelimit_decisions_total{outcome=\"would_defer\"}", 1.0),
        ("email_ratelimit_decisions_total{outcome=\"would_reject\"}", 1.0),
        ("email_ratelimit_would_deferrals_total{scope=\"mailbox\",window=\"1d\"}", 1.0),
        ("email_ratelimit_recipients_total", 10.0),
        ("email_ratelimit_server_used{window=\"1d\"}", 10.0),
        ("email_ratelimit_server_limit{window=\"1d\"}", 500.0),
        ("email_ratelimit_server_used{window=\"1h\"}", 10.0),
        ("email_ratelimit_server_limit{window=\"1h\"}", 300.0),
        (&format!("email_ratelimit_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1.0),
    ] {
        assert_eq!(sample(&body, series), want, "{series}");
    }
    assert!(sample(&body, "process_resident_memory_bytes") > 1_000_000.0);
    assert!(sample(&body, "process_open_fds") >= 3.0);
    assert!(sample(&body, "process_max_fds") >= 1024.0);
    assert!(sample(&body, "process_start_time_seconds") > 1_700_000_000.0);
    assert!(body.contains("# TYPE process_cpu_seconds counter"), "{body}");
    assert!(body.ends_with("# EOF\n") && body.matches("# EOF").count() == 1, "one EOF");
    // SIGHUP to enforce: the gauge follows.
    d.write_config(&format!(
        "[limits]\nglobal = 500\n[redis]\nurl = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        redis.url()
    ));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_log("reloaded: mode=enforce", 1);
    let (_, body) = get(port, "/metrics");
    assert_eq!(sample(&body, "email_ratelimit_mode{mode=\"enforce\"}"), 1.0);
    d.stop();
}
