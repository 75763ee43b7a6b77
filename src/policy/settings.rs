//! What a SIGHUP changes in the decision, as one value: the policy holds one snapshot and a
//! request loads it once, so a reload in flight is seen whole or not at all (never the new mode
//! with the old `[protect]` or `[replies]`).

use crate::config::{Config, LearnSettings, Mode, ProtectSettings, Replies};

/// The decision's reloadable settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    pub mode: Mode,
    /// With `mode = "log-only"`: enforce from this local date on (`--at-midnight`).
    pub enforce_from: Option<chrono::NaiveDate>,
    pub protect: ProtectSettings,
    pub replies: Replies,
    /// `[learn]`: with learning off, no allowance applies and no day is marked.
    pub learn: LearnSettings,
}

impl Settings {
    /// The defaults in `mode` (tests, benchmarks).
    #[must_use]
    pub fn with_mode(mode: Mode) -> Self {
        Self { mode, ..Self::default() }
    }

    /// The mode on the local date `day`: the configured one, or enforce once `enforce_from` has
    /// come.
    #[must_use]
    pub fn mode_on(&self, day: chrono::NaiveDate) -> Mode {
        match (self.mode, self.enforce_from) {
            (Mode::LogOnly, Some(from)) if day >= from => Mode::Enforce,
            (mode, _) => mode,
        }
    }
}

impl From<&Config> for Settings {
    fn from(config: &Config) -> Self {
        Self {
            mode: config.mode,
            enforce_from: config.enforce_from,
            protect: config.protect,
            replies: config.replies.clone(),
            learn: config.learn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_only_enforces_from_its_date() {
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 12, d).expect("date");
        let s = Settings { enforce_from: Some(day(8)), ..Settings::with_mode(Mode::LogOnly) };
        assert_eq!(
            (s.mode_on(day(7)), s.mode_on(day(8)), s.mode_on(day(9))),
            (Mode::LogOnly, Mode::Enforce, Mode::Enforce)
        );
        assert_eq!(Settings::with_mode(Mode::Enforce).mode_on(day(1)), Mode::Enforce);
        assert_eq!(Settings::with_mode(Mode::LogOnly).mode_on(day(1)), Mode::LogOnly);
    }
}
