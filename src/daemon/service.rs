//! The policy as the listeners use it: the policy socket's [`Handler`] and the milter's
//! [`milter::Website`]. Each decision is timed and recorded in the metrics here, from the
//! [`Decision`]; `replay` decides through the same policy without them.

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::Metrics;
use crate::milter;
use crate::policy::{Decision, Policy};
use crate::protocol::{Reply, Request};
use crate::server::Handler;
use crate::store::CounterStore;

pub struct Service<S> {
    pub policy: Arc<Policy<S>>,
    pub metrics: Option<Arc<Metrics>>,
}

impl<S: CounterStore> Service<S> {
    /// Decides, and records the outcome, its time and what was counted (a dry run is not
    /// recorded: it changed nothing).
    async fn decide(&self, req: &Request) -> Decision {
        let started = Instant::now();
        let decision = self.policy.decide(req).await;
        if let Some(m) = &self.metrics
            && !req.dry_run
        {
            m.decided(&decision.outcome, started.elapsed());
            if decision.counted > 0 {
                m.counted(decision.counted);
            }
        }
        decision
    }
}

impl<S: CounterStore> Handler for Service<S> {
    async fn handle(&self, req: &Request) -> Reply {
        self.decide(req).await.reply
    }
}

impl<S: CounterStore> milter::Website for Service<S> {
    async fn decide(&self, req: &Request) -> milter::Verdict {
        let decision = self.decide(req).await;
        milter::Verdict::of(&decision.reply.action, decision.outcome.locked())
    }

    async fn held(&self, name: &str, queue_id: &str, why: milter::HeldFor) {
        self.policy.record_held(name, queue_id, why).await;
    }
}
