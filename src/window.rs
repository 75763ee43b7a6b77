//! Cap windows and rates: `1d` (the local calendar day) or a whole number of minutes below a day
//! that divides it (`1m` ... `12h`), aligned to local midnight; `"N/<window>"` rates. Pure: what
//! a window's counter is called is left to `store`, what a refusal says to `policy`.

use std::fmt;

use chrono::{NaiveDateTime, NaiveTime, Timelike};

/// Minutes in a day: a shorter window must divide it, so windows tile every day from midnight.
const DAY_MINUTES: u16 = 1440;

/// One window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The local calendar day (23 or 25 hours on DST days).
    Day,
    /// `n` minutes, `1 <= n < 1440`, `1440 % n == 0`.
    Minutes(u16),
}

impl Window {
    pub const HOUR: Self = Self::Minutes(60);

    /// Parses `1d`, `Nh` or `Nm`.
    ///
    /// # Errors
    /// A text saying why, for a config error naming its key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a window: use 1d, or minutes or hours that divide a day (1m 5m 15m 1h 2h ... 12h)"
            )
        };
        let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
        if digits.is_empty() || digits.starts_with('0') {
            return Err(bad());
        }
        let n: u32 = digits.parse().map_err(|_| bad())?;
        let minutes = match unit {
            "d" if n == 1 => return Ok(Self::Day),
            "h" => n.checked_mul(60).ok_or_else(bad)?,
            "m" => n,
            _ => return Err(bad()),
        };
        match u16::try_from(minutes) {
            Ok(m) if m < DAY_MINUTES && DAY_MINUTES.is_multiple_of(m) => Ok(Self::Minutes(m)),
            _ => Err(bad()),
        }
    }

    /// The window of `minutes` (1440: the day), if it is one.
    #[must_use]
    pub fn from_minutes(minutes: u32) -> Option<Self> {
        match u16::try_from(minutes) {
            Ok(DAY_MINUTES) => Some(Self::Day),
            Ok(m) if m > 0 && m < DAY_MINUTES && DAY_MINUTES.is_multiple_of(m) => Some(Self::Minutes(m)),
            _ => None,
        }
    }

    /// Length in minutes (a day counts 1440, its nominal length).
    #[must_use]
    pub fn minutes(self) -> u32 {
        match self {
            Self::Day => u32::from(DAY_MINUTES),
            Self::Minutes(m) => u32::from(m),
        }
    }

    /// The local start of the window holding `local`: midnight for a day, else the last
    /// multiple of the window since midnight. Wall-clock time: an hour that repeats at the end
    /// of DST falls into the same window both times.
    #[must_use]
    pub fn start(self, local: NaiveDateTime) -> NaiveDateTime {
        let since_midnight = local.hour() * 60 + local.minute();
        let start = since_midnight - since_midnight % self.minutes();
        let time = NaiveTime::from_hms_opt(start / 60, start % 60, 0).unwrap_or(NaiveTime::MIN);
        local.date().and_time(time)
    }

    /// How long a counter of this window lives: the window plus an hour (a day: about 26 h, past
    /// local midnight in every DST shift).
    #[must_use]
    pub const fn ttl_secs(self) -> u64 {
        match self {
            Self::Day => 26 * 3600,
            Self::Minutes(m) => m as u64 * 60 + 3600,
        }
    }

    /// How a reply spells it after "Your"/"Global": `daily`, `hourly`, or `None` for the
    /// "limit of N messages per ..." form.
    #[must_use]
    pub fn adjective(self) -> Option<&'static str> {
        match self {
            Self::Day => Some("daily"),
            Self::HOUR => Some("hourly"),
            Self::Minutes(_) => None,
        }
    }

    /// `per minute`, `per 15 minutes`, `per 2 hours`, `per day`.
    #[must_use]
    pub fn per(self) -> String {
        match self {
            Self::Day => "per day".into(),
            Self::Minutes(1) => "per minute".into(),
            Self::HOUR => "per hour".into(),
            Self::Minutes(m) if m.is_multiple_of(60) => format!("per {} hours", m / 60),
            Self::Minutes(m) => format!("per {m} minutes"),
        }
    }
}

