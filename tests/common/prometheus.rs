//! A real `prometheus` (the Debian package) on a free loopback port with a temporary config and
//! data directory, scraping one target; and the small HTTP client the metrics tests share.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::{Supervised, free_port, have, spawn_logged, wait_for};

/// `GET path` on a loopback port (HTTP/1.0: the whole body, never chunked), optionally with an
/// `Accept` header. Returns (head, body).
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{accept}\r\n").expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_owned(), body.to_owned())
}

/// Percent-encodes a query-string value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub struct Prometheus {
    pub port: u16,
    dir: TempDir,
    _process: Supervised,
}

impl Prometheus {
    /// Scrapes `target` (`host:port`, job `email-ratelimit`) every 250 ms and evaluates
    /// `rule_files` every second.
    pub fn start(target: &str, rule_files: &[&Path]) -> Option<Self> {
        if !have("prometheus") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let rules: String = rule_files.iter().map(|p| format!("  - {}\n", p.display())).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n  evaluation_interval: 1s\n\
                 rule_files:\n{rules}scrape_configs:\n  - job_name: email-ratelimit\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus.yml");
        let mut process = Supervised::default();
        process.set(spawn_logged(
            Command::new("prometheus").args([
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn",
            ]),
            &dir.path().join("prometheus.log"),
            "prometheus",
        ));
        let p = Self { port, dir, _process: process };
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            drop(s);
            http_get(port, "/-/ready", None).0.contains(" 200 OK").then_some(())
        });
        Some(p)
    }

    /// An API call's `data` (panics on an error answer, with the log).
    pub fn api(&self, path: &str) -> Value {
        let (head, body) = http_get(self.port, path, None);
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{head}\n{body}: {e}"));
        assert_eq!(v["status"], "success", "{path}: {body}\nlog:\n{}", self.log());
        v["data"].clone()
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(expr)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of an instant query, if it has exactly one series.
    pub fn value(&self, expr: &str) -> Option<f64> {
        match self.query(expr).as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}
