//! Notifications about refusals, suspects and locks: mail to the administrators (and to the
//! sender about its own caps and locks) through sendmail, and the event JSON to a webhook.
//!
//! The decision only pushes an [`Event`] ([`Queue::push`] never waits). Mail and webhook each
//! have their own bounded queue and worker task, so a dead webhook never holds a mail back (nor
//! the other way round); a full queue drops the event for that channel and counts it. Whether an
//! event happened at all (once per window across every server) was decided in Redis; how many
//! mails a day go out about one sender or domain is counted there too ([`MailBudget`]).
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
use crate::clock::Zone;
use crate::config::NotifySettings;
use crate::once::OncePer;
use crate::store::budget::MailBudget;

/// Events waiting for delivery on one channel; past this, new ones are dropped.
pub const QUEUE_LEN: usize = 1024;
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Counts for the metrics: each mail or webhook delivery sent or failed, each event dropped (a
/// full queue), each mail suppressed (`[notify] max_per_day`).
#[derive(Debug, Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub suppressed: AtomicU64,
}

/// Where decisions put their events: one queue per channel.
#[derive(Clone, Debug)]
pub struct Queue {
    lanes: Arc<[(&'static str, mpsc::Sender<Event>)]>,
    stats: Arc<Stats>,
    log: Arc<OncePer>,
}

impl Queue {
    /// Queues an event on every channel; a full channel drops it (and counts it).
    pub fn push(&self, event: Event) {
        for (channel, tx) in self.lanes.iter() {
            if tx.try_send(event.clone()).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if self.log.first(channel, Instant::now()) {
                    tracing::warn!(
                        "notify: {channel} queue full ({QUEUE_LEN}); events dropped (logged once a minute)"
                    );
                }
            }
        }
    }

    #[must_use]
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// A queue whose events are kept for the caller instead of being delivered (`replay`
    /// counts them); the caller drains the receiver after each decision.
    #[must_use]
    pub fn collecting() -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel::<Event>(QUEUE_LEN);
        let lanes: Arc<[(&'static str, mpsc::Sender<Event>)]> = Arc::from(vec![("replay", tx)]);
        (Self { lanes, stats: Arc::default(), log: Arc::new(OncePer::new(LOG_EVERY)) }, rx)
    }
}

/// Delivers events as configured.
pub struct Notifier {
    settings: NotifySettings,
    http: Option<reqwest::Client>,
    stats: Arc<Stats>,
    log: Arc<OncePer>,
    /// Counts the day's mails per sender or domain (none: no cap, as for the admin commands).
    budget: Option<(MailBudget, Zone)>,
    /// Where a hold event finds the websites of its local user (ISPConfig's `web_domain`).
    websites: Option<crate::config::DatabaseSettings>,
}

impl Notifier {
    #[must_use]
    pub fn new(settings: NotifySettings) -> Self {
        let http = settings.webhook.as_ref().and_then(|_| send::client());
        Self {
            settings,
            http,
            stats: Arc::default(),
            log: Arc::new(OncePer::new(LOG_EVERY)),
            budget: None,
            websites: None,
        }
    }

    /// Names the websites of a held local user, read from this database when the event is sent.
    #[must_use]
    pub fn with_websites(mut self, database: Option<crate::config::DatabaseSettings>) -> Self {
        self.websites = database;
        self
    }

    /// A hold event with the websites of its local user (off the request path, bounded by the
    /// database's timeout; without them when the database cannot say).
    async fn enriched(&self, mut event: Event) -> Event {
        if event.event == event::Kind::Hold
            && let Some(db) = &self.websites
            && let Some(name) = event.sender.strip_prefix(crate::sender::LOCAL_PREFIX)
        {
            let name = name.rsplit_once('@').map_or(name, |(n, _)| n);
            event.sites = crate::limits::websites::of(db, name).await.ok();
        }
        event
    }

    /// Caps the mails about one sender (or domain) at `[notify] max_per_day` a day, counted in
    /// `budget` by the local day of `zone`.
    #[must_use]
    pub fn with_budget(mut self, budget: MailBudget, zone: Zone) -> Self {
        self.budget = Some((budget, zone));
        self
    }

    #[must_use]
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Starts one worker task per configured channel; returns the queue decisions push onto.
    #[must_use]
    pub fn spawn(self) -> Queue {
        let me = Arc::new(self);
        let s = &me.settings;
        let mails = !s.admin.is_empty() || s.sender;
        let lanes: Vec<_> = [("mail", mails), ("webhook", s.webhook.is_some())]
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(channel, _)| {
                let (tx, mut rx) = mpsc::channel::<Event>(QUEUE_LEN);
                let worker = Arc::clone(&me);
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        let event = worker.enriched(event).await;
                        if channel == "mail" {
                            worker.mail(&event).await;
                        } else {
                            worker.post(&event).await;
                        }
                    }
                });
                (channel, tx)
            })
            .collect();
        Queue { lanes: lanes.into(), stats: Arc::clone(&me.stats), log: Arc::clone(&me.log) }
    }

    /// Sends one event everywhere it goes, mails then webhook; returns the failures (none: all
    /// delivered). For the admin commands, which deliver their own events.
    pub async fn deliver(&self, event: &Event) -> Vec<String> {
        let mut failed = self.mail(event).await;
        failed.extend(self.post(event).await);
        failed
    }

    /// The admins' mail and the sender's own, unless the day's mails about this sender (or
    /// domain) are used up; the last one allowed says so.
    async fn mail(&self, event: &Event) -> Vec<String> {
        let s = &self.settings;
        let mut failed = Vec::new();
        let admin = (!s.admin.is_empty()).then(|| mail::for_admin(event, &s.admin));
        let own = if s.sender { mail::for_sender(event) } else { None };
        if admin.is_none() && own.is_none() {
            return failed;
        }
        let mails = u64::from(admin.is_some()) + u64::from(own.is_some());
        let last = match self.allowance(event, mails).await {
            Allowance::Send => None,
            Allowance::Last(max) => Some(max),
            Allowance::Suppressed => return failed,
        };
        for mut m in admin.into_iter().chain(own) {
            if let Some(max) = last {
                m.body.push_str(&mail::last_note(&event.user, max));
            }
            let sent =
                send::sendmail(&s.sendmail, &s.from, &m.to, &mail::message(&m, &s.from, event.ts)).await;
            failed.extend(self.outcome("sendmail", sent));
        }
        failed
    }

    async fn post(&self, event: &Event) -> Vec<String> {
        let Some(url) = &self.settings.webhook else { return Vec::new() };
        let sent = match &self.http {
            Some(http) => send::webhook(http, url, serde_json::to_string(event).unwrap_or_default()).await,
            None => Err("no HTTP client".into()),
        };
        self.outcome("webhook", sent).into_iter().collect()
    }

    /// Whether this event's `mails` may go out today (`[notify] max_per_day` counts events about
    /// one sender or domain); a Redis fault sends them (a notification is never lost to a fault).
    async fn allowance(&self, event: &Event, mails: u64) -> Allowance {
        let max = self.settings.max_per_day;
        let Some((budget, zone)) = self.budget.as_ref().filter(|_| max > 0) else { return Allowance::Send };
        let at = chrono::DateTime::from_timestamp(event.ts, 0).unwrap_or_default();
        match budget.take(zone.moment(at).day(), &event.user).await {
            Ok(n) if n > u64::from(max) => {
                self.stats.suppressed.fetch_add(mails, Ordering::Relaxed);
                if self.log.first("suppressed", Instant::now()) {
                    tracing::warn!(
                        "notify: more than {max} mails today about {} (notify.max_per_day); further mails suppressed, counted in email_ratelimit_notifications_total{{result=\"suppressed\"}} (logged once a minute)",
                        event.user
                    );
                }
                Allowance::Suppressed
            }
            Ok(n) if n == u64::from(max) => Allowance::Last(max),
            Ok(_) => Allowance::Send,
            Err(e) => {
                if self.log.first("budget", Instant::now()) {
                    tracing::warn!(
                        "notify: cannot count today's mails ({e}); sending (logged once a minute)"
                    );
                }
                Allowance::Send
            }
        }
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

/// What the day's mail count allows.
enum Allowance {
    Send,
    /// The last mail today about this sender or domain (`max_per_day`): it says so.
    Last(u32),
    Suppressed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (tx, mut rx) = mpsc::channel(2);
        let queue = Queue {
            lanes: vec![("mail", tx)].into(),
            stats: Arc::default(),
            log: Arc::new(OncePer::new(LOG_EVERY)),
        };
        let alice = normalize("alice@example.com").expect("valid");
        for _ in 0..5 {
            queue.push(Event::unlock(0, &alice, "mx1"));
        }
        assert_eq!(queue.stats().dropped.load(Ordering::Relaxed), 3);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
    }
}
