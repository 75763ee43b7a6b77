//! Notifications about refusals, suspects and locks: mail to the administrators (and to the
//! sender about its own caps and locks) through sendmail, and the event JSON to a webhook.
//!
//! The decision only pushes an [`Event`] onto a bounded queue ([`Queue::push`] never waits);
//! one worker task delivers them in order. A full queue drops the event and counts it. Whether
//! an event happened at all (once per window across every server) was decided in Redis.
//! Failures are counted and logged at most once a minute per channel, never retried beyond the
//! webhook's 3 tries, and never touch a reply.

pub mod event;
pub mod mail;
mod send;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use self::event::{Event, Kind};
use crate::config::NotifySettings;
use crate::once::OncePer;

/// Events waiting for delivery; past this, new ones are dropped.
pub const QUEUE_LEN: usize = 1024;
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Counts for the metrics: each mail or webhook delivery sent or failed, each event dropped.
#[derive(Debug, Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// Where decisions put their events.
#[derive(Clone, Debug)]
pub struct Queue {
    tx: mpsc::Sender<Event>,
    stats: Arc<Stats>,
    log: Arc<OncePer>,
}

impl Queue {
    /// Queues an event; drops it (and counts it) when the queue is full.
    pub fn push(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if self.log.first("dropped", Instant::now()) {
                tracing::warn!("notify: queue full ({QUEUE_LEN}); events dropped (logged once a minute)");
            }
        }
    }

    #[must_use]
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// Delivers events as configured.
pub struct Notifier {
    settings: NotifySettings,
    http: Option<reqwest::Client>,
    stats: Arc<Stats>,
    log: Arc<OncePer>,
}

impl Notifier {
    #[must_use]
    pub fn new(settings: NotifySettings) -> Self {
        let http = settings.webhook.as_ref().and_then(|_| send::client());
        Self { settings, http, stats: Arc::default(), log: Arc::new(OncePer::new(LOG_EVERY)) }
    }

    #[must_use]
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Starts the worker task; returns the queue decisions push onto.
    #[must_use]
    pub fn spawn(self) -> Queue {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE_LEN);
        let queue = Queue { tx, stats: Arc::clone(&self.stats), log: Arc::clone(&self.log) };
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                self.deliver(&event).await;
            }
        });
        queue
    }

    /// Sends one event everywhere it goes; returns the failures (none: all delivered).
    pub async fn deliver(&self, event: &Event) -> Vec<String> {
        let s = &self.settings;
        let mut failed = Vec::new();
        if !s.admin.is_empty() {
            let m = mail::for_admin(event, &s.admin);
            let sent =
                send::sendmail(&s.sendmail, &s.from, &m.to, &mail::message(&m, &s.from, event.ts)).await;
            failed.extend(self.outcome("sendmail", sent));
        }
        if s.sender
            && let Some(m) = mail::for_sender(event)
        {
            let sent =
                send::sendmail(&s.sendmail, &s.from, &m.to, &mail::message(&m, &s.from, event.ts)).await;
            failed.extend(self.outcome("sendmail", sent));
        }
        if let Some(url) = &s.webhook {
            let sent = match &self.http {
                Some(http) => {
                    send::webhook(http, url, serde_json::to_string(event).unwrap_or_default()).await
                }
                None => Err("no HTTP client".into()),
            };
            failed.extend(self.outcome("webhook", sent));
        }
        failed
    }

    fn outcome(&self, channel: &str, result: Result<(), String>) -> Option<String> {
        match result {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                if self.log.first(channel, Instant::now()) {
                    tracing::warn!("notify: {channel} failed: {e} (failures logged once a minute)");
                }
                Some(format!("{channel}: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (tx, mut rx) = mpsc::channel(2);
        let queue = Queue { tx, stats: Arc::default(), log: Arc::new(OncePer::new(LOG_EVERY)) };
        let alice = normalize("alice@example.com").expect("valid");
        for _ in 0..5 {
            queue.push(Event::unlock(0, &alice, "mx1"));
        }
        assert_eq!(queue.stats().dropped.load(Ordering::Relaxed), 3);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
    }
}
