//! Prometheus metrics (`[metrics] listen`): what the daemon decided and how its dependencies
//! are, at `GET /metrics` in the OpenMetrics format Prometheus asks for, or in the classic text
//! format for everything else (`format.rs`).
//!
//! The request path only bumps atomic counters ([`Metrics::decided`], the histogram too); gauges
//! that describe state (Redis up, the limits, connections, locks, notifications) are read when
//! a scrape asks (`http.rs`). No label holds a sender or a domain.

pub mod format;
mod histogram;
pub mod http;
mod process;

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use histogram::DurationHistogram;
use process::ProcessMetrics;

use crate::config::Mode;
use crate::policy::{Cause, Outcome};
use crate::window::{Unit, Window};

type Labels = Vec<(&'static str, String)>;

/// The deferral metrics' labels of `cause`.
/// (`unit="msg"` for a message cap only: a recipient cap's series keep the v2 labels.)
fn labels(cause: &Cause) -> Labels {
    let mut labels = vec![("scope", cause.scope().to_owned()), ("window", cause.window())];
    if cause.unit() == Unit::Msg {
        labels.push(("unit", "msg".to_owned()));
    }
    labels
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    ok: Counter,
    defer: Counter,
    reject: Counter,
    would_defer: Counter,
    would_reject: Counter,
    hold: Counter,
    would_hold: Counter,
    fail_open: Counter,
    skip: Counter,
    deferrals: Family<Labels, Counter>,
    would_deferrals: Family<Labels, Counter>,
    recipients: Counter,
    mode: Family<Labels, Gauge>,
    server_used: Family<Labels, Gauge>,
    server_limit: Family<Labels, Gauge>,
    process: ProcessMetrics,
    duration: DurationHistogram,
    pub redis_up: Gauge,
    /// 0 without `[database]`; `database_configured` tells the two zeros apart.
    pub database_last_success: Gauge,
    pub limits_loaded: Gauge,
    database_configured: Gauge,
    pub connections: Gauge,
    locked_senders: Family<Labels, Gauge>,
    sent: Counter,
    failed: Counter,
    suppressed: Counter,
    dropped: Counter,
    /// The notifier's counts already exported (sent, failed, dropped, suppressed).
    exported: Mutex<[u64; 4]>,
}

impl Metrics {
    /// `database`: whether limits are read from a database (exports its last good read).
    #[must_use]
    pub fn new(database: bool) -> Self {
        let mut registry = Registry::with_prefix("email_ratelimit");
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "decisions",
            "Policy decisions by outcome (ok, defer, reject, would_defer, would_reject, hold, would_hold, fail_open, skip)",
            decisions.clone(),
        );
        let outcome = |o: &str| decisions.get_or_create(&vec![("outcome", o.to_owned())]).clone();
        let (ok, defer, fail_open, skip) =
            (outcome("ok"), outcome("defer"), outcome("fail_open"), outcome("skip"));
        let (reject, would_defer, would_reject) =
            (outcome("reject"), outcome("would_defer"), outcome("would_reject"));
        // Website mail (the milter) over a cap is held, not deferred.
        let (hold, would_hold) = (outcome("hold"), outcome("would_hold"));
        let deferrals = Family::<Labels, Counter>::default();
        registry.register(
            "deferrals",
            "Deferred messages (held: scope local) by the cap that was full (scope, window, unit)",
            deferrals.clone(),
        );
        let would_deferrals = Family::<Labels, Counter>::default();
        registry.register(
            "would_deferrals",
            "Log-only mode: messages enforcing would have deferred, by the cap that was full (scope, window, unit; locked, -)",
            would_deferrals.clone(),
        );
        // One series from the start (0), so that the trial panel and rules find the family
        // before the first would-be deferral.
        would_deferrals
            .get_or_create(&labels(&Cause::Cap {
                scope: crate::caps::Scope::Mailbox,
                window: Window::Day,
                unit: Unit::Rcpt,
                oversize: false,
            }))
            .inc_by(0);
        let recipients = Counter::default();
        registry.register(
            "recipients",
            "Recipients counted (accepted messages; in log-only mode every counted message)",
            recipients.clone(),
        );
        let mode = Family::<Labels, Gauge>::default();
        registry.register(
            "mode",
            "The mode in force: 1 for the one that applies (enforce, log-only)",
            mode.clone(),
        );
        let server_used = Family::<Labels, Gauge>::default();
        registry.register(
            "server_used",
            "Recipients counted on the server's counter in the current window, per window of a server cap",
            server_used.clone(),
        );
        let server_limit = Family::<Labels, Gauge>::default();
        registry.register(
            "server_limit",
            "The server's cap per window (global, global_rates)",
            server_limit.clone(),
        );
        process::register_build_info(&mut registry);
        // 50 us to about 1.6 s, doubling.
        let duration = DurationHistogram::new((0..16).map(|i| 0.000_05 * f64::from(1u32 << i)));
        registry.register(
            "request_duration_seconds",
            "Time from a complete request to its answer",
            duration.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let redis_up =
            gauge(&mut registry, "redis_up", "1 when the last Redis call worked (0: failing open)");
        let database_last_success = gauge(
            &mut registry,
            "database_last_success_timestamp_seconds",
            "Unix time of the last good read of the database's limits (0: none since start, or no database)",
        );
        let database_configured = gauge(
            &mut registry,
            "database_configured",
            "1 when limits are read from a database ([database])",
        );
        database_configured.set(i64::from(database));
        let limits_loaded =
            gauge(&mut registry, "limits_loaded", "Mailboxes with a cap in the current limit set");
        let connections = gauge(&mut registry, "connections", "Open policy connections (smtpd processes)");
        let locked_senders = Family::<Labels, Gauge>::default();
        registry.register(
            "locked_senders",
            "Senders locked in Redis, by who locked them (auto, admin)",
            locked_senders.clone(),
        );
        for by in ["auto", "admin"] {
            locked_senders.get_or_create(&vec![("by", by.to_owned())]).set(0);
        }
        let notifications = Family::<Labels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications (mails and webhook posts) by result: sent, failed, suppressed (notify.max_per_day)",
            notifications.clone(),
        );
        // Both results exist from the start (at 0), so rules and dashboards always find them.
        let result = |r: &str| notifications.get_or_create(&vec![("result", r.to_owned())]).clone();
        let (sent, failed, suppressed) = (result("sent"), result("failed"), result("suppressed"));
        let dropped = Counter::default();
        registry.register(
            "notifications_dropped",
            "Notification events dropped because the queue was full",
            dropped.clone(),
        );
        Self {
            registry,
            ok,
            defer,
            reject,
            would_defer,
            would_reject,
            hold,
            would_hold,
            fail_open,
            skip,
            deferrals,
            would_deferrals,
            recipients,
            mode,
            server_used,
            server_limit,
            process: ProcessMetrics::new(),
            duration,
            redis_up,
            database_last_success,
            limits_loaded,
            database_configured,
            connections,
            locked_senders,
            sent,
            failed,
            suppressed,
            dropped,
            exported: Mutex::new([0; 4]),
        }
    }

    /// One decision: its outcome and how long it took (the request path: atomics only).
    pub fn decided(&self, outcome: &Outcome, took: Duration) {
        let counter = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Defer(cause) => {
                self.deferrals.get_or_create(&labels(cause)).inc();
                if cause.scope() == "local" { &self.hold } else { &self.defer }
            }
            Outcome::Reject(_) => &self.reject,
            Outcome::WouldDefer(cause) => {
                self.would_deferrals.get_or_create(&labels(cause)).inc();
                if cause.scope() == "local" { &self.would_hold } else { &self.would_defer }
            }
            Outcome::WouldReject => &self.would_reject,
            Outcome::FailOpen => &self.fail_open,
            Outcome::Skip => &self.skip,
        };
        counter.inc();
        self.duration.observe(took);
    }

    /// `n` recipients were counted (request path: one atomic add).
    pub fn counted(&self, n: u64) {
        self.recipients.inc_by(n);
    }

    /// The mode in force now.
    pub fn set_mode(&self, now: Mode) {
        for m in [Mode::Enforce, Mode::LogOnly] {
            self.mode.get_or_create(&vec![("mode", m.as_str().to_owned())]).set(i64::from(m == now));
        }
    }

    /// The server's counters and caps, per window (and unit) of a server cap.
    pub fn set_server(&self, usage: &[((Window, Unit), u64, u64)]) {
        for ((window, unit), used, limit) in usage {
            let mut labels = vec![("window", window.to_string())];
            if *unit == Unit::Msg {
                labels.push(("unit", "msg".to_owned()));
            }
            self.server_used.get_or_create(&labels).set(i64::try_from(*used).unwrap_or(i64::MAX));
            self.server_limit.get_or_create(&labels).set(i64::try_from(*limit).unwrap_or(i64::MAX));
        }
    }

    /// Reads the process's CPU, memory and descriptors (at scrape).
    pub fn update_process(&self) {
        self.process.update();
    }

    /// A SIGHUP added or removed `[database]`.
    pub fn set_database_configured(&self, on: bool) {
        self.database_configured.set(i64::from(on));
    }

    /// The locked senders as the two lock indexes count them.
    pub fn locked(&self, auto: u64, admin: u64) {
        for (by, n) in [("auto", auto), ("admin", admin)] {
            self.locked_senders
                .get_or_create(&vec![("by", by.to_owned())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Brings the notification counters up to the notifier's counts.
    pub fn notifications(&self, stats: &crate::notify::Stats) {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let mut done = self.exported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = [
            (&self.sent, load(&stats.sent)),
            (&self.failed, load(&stats.failed)),
            (&self.dropped, load(&stats.dropped)),
            (&self.suppressed, load(&stats.suppressed)),
        ];
        for (i, (counter, now)) in now.into_iter().enumerate() {
            counter.inc_by(now.saturating_sub(done[i]));
            done[i] = done[i].max(now);
        }
    }

    /// The exposition text.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &self.process.registry);
        let _ = encode_eof(&mut out);
        out
    }
}
