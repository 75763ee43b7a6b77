//! Time as the counters see it: "now" from a [`Clock`] (the system's, or one a test controls)
//! and the local date and time in the configured [`Zone`]. What a date or window means is left
//! to `store` (keys) and `policy`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still where a test puts it.
#[derive(Debug)]
pub struct FixedClock(std::sync::Mutex<DateTime<Utc>>);

impl FixedClock {
    #[must_use]
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Names the file of [`FileClock`]; read only by `serve`, for the integration tests.
pub const TEST_CLOCK_ENV: &str = "EMAIL_RATELIMIT_TEST_CLOCK";

/// A clock the integration tests drive from outside the process: "now" is the unix time written
/// in a file, read at every call (the system clock when the file is missing or unreadable).
/// Only `serve` with `EMAIL_RATELIMIT_TEST_CLOCK` set uses it, and says so in its log.
#[derive(Debug)]
pub struct FileClock(std::path::PathBuf);

impl FileClock {
    #[must_use]
    pub fn new(path: std::path::PathBuf) -> Self {
        Self(path)
    }
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .unwrap_or_else(Utc::now)
    }
}

/// The system clock, or the test clock when `EMAIL_RATELIMIT_TEST_CLOCK` names a file (the
/// daemon and the admin commands alike). Returns the file too, so the daemon can say so.
#[must_use]
pub fn from_env() -> (std::sync::Arc<dyn Clock>, Option<std::path::PathBuf>) {
    match std::env::var_os(TEST_CLOCK_ENV).map(std::path::PathBuf::from) {
        Some(path) => (std::sync::Arc::new(FileClock::new(path.clone())), Some(path)),
        None => (std::sync::Arc::new(SystemClock), None),
    }
}

/// The zone that decides "today": the config's `timezone`, or the process's local zone (`TZ` if
/// set, else `/etc/localtime`). The daemon and the admin commands both use it, so they agree on
/// which counters are today's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    #[default]
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    /// Parses the config value: empty for the local zone, else an IANA name.
    ///
    /// # Errors
    /// When the name is not in the IANA database.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Ok(Self::Local);
        }
        name.parse::<chrono_tz::Tz>()
            .map(Self::Named)
            .map_err(|_| format!("{name:?} is not an IANA time zone name (like \"Europe/Berlin\")"))
    }

    /// The config value (empty for the local zone).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Local => "",
            Self::Named(tz) => tz.name(),
        }
    }

    /// The zone in force, by name, and where it came from: the config's name, else `TZ`, else
    /// `/etc/localtime`'s link into the zone database (`UTC` when there is none).
    #[must_use]
    pub fn resolved(&self) -> (String, &'static str) {
        if let Self::Named(tz) = self {
            return (tz.name().to_owned(), "timezone");
        }
        if let Ok(tz) = std::env::var("TZ")
            && !tz.is_empty()
        {
            return (tz.trim_start_matches(':').to_owned(), "TZ");
        }
        match std::fs::read_link("/etc/localtime") {
            Ok(target) => {
                let text = target.to_string_lossy().into_owned();
                let name = text.split_once("zoneinfo/").map_or(text.as_str(), |(_, n)| n).to_owned();
                (name, "/etc/localtime")
            }
            Err(_) => ("UTC".to_owned(), "no /etc/localtime"),
        }
    }

    /// An instant for people: local wall-clock time with its zone, `2026-12-02 23:10:05 CET`
    /// (the zone by its abbreviation when the zone database knows it, else its UTC offset). One
    /// way for every command's output.
    #[must_use]
    pub fn show(&self, at: DateTime<Utc>) -> String {
        let tz = match self {
            Self::Named(tz) => Some(*tz),
            Self::Local => self.resolved().0.parse::<chrono_tz::Tz>().ok(),
        };
        match tz {
            Some(tz) => tz.from_utc_datetime(&at.naive_utc()).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
            None => {
                chrono::Local.from_utc_datetime(&at.naive_utc()).format("%Y-%m-%d %H:%M:%S %:z").to_string()
            }
        }
    }

    /// [`Self::show`] of unix seconds (the number itself when out of range).
    #[must_use]
    pub fn show_unix(&self, ts: i64) -> String {
        DateTime::<Utc>::from_timestamp(ts, 0).map_or_else(|| ts.to_string(), |t| self.show(t))
    }

    /// The instant as local wall-clock time.
    #[must_use]
    pub fn local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Self::Local => chrono::Local.from_utc_datetime(&at.naive_utc()).naive_local(),
            Self::Named(tz) => tz.from_utc_datetime(&at.naive_utc()).naive_local(),
        }
    }

    /// The instant of a local wall-clock time: the earlier of two when a clock change repeats
    /// it, and for a time a change skips, the same time an hour later.
    #[must_use]
    pub fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let pick = |at: NaiveDateTime| match self {
            Self::Local => chrono::Local.from_local_datetime(&at).earliest().map(|t| t.with_timezone(&Utc)),
            Self::Named(tz) => tz.from_local_datetime(&at).earliest().map(|t| t.with_timezone(&Utc)),
        };
        pick(local).or_else(|| pick(local + chrono::TimeDelta::hours(1))).unwrap_or_else(|| local.and_utc())
    }

    /// The instant with its local date and time.
    #[must_use]
    pub fn moment(&self, at: DateTime<Utc>) -> Moment {
        Moment { unix: at.timestamp(), local: self.local(at) }
    }

    /// The local date after the one `at` falls on (`install.sh enforce --at-midnight`): calendar
    /// arithmetic on the local date, whatever the zone's offset or a DST change tonight.
    #[must_use]
    pub fn next_date(&self, at: DateTime<Utc>) -> NaiveDate {
        let today = self.moment(at).day();
        today.succ_opt().unwrap_or(today)
    }
}

