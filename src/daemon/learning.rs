//! Learned allowances, off the request path: each local day's totals folded into the senders'
//! histories, and the allowances computed from them, at start, after every local midnight and
//! on SIGHUP (`nudge`). It runs on a thread of its own (the request path's runtime has one
//! thread, and a computation over 100,000 senders takes seconds); the same thread every day, so
//! its memory is reused. A fault keeps the allowances in force and is logged; the decisions
//! never wait on any of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::RedisSettings;
use crate::learn::Allowances;
use crate::learn::run::fold_and_learn;
use crate::policy::Policy;
use crate::store::client::RedisClient;
use crate::store::memory::MemoryStore;
use crate::store::{Store, StoreError};

/// How many days back a start folds what it missed: the top senders are kept 8 days.
const CATCH_UP_DAYS: u64 = 7;

/// How often the task looks whether the local day changed (the clock may be a test's).
const LOOK_EVERY: Duration = Duration::from_secs(60);

/// Starts the learning thread.
///
/// # Errors
/// When the thread or its runtime cannot be made.
pub(super) fn spawn(
    policy: Arc<Policy<Store>>,
    redis: RedisSettings,
    nudge: Arc<Notify>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("learning".into())
        .spawn(move || runtime.block_on(run(policy, redis, nudge, shutdown)))?;
    Ok(())
}

/// Runs until `shutdown`; `nudge` asks for a new computation (SIGHUP).
async fn run(
    policy: Arc<Policy<Store>>,
    redis: RedisSettings,
    nudge: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut done: Option<NaiveDate> = None;
    let mut asked = true;
    loop {
        let today = policy.moment().day();
        if asked || done != Some(today) {
            let learn = policy.settings().learn;
            if learn.enabled {
                let started = Instant::now();
                match learn_now(&policy, &redis, today).await {
                    Ok((senders, allowances)) => {
                        tracing::info!(
                            "learned allowances: {} mailbox(es) above their default, from the history of {senders} sender(s) ({} ms)",
                            allowances.len(),
                            started.elapsed().as_millis()
                        );
                        policy.set_allowances(allowances);
                        done = Some(today);
                    }
                    Err(e) => tracing::warn!("learned allowances not computed (the last ones stay): {e}"),
                }
            } else {
                policy.set_allowances(Allowances::default());
                done = Some(today);
            }
        }
        asked = tokio::select! {
            () = shutdown.cancelled() => return,
            () = nudge.notified() => true,
            () = tokio::time::sleep(LOOK_EVERY) => false,
        };
    }
}

/// Folds the days before `today` not folded yet (as far back as the top senders are kept) and
/// computes the allowances: the one learning run ([`fold_and_learn`]), on this daemon's store.
/// Returns how many senders have a history, and the allowances.
async fn learn_now(
    policy: &Policy<Store>,
    redis: &RedisSettings,
    today: NaiveDate,
) -> Result<(usize, Allowances), StoreError> {
    let settings = policy.settings().learn;
    let limits = policy.limits();
    let first = today.checked_sub_days(Days::new(CATCH_UP_DAYS)).unwrap_or(today);
    let expected = policy.allowances_count() + 1024;
    let run = match policy.store() {
        Store::Memory(memory) => {
            let mut memory: &MemoryStore = memory;
            fold_and_learn(&mut memory, first, today, &limits, &settings, expected).await?
        }
        Store::Redis(_) => {
            let mut store = RedisClient::open(redis).await?;
            fold_and_learn(&mut store, first, today, &limits, &settings, expected).await?
        }
    };
    for (day, n) in run.folded {
        if n > 0 {
            tracing::info!("history: {day} folded for {n} sender(s)");
        } else {
            tracing::debug!("history: {day} folded: nobody sent that day");
        }
    }
    Ok((run.senders, run.allowances))
}