/// `1d`, `1h`, `2h`, `15m`, `90m`: whole hours as hours (`60m` is `1h`, also in keys).
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Day => f.write_str("1d"),
            Self::Minutes(m) if m.is_multiple_of(60) => write!(f, "{}h", m / 60),
            Self::Minutes(m) => write!(f, "{m}m"),
        }
    }
}

/// What a cap counts: recipients (`"N/w"`, the contract's first kind) or messages (`"Nmsg/w"`:
/// 1 per accepted message, whatever its recipients). Recipient caps come first among the caps of
/// one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Unit {
    #[default]
    Rcpt,
    Msg,
}

impl Unit {
    /// `rcpt` or `msg`, as logs, metrics and records name it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Rcpt => "rcpt",
            Self::Msg => "msg",
        }
    }

    /// What one message of `n` recipients adds to a counter of this unit.
    #[must_use]
    pub fn count(self, n: u64) -> u64 {
        match self {
            Self::Rcpt => n,
            Self::Msg => 1,
        }
    }
}

/// "At most `limit` recipients (or messages) per `window`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub limit: u64,
    pub window: Window,
    pub unit: Unit,
}

impl Rate {
    /// A recipient cap.
    #[must_use]
    pub const fn rcpt(limit: u64, window: Window) -> Self {
        Self { limit, window, unit: Unit::Rcpt }
    }

    /// Parses `"N/<window>"` (recipients) or `"Nmsg/<window>"` (messages), `1 <= N <= max`.
    ///
    /// # Errors
    /// A text saying why.
    pub fn parse(text: &str, max: u64) -> Result<Self, String> {
        if text.contains(char::is_whitespace) && !text.trim().is_empty() {
            let joined: String = text.split_whitespace().collect();
            return Err(format!("{text:?}: no spaces in a cap: write it \"{joined}\""));
        }
        let (n, w) = text.split_once('/').ok_or_else(|| {
            format!("{text:?} is not a cap: write it \"N/<window>\" or \"Nmsg/<window>\", like \"20/1h\"")
        })?;
        let (n, unit) = n.strip_suffix("msg").map_or((n, Unit::Rcpt), |n| (n, Unit::Msg));
        let digits = n.trim_end_matches(|c: char| !c.is_ascii_digit());
        if !digits.is_empty() && digits.len() < n.len() {
            // `10msgs/1h`, `10rcpt/1h`: a unit word the grammar does not have.
            return Err(format!(
                "{text:?}: {:?} is not a unit: write \"{digits}msg/{w}\" for a cap on messages, or \"{digits}/{w}\" for one on recipients",
                &n[digits.len()..]
            ));
        }
        let limit: u64 = n
            .parse()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| format!("{text:?}: the number must be 1 to {max}"))?;
        Ok(Self { limit, window: Window::parse(w)?, unit })
    }

    /// The raise grammar (`raise`, `erl:raise:<email>`, the daemon, `status`): caps separated by
    /// white space, at least one (`500/1d 100/1h 40msg/1h`), each as [`Self::parse`] reads it.
    /// Two caps over one window are both kept: the stricter binds, as the daemon applies them.
    ///
    /// # Errors
    /// A text saying why.
    pub fn parse_list(text: &str, max: u64) -> Result<Vec<Self>, String> {
        let rates = text.split_whitespace().map(|t| Self::parse(t, max)).collect::<Result<Vec<_>, _>>()?;
        if rates.is_empty() {
            return Err("give at least one cap, like 500/1d".into());
        }
        Ok(rates)
    }

    /// `rates` in the raise grammar, as [`Self::parse_list`] reads them back (`500/1d 100/1h`).
    #[must_use]
    pub fn list(rates: &[Self]) -> String {
        rates.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
    }

    /// The order caps are checked in: longer windows first, recipients before messages.
    #[must_use]
    pub fn order(window: Window, unit: Unit) -> (std::cmp::Reverse<u32>, Unit) {
        (std::cmp::Reverse(window.minutes()), unit)
    }
}