/// One instant: unix seconds (for records) and local wall-clock time (for dates and windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub unix: i64,
    pub local: NaiveDateTime,
}

impl Moment {
    /// The local date: the day of the daily counters.
    #[must_use]
    pub fn day(&self) -> NaiveDate {
        self.local.date()
    }
}

/// The first day of the `days` local days before `today`.
#[must_use]
pub fn days_before(today: NaiveDate, days: u32) -> NaiveDate {
    today.checked_sub_days(chrono::Days::new(u64::from(days))).unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_next_local_date_east_and_west_of_utc_and_across_dst() {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).expect("time").with_timezone(&Utc);
        let date = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date");
        for (zone, now, next) in [
            ("Pacific/Kiritimati", "2026-12-07T10:30:00Z", "2026-12-09"), // UTC+14: the 8th already
            ("Pacific/Kiritimati", "2026-12-07T09:59:59Z", "2026-12-08"),
            ("Pacific/Auckland", "2026-12-07T11:00:00Z", "2026-12-09"), // UTC+13 in summer
            ("Pacific/Pago_Pago", "2026-12-08T10:00:00Z", "2026-12-08"), // UTC-11: still the 7th
            ("Europe/Berlin", "2026-03-28T23:30:00Z", "2026-03-30"),    // the spring-forward day
            ("Europe/Berlin", "2026-10-24T22:30:00Z", "2026-10-26"),    // the fall-back day
            ("UTC", "2026-12-31T23:59:59Z", "2027-01-01"),
        ] {
            let zone = Zone::parse(zone).expect("zone");
            assert_eq!(zone.next_date(at(now)), date(next), "{zone:?} at {now}");
        }
    }

    #[test]
    fn times_for_people_carry_their_zone() {
        use chrono::TimeZone;
        let berlin = Zone::parse("Europe/Berlin").expect("zone");
        let winter = Utc.with_ymd_and_hms(2026, 12, 2, 22, 10, 5).single().expect("valid");
        let summer = Utc.with_ymd_and_hms(2026, 7, 2, 22, 10, 5).single().expect("valid");
        assert_eq!(berlin.show(winter), "2026-12-02 23:10:05 CET");
        assert_eq!(berlin.show(summer), "2026-07-03 00:10:05 CEST");
        assert_eq!(
            Zone::parse("UTC").expect("zone").show_unix(winter.timestamp()),
            "2026-12-02 22:10:05 UTC"
        );
    }

    use super::*;

    #[test]
    fn the_zone_decides_the_day() {
        // 10:30 UTC is already tomorrow in Kiritimati (UTC+14) and still today in Pago Pago
        // (UTC-11).
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 30, 0).single().expect("valid");
        let day = |name: &str| Zone::parse(name).expect("valid").moment(at).day().to_string();
        assert_eq!(day("Pacific/Kiritimati"), "2026-11-23");
        assert_eq!(day("Pacific/Pago_Pago"), "2026-11-21");
        assert_eq!(day("UTC"), "2026-11-22");
        let m = Zone::parse("Europe/Berlin").expect("valid").moment(at);
        assert_eq!((m.unix, m.local.to_string()), (at.timestamp(), "2026-11-22 11:30:00".into()));
    }

    #[test]
    fn daylight_saving_moves_the_local_time_not_the_instant() {
        let berlin = Zone::parse("Europe/Berlin").expect("valid");
        let before = Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 0).single().expect("valid");
        let after = Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).single().expect("valid");
        assert_eq!(berlin.local(before).to_string(), "2026-03-29 01:59:00");
        assert_eq!(berlin.local(after).to_string(), "2026-03-29 03:00:00");
    }

    #[test]
    fn bad_names_are_refused_and_empty_is_local() {
        assert!(Zone::parse("Mars/Olympus_Mons").is_err());
        assert!(Zone::parse("+02:00").is_err());
        assert_eq!(Zone::parse(""), Ok(Zone::Local));
        assert_eq!(Zone::parse("Asia/Tokyo").map(|z| z.name()), Ok("Asia/Tokyo"));
    }

    #[test]
    fn a_file_clock_reads_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("now");
        let clock = FileClock::new(path.clone());
        assert!((clock.now() - Utc::now()).num_seconds().abs() < 5, "no file: the system clock");
        std::fs::write(&path, "1800000000\n").expect("write");
        assert_eq!(clock.now().timestamp(), 1_800_000_000);
    }

    #[test]
    fn a_fixed_clock_stays_where_it_is_put() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid");
        let c = FixedClock::new(t);
        assert_eq!(c.now(), t);
        c.set(t + chrono::Duration::hours(25));
        assert_eq!(c.now().to_rfc3339(), "2026-01-02T01:00:00+00:00");
    }
}
