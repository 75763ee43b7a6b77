//! `[learn]`: learned allowances (DESIGN v3).

use super::raw::RawLearn;
use super::{ConfigError, LimitSettings, MAX_CAP, invalid};
use crate::network::Networks;
use crate::window::{Unit, Window};

/// `[learn]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnSettings {
    pub enabled: bool,
    /// History kept and used: local days, today excluded.
    pub days: u32,
    /// Days with mail needed before a mailbox has an allowance.
    pub min_days: u32,
    /// allowance = factor x the 95th percentile of its daily totals.
    pub factor: f64,
    /// Never above this (recipients a day).
    pub ceiling: u64,
    /// An allowance at most grows this many times from one day to the next.
    pub max_growth: f64,
    /// `known_networks`: an allowance applies only from the networks the mailbox sent from
    /// before (these prefix lengths); `None`: from anywhere.
    pub networks: Option<Networks>,
}

impl Default for LearnSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            days: 28,
            min_days: 7,
            factor: 3.0,
            ceiling: 2000,
            max_growth: 2.0,
            networks: None,
        }
    }
}

/// The most days of history kept: a year.
const MAX_DAYS: u64 = 366;

pub(super) fn validate_learn(raw: &RawLearn, limits: &LimitSettings) -> Result<LearnSettings, ConfigError> {
    let days = u32::try_from(raw.days)
        .ok()
        .filter(|d| (1..=MAX_DAYS).contains(&u64::from(*d)))
        .ok_or_else(|| invalid("learn.days", format!("{}: must be 1 to {MAX_DAYS}", raw.days)))?;
    let min_days = u32::try_from(raw.min_days).ok().filter(|d| (1..=days).contains(d)).ok_or_else(|| {
        invalid("learn.min_days", format!("{}: must be 1 to learn.days ({days})", raw.min_days))
    })?;
    if !(raw.factor.is_finite() && raw.factor > 0.0 && raw.factor <= 100.0) {
        return Err(invalid("learn.factor", format!("{}: must be above 0, at most 100", raw.factor)));
    }
    if !(raw.max_growth.is_finite() && (1.0..=100.0).contains(&raw.max_growth)) {
        return Err(invalid("learn.max_growth", format!("{}: must be 1 to 100", raw.max_growth)));
    }
    // The defaults a learned allowance starts from: the ceiling is above every one of them.
    let daily = |caps: &Option<Vec<crate::window::Rate>>| {
        caps.as_deref()?.iter().find(|r| (r.window, r.unit) == (Window::Day, Unit::Rcpt)).map(|r| r.limit)
    };
    let defaults = std::iter::once(("limits.default_mailbox", limits.default_mailbox)).chain(
        limits
            .domains
            .iter()
            .filter_map(|d| daily(&d.mailbox_caps).map(|n| ("limits.domain.mailbox_daily", n))),
    );
    if raw.enabled {
        for (key, default) in defaults {
            if raw.ceiling < default {
                return Err(invalid(
                    "learn.ceiling",
                    format!("{}: must be at least the defaults it raises ({key} = {default})", raw.ceiling),
                ));
            }
        }
    }
    if !(1..=MAX_CAP).contains(&raw.ceiling) {
        return Err(invalid("learn.ceiling", format!("{}: must be 1 to {MAX_CAP}", raw.ceiling)));
    }
    let prefix = |key: &'static str, value: u64, max: u8| {
        u8::try_from(value)
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| invalid(key, format!("{value}: must be 1 to {max}")))
    };
    let networks = Networks {
        v4: prefix("learn.ipv4_prefix", raw.ipv4_prefix, 32)?,
        v6: prefix("learn.ipv6_prefix", raw.ipv6_prefix, 128)?,
    };
    Ok(LearnSettings {
        enabled: raw.enabled,
        days,
        min_days,
        factor: raw.factor,
        ceiling: raw.ceiling,
        max_growth: raw.max_growth,
        networks: raw.known_networks.then_some(networks),
    })
}
