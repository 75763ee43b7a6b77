//! A log line's head: its time stamp, host and program (`Dec 16 02:27:01 mx1 postfix/smtpd[123]:`),
//! in each style syslog daemons and `journalctl` write: traditional (`Dec 16 02:27:01`, `Dec  6`),
//! with microseconds (`short-precise`), RFC 3339 (rsyslog: `2026-12-16T02:27:01.123456+01:00`)
//! and ISO 8601 with a bare offset (`short-iso`: `2026-12-16T02:27:01+0100`).

/// When a line was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// An instant: unix microseconds (the stamp has its offset).
    Exact(i64),
    /// Local wall-clock time without a year (traditional stamps): the reader gives it its year
    /// and the config's time zone.
    Local { month: u32, day: u32, micros: i64 },
}

/// A line split into its stamp, program (`postfix/submission/smtpd`) and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    pub stamp: Stamp,
    pub program: &'a str,
    pub message: &'a str,
}

const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// Splits a line; `None` when its head is none of the styles (a `-- Boot ... --` line of
/// journalctl, a line cut short).
#[must_use]
pub fn split(line: &str) -> Option<Head<'_>> {
    let bytes = line.as_bytes();
    let (stamp, rest) = if bytes.first()?.is_ascii_digit() { iso(line)? } else { traditional(line)? };
    // host, then `program[pid]: message` (or `program: message`).
    let rest = rest.trim_start_matches(' ');
    let (_host, rest) = rest.split_once(' ')?;
    let (tag, message) = rest.split_once(": ")?;
    let program = tag.split_once('[').map_or(tag, |(name, _)| name);
    Some(Head { stamp, program, message })
}

/// `Dec 16 02:27:01[.uuuuuu] ` (the day may be space-padded: `Dec  6`).
fn traditional(line: &str) -> Option<(Stamp, &str)> {
    let b = line.as_bytes();
    let month = MONTHS.iter().position(|m| b.get(..3) == Some(&m[..]))?;
    let mut i = 3;
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let day_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let day: u32 = line.get(day_start..i)?.parse().ok()?;
    if b.get(i) != Some(&b' ') || !(1..=31).contains(&day) {
        return None;
    }
    let (micros, end) = clock(b, i + 1)?;
    let month = u32::try_from(month).ok()? + 1;
    Some((Stamp::Local { month, day, micros }, line.get(end..)?))
}

/// `HH:MM:SS[.fraction]` at `at`: microseconds of the day, and where it ends.
fn clock(b: &[u8], at: usize) -> Option<(i64, usize)> {
    let two = |i: usize| -> Option<i64> {
        let (h, l) = (b.get(i)?, b.get(i + 1)?);
        (h.is_ascii_digit() && l.is_ascii_digit()).then(|| i64::from((h - b'0') * 10 + (l - b'0')))
    };
    let (h, m, s) = (two(at)?, two(at + 3)?, two(at + 6)?);
    if b.get(at + 2) != Some(&b':') || b.get(at + 5) != Some(&b':') || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut end = at + 8;
    let mut micros = 0i64;
    if b.get(end) == Some(&b'.') {
        end += 1;
        let mut scale = 100_000i64;
        while let Some(d) = b.get(end).filter(|d| d.is_ascii_digit()) {
            micros += i64::from(d - b'0') * scale;
            scale /= 10;
            end += 1;
        }
    }
    Some((((h * 60 + m) * 60 + s) * 1_000_000 + micros, end))
}

/// `2026-12-16T02:27:01[.fraction](Z|+01:00|+0100)`.
fn iso(line: &str) -> Option<(Stamp, &str)> {
    let b = line.as_bytes();
    let num = |from: usize, to: usize| line.get(from..to)?.parse::<i32>().ok();
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b' ')) {
        return None;
    }
    let (micros, mut end) = clock(b, 11)?;
    let offset_secs = match b.get(end)? {
        b'Z' => {
            end += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let h = num(end + 1, end + 3)?;
            let colon = usize::from(b.get(end + 3) == Some(&b':'));
            let m = num(end + 3 + colon, end + 5 + colon)?;
            end += 5 + colon;
            let secs = h * 3600 + m * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)?;
    let midnight = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros();
    let at = midnight + micros - i64::from(offset_secs) * 1_000_000;
    Some((Stamp::Exact(at), line.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REST: &str = " mx1 postfix/submission/smtpd[123]: 4Q: client=x[192.0.2.1]";

    fn exact(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).expect("valid").timestamp_micros()
    }

    #[test]
    fn every_style_of_stamp() {
        let local = |month, day, h: i64, m: i64, s: i64, us: i64| Stamp::Local {
            month,
            day,
            micros: ((h * 60 + m) * 60 + s) * 1_000_000 + us,
        };
        for (head, stamp) in [
            ("Dec 16 02:27:01", local(12, 16, 2, 27, 1, 0)),
            ("Dec  6 02:27:01", local(12, 6, 2, 27, 1, 0)),
            ("Jan 06 23:59:59", local(1, 6, 23, 59, 59, 0)),
            ("Dec 16 02:27:01.123456", local(12, 16, 2, 27, 1, 123_456)),
            ("2026-12-16T02:27:01.5+01:00", Stamp::Exact(exact("2026-12-16T01:27:01.5Z"))),
            ("2026-12-16T02:27:01Z", Stamp::Exact(exact("2026-12-16T02:27:01Z"))),
            ("2026-12-16T02:27:01+0100", Stamp::Exact(exact("2026-12-16T01:27:01Z"))),
            ("2026-12-16T02:27:01.000001-0530", Stamp::Exact(exact("2026-12-16T07:57:01.000001Z"))),
        ] {
            let line = format!("{head}{REST}");
            let got = split(&line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(got.stamp, stamp, "{head}");
            assert_eq!(got.program, "postfix/submission/smtpd");
            assert_eq!(got.message, "4Q: client=x[192.0.2.1]");
        }
    }

    #[test]
    fn heads_that_are_none_of_them() {
        for line in [
            "",
            "-- Boot 1f2e... --",
            "-- No entries --",
            "Foo 16 02:27:01 mx1 postfix/smtpd[1]: x",
            "Dec 32 02:27:01 mx1 postfix/smtpd[1]: x",
            "Dec 16 24:27:01 mx1 postfix/smtpd[1]: x",
            "Dec 16 02:27 mx1 postfix/smtpd[1]: x",
            "2026-13-16T02:27:01Z mx1 postfix/smtpd[1]: x",
            "2026-12-16T02:27:01 mx1 postfix/smtpd[1]: x",
            "Dec 16 02:27:01 mx1",
        ] {
            assert_eq!(split(line), None, "{line:?}");
        }
        let kernel = split("Dec 16 02:27:01 mx1 kernel: [1.2] eth0 up").expect("a head");
        assert_eq!((kernel.program, kernel.message), ("kernel", "[1.2] eth0 up"));
    }
}
