//! The monitoring kit against the real programs: `promtool` checks the page and the shipped
//! alert rules (and runs their unit tests); a real Prometheus scrapes the daemon, its API returns
//! the decision counter, it loads and evaluates the shipped rules, and the fail-open and Redis
//! alerts go off when Redis is stopped; every expression of the Grafana dashboard names only
//! metrics the daemon exports and runs on that Prometheus without an error.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Daemon, Mariadb, Prometheus, Redis, defer_user, free_port, have, http_get, wait_for};
use serde_json::Value;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib").join(path)
}

/// Runs promtool with `args` (and `stdin`); returns (success, stdout + stderr).
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("promtool output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn shipped_alert_rules_pass_promtool() {
    if !have("promtool") {
        return;
    }
    let (ok, out) =
        promtool(&["check", "rules", &contrib("prometheus/alerts.yml").display().to_string()], "");
    assert!(ok && out.contains("SUCCESS: 9 rules found"), "{out}");
    let dir = contrib("prometheus");
    let run = Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool test rules");
    let out = String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success() && out.contains("SUCCESS"), "{out}");
}

/// Metric names a page declares (from its TYPE lines; a histogram's series too).
fn exported(text_page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text_page.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
        if kind == "histogram" {
            names.extend(["bucket", "sum", "count"].map(|s| format!("{name}_{s}")));
        } else {
            names.insert(name.to_owned());
        }
    }
    names
}

/// Every `email_ratelimit_*` name in a PromQL expression.
fn names_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("email_ratelimit_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        found.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    found
}

/// Every PromQL expression of the dashboard (panel targets and the templating queries).
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(contrib("grafana/email-ratelimit.json")).expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["definition"].as_str() {
            exprs.push(q.to_owned());
        }
    }
    exprs
}