/// The strictest cap per window and unit of `rates` (the smallest limit), in checking order
/// ([`Rate::order`]): what a sender is held to when several sources cap it over the same window.
#[must_use]
pub fn strictest(rates: impl IntoIterator<Item = Rate>) -> Vec<Rate> {
    let mut out: Vec<Rate> = Vec::new();
    for r in rates {
        match out.iter_mut().find(|o| o.window == r.window && o.unit == r.unit) {
            Some(o) => o.limit = o.limit.min(r.limit),
            None => out.push(r),
        }
    }
    out.sort_by_key(|r| Rate::order(r.window, r.unit));
    out
}

/// `20/1h`, `40msg/1h`.
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.unit == Unit::Msg { "msg" } else { "" };
        write!(f, "{}{unit}/{}", self.limit, self.window)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::clock::Zone;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("valid")
    }

    #[test]
    fn a_list_of_caps_is_one_grammar() {
        assert_eq!(
            Rate::parse_list("500/1d  100/1h\t40msg/1h", 1000),
            Ok(vec![
                Rate::rcpt(500, Window::Day),
                Rate::rcpt(100, Window::HOUR),
                Rate { limit: 40, window: Window::HOUR, unit: Unit::Msg }
            ])
        );
        assert_eq!(
            Rate::parse_list("500/1d 600/1d", 1000),
            Ok(vec![Rate::rcpt(500, Window::Day), Rate::rcpt(600, Window::Day)]),
            "written by hand: both kept, the stricter binds"
        );
        assert_eq!(Rate::parse_list(" ", 1000), Err("give at least one cap, like 500/1d".into()));
        assert!(Rate::parse_list("500/1d lots", 1000).is_err());
        assert!(Rate::parse_list("5000/1d", 1000).is_err());
    }

    #[test]
    fn parses_and_names_windows() {
        for (text, name) in [
            ("1d", "1d"),
            ("1h", "1h"),
            ("60m", "1h"),
            ("2h", "2h"),
            ("12h", "12h"),
            ("120m", "2h"),
            ("1m", "1m"),
            ("5m", "5m"),
            ("8m", "8m"),
            ("15m", "15m"),
            ("45m", "45m"),
            ("90m", "90m"),
            ("720m", "12h"),
        ] {
            assert_eq!(Window::parse(text).map(|w| w.to_string()), Ok(name.to_owned()), "{text}");
        }
        for bad in [
            "7m", "25h", "24h", "1440m", "0m", "0h", "2d", "abc", "", "h", "1", "-1h", "01h", "1.5h", "1H",
            " 1h", "5760m",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parses_rates() {
        assert_eq!(Rate::parse("20/1h", 1000), Ok(Rate::rcpt(20, Window::HOUR)));
        assert_eq!(Rate::parse("500/1d", 1000).map(|r| r.to_string()), Ok("500/1d".into()));
        assert_eq!(
            Rate::parse("40msg/1h", 1000),
            Ok(Rate { limit: 40, window: Window::HOUR, unit: Unit::Msg })
        );
        assert_eq!(Rate::parse("300msg/1d", 1000).map(|r| r.to_string()), Ok("300msg/1d".into()));
        for bad in [
            "0/1h",
            "20",
            "20/7m",
            "x/1h",
            "1001/1h",
            "-1/1h",
            "20/1h/2",
            "/1h",
            "msg/1h",
            "0msg/1h",
            "40 msg/1h",
            "40MSG/1h",
            "40msgs/1h",
            "40rcpt/1h",
            "1001msg/1h",
        ] {
            assert!(Rate::parse(bad, 1000).is_err(), "{bad:?} accepted");
        }
        // Issue 36: the commonest mistakes are named.
        for (bad, said) in [
            ("20 / 1h", "\"20 / 1h\": no spaces in a cap: write it \"20/1h\""),
            ("40 msg/1h", "\"40 msg/1h\": no spaces in a cap: write it \"40msg/1h\""),
            (
                "10msgs/1h",
                "\"10msgs/1h\": \"msgs\" is not a unit: write \"10msg/1h\" for a cap on messages, or \"10/1h\" for one on recipients",
            ),
            (
                "40rcpt/1h",
                "\"40rcpt/1h\": \"rcpt\" is not a unit: write \"40msg/1h\" for a cap on messages, or \"40/1h\" for one on recipients",
            ),
            ("1001/1h", "\"1001/1h\": the number must be 1 to 1000"),
        ] {
            assert_eq!(Rate::parse(bad, 1000), Err(said.to_owned()), "{bad:?}");
        }
    }

    #[test]
    fn the_strictest_cap_per_window_and_unit_in_checking_order() {
        let r = |t: &str| Rate::parse(t, 1000).expect("valid");
        let kept = strictest(["40msg/1h", "20/1h", "30/1h", "10msg/1h", "100/1d", "5msg/15m"].map(r));
        let texts: Vec<String> = kept.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["100/1d", "20/1h", "10msg/1h", "5msg/15m"]);
    }

    #[test]
    fn windows_are_aligned_to_local_midnight() {
        let t = at("2026-11-22 13:47:59");
        assert_eq!(Window::Day.start(t), at("2026-11-22 00:00:00"));
        assert_eq!(Window::HOUR.start(t), at("2026-11-22 13:00:00"));
        assert_eq!(Window::Minutes(15).start(t), at("2026-11-22 13:45:00"));
        assert_eq!(Window::Minutes(1).start(t), at("2026-11-22 13:47:00"));
        assert_eq!(Window::Minutes(90).start(t), at("2026-11-22 13:30:00"));
        assert_eq!(Window::Minutes(8 * 60).start(t), at("2026-11-22 08:00:00"));
        // The last window of the day ends at midnight; the next one starts the new day.
        assert_eq!(Window::Minutes(45).start(at("2026-11-22 23:59:59")), at("2026-11-22 23:15:00"));
        assert_eq!(Window::Minutes(45).start(at("2026-11-23 00:00:00")), at("2026-11-23 00:00:00"));
    }

    #[test]
    fn windows_follow_the_local_clock_across_dst() {
        let berlin = Zone::parse("Europe/Berlin").expect("zone");
        let local = |h: u32, m: u32, day: u32, month: u32| {
            berlin.local(Utc.with_ymd_and_hms(2026, month, day, h, m, 0).single().expect("valid"))
        };
        // Spring: 02:00 -> 03:00; the skipped hour has no window, 01:xx and 03:xx are next to each other.
        let before = Window::HOUR.start(local(0, 30, 29, 3));
        let after = Window::HOUR.start(local(1, 30, 29, 3));
        assert_eq!((before.hour(), after.hour()), (1, 3));
        // Autumn: 02:00-03:00 happens twice; both fall into the same window (one key).
        let first = Window::HOUR.start(local(0, 30, 25, 10));
        let second = Window::HOUR.start(local(1, 30, 25, 10));
        assert_eq!(first, second);
        assert_eq!(
            first,
            NaiveDate::from_ymd_opt(2026, 10, 25).expect("date").and_hms_opt(2, 0, 0).expect("time")
        );
    }

    #[test]
    fn spells_windows_for_replies_and_sets_ttls() {
        let spell = |t: &str| {
            let w = Window::parse(t).expect("valid");
            (w.adjective(), w.per())
        };
        assert_eq!(spell("1d"), (Some("daily"), "per day".to_owned()));
        assert_eq!(spell("1h"), (Some("hourly"), "per hour".to_owned()));
        assert_eq!(spell("1m"), (None, "per minute".to_owned()));
        assert_eq!(spell("15m"), (None, "per 15 minutes".to_owned()));
        assert_eq!(spell("2h"), (None, "per 2 hours".to_owned()));
        assert_eq!(spell("90m"), (None, "per 90 minutes".to_owned()));
        assert_eq!(Window::Minutes(15).ttl_secs(), 15 * 60 + 3600);
        assert_eq!(Window::HOUR.ttl_secs(), 2 * 3600);
        assert_eq!(Window::Day.ttl_secs(), 26 * 3600);
    }
}