fn alert_states(p: &Prometheus) -> Vec<(String, String)> {
    p.api("/api/v1/alerts")["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                a["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_the_daemon() {
    if !have("promtool") {
        return;
    }
    let Some(mut redis) = Redis::start() else { return };
    let Some(db) = Mariadb::start() else { return };
    db.sql(
        "INSERT INTO dbispconfig.mail_user (mailuser_id, email) VALUES (1, 'alice@example.com'); \
         INSERT INTO dbispconfig.er_mail_user_ratelimit VALUES (1, 'y', 5);",
    );
    let started = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let port = free_port();
    let d = Daemon::start(&format!(
        "[redis]\nurl = \"{}\"\n[database]\nurl = \"{}\"\nrefresh_secs = 1\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        redis.url(),
        db.url()
    ));
    d.wait_log("limits loaded from database", 1);
    for _ in 0..5 {
        assert_eq!(d.send("alice@example.com", 1), "DUNNO");
    }
    for _ in 0..3 {
        assert_eq!(d.send("alice@example.com", 1), defer_user("alice@example.com", 5));
    }

    // The text format (no Accept header, as curl and promtool read it) passes promtool's lint.
    let (head, page) = http_get(port, "/metrics", None);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let (ok, out) = promtool(&["check", "metrics"], &page);
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}\n{page}");
    let names = exported(&page);
    for contract in [
        "email_ratelimit_decisions_total",
        "email_ratelimit_request_duration_seconds_bucket",
        "email_ratelimit_redis_up",
        "email_ratelimit_database_last_success_timestamp_seconds",
        "email_ratelimit_limits_loaded",
        "email_ratelimit_connections",
        "email_ratelimit_locked_senders",
        "email_ratelimit_notifications_dropped_total",
        // Issue 21 item 16.
        "email_ratelimit_mode",
        "email_ratelimit_would_deferrals_total",
        "email_ratelimit_recipients_total",
        "email_ratelimit_server_used",
        "email_ratelimit_server_limit",
        "email_ratelimit_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(names.contains(contract), "{contract} not on the page:\n{page}");
    }
    let read = page
        .lines()
        .find_map(|l| l.strip_prefix("email_ratelimit_database_last_success_timestamp_seconds "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("the database's last good read");
    assert!(read >= started && read <= started + 120, "last read {read}, test started {started}");
    assert!(page.lines().any(|l| l == "email_ratelimit_database_configured 1"), "{page}");

    // A real Prometheus scrapes it (asking for OpenMetrics) and evaluates the shipped rules.
    let alerts = contrib("prometheus/alerts.yml");
    let Some(prom) = Prometheus::start(&format!("127.0.0.1:{port}"), &[&alerts]) else { return };
    wait_for("the decision counter in Prometheus", Duration::from_secs(30), || {
        let ok = prom.value(r#"email_ratelimit_decisions_total{job="email-ratelimit",outcome="ok"}"#)?;
        let defer = prom.value(r#"email_ratelimit_decisions_total{outcome="defer"}"#)?;
        (ok == 5.0 && defer == 3.0).then_some(())
    });
    assert_eq!(prom.value(r#"email_ratelimit_deferrals_total{scope="mailbox",window="1d"}"#), Some(3.0));
    assert_eq!(prom.value("email_ratelimit_redis_up"), Some(1.0));
    let rules = wait_for("every shipped rule evaluated", Duration::from_secs(30), || {
        let groups = prom.api("/api/v1/rules")["groups"].as_array()?.clone();
        let rules: Vec<Value> =
            groups.iter().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()).collect();
        let evaluated =
            rules.iter().all(|r| !r["lastEvaluation"].as_str().unwrap_or("0001").starts_with("0001"));
        (rules.len() == 9 && evaluated).then_some(rules)
    });
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
    }
    assert!(alert_states(&prom).is_empty(), "nothing wrong yet: {:?}", alert_states(&prom));

    // The server's usage, as Prometheus sees it (5 recipients counted of the daily 999).
    assert_eq!(prom.value(r#"email_ratelimit_server_used{window="1d"}"#), Some(5.0));
    assert_eq!(prom.value(r#"email_ratelimit_server_limit{window="1d"}"#), Some(999.0));
    assert_eq!(prom.value(r#"email_ratelimit_mode{mode="enforce"}"#), Some(1.0));
    // Issue 21 item 17: the dashboard's data source is the import input, behind its variable.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(contrib("grafana/email-ratelimit.json")).expect("dashboard"),
    )
    .expect("JSON");
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    let var = dash["templating"]["list"]
        .as_array()
        .expect("list")
        .iter()
        .find(|v| v["name"] == "datasource")
        .cloned();
    assert_eq!(var.expect("a datasource variable")["current"]["value"], "${DS_PROMETHEUS}");
    for panel in dash["panels"].as_array().expect("panels") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
    }
    assert!(
        dash["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .any(|p| p["title"].as_str().is_some_and(|t| t.contains("would-be deferrals by scope"))),
        "the trial panel"
    );
    // Every dashboard expression: exported names only, and valid PromQL with data where the
    // daemon has some.
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 12, "{exprs:?}");
    for expr in &exprs {
        for name in names_in(expr) {
            assert!(names.contains(&name), "the dashboard's {name} is not exported ({expr})");
        }
        if expr.starts_with("label_values(") {
            continue;
        }
        let runnable =
            expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$instance", ".*");
        prom.query(&runnable);
    }
    // The dashboard's first graph, once two scrapes make a rate: one series per outcome (ok,
    // defer, reject, would_defer, would_reject, hold, would_hold, fail_open, skip: all exported
    // from the start).
    wait_for("a rate per outcome", Duration::from_secs(30), || {
        let q = r#"sum by (outcome) (rate(email_ratelimit_decisions_total{instance=~".*"}[1m]))"#;
        (prom.query(q).len() == 9).then_some(())
    });

    // Redis stops: the next requests fail open, the fail-open alert fires at once and the
    // Redis one is pending (it waits a minute).
    redis.stop();
    for _ in 0..4 {
        assert_eq!(d.send("alice@example.com", 1), "DUNNO", "fail-open");
    }
    wait_for("the fail-open and Redis alerts", Duration::from_secs(30), || {
        let states = alert_states(&prom);
        let has = |name: &str, state: &str| states.iter().any(|(n, s)| n == name && s == state);
        (has("EmailRatelimitFailingOpen", "firing") && has("EmailRatelimitRedisDown", "pending"))
            .then_some(())
    });
    assert_eq!(prom.value(r#"email_ratelimit_decisions_total{outcome="fail_open"}"#), Some(4.0));
}
