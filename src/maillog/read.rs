//! Reading logs: plain or gzip files (by their first bytes, not their names) or stdin, several
//! merged by time. Traditional stamps have no year: the last line of a file gets the year of the
//! file's modification time (stdin: today's), or the year before when its day comes later in the
//! year; earlier lines count back over each New Year the file crosses. `--year` moves every file
//! by the same number of years, so that the newest ends in that year. Local times are in the
//! config's time zone.

use std::io::{BufRead, BufReader};
use std::path::Path;

use chrono::{Datelike, NaiveDate};

use super::event;
use super::messages::{Joiner, Message};
use super::stamp::{self, Stamp};
use crate::clock::Zone;

/// One input: a name for messages and what to read.
pub struct Source {
    pub name: String,
    reader: Box<dyn BufRead>,
    /// The local date the input was last written on (its modification time; stdin: today).
    written: NaiveDate,
}

impl Source {
    /// A file (plain or gzip), or stdin for `-`; `today` is the date stdin is taken to end on.
    ///
    /// # Errors
    /// A file that cannot be opened or read.
    pub fn open(path: &Path, zone: &Zone, today: NaiveDate) -> std::io::Result<Self> {
        let name = path.display().to_string();
        if path.as_os_str() == "-" {
            let reader = Box::new(BufReader::new(std::io::stdin()));
            return Ok(Self { name, reader: unzipped(reader)?, written: today });
        }
        let file = std::fs::File::open(path)?;
        let written = file
            .metadata()
            .and_then(|m| m.modified())
            .map_or(today, |t| zone.moment(chrono::DateTime::<chrono::Utc>::from(t)).day());
        let reader = Box::new(BufReader::with_capacity(1 << 20, file));
        Ok(Self { name, reader: unzipped(reader)?, written })
    }

    /// Text held in memory (tests, benchmarks).
    #[must_use]
    pub fn text(name: &str, text: String, written: NaiveDate) -> Self {
        Self { name: name.to_owned(), reader: Box::new(std::io::Cursor::new(text.into_bytes())), written }
    }
}

/// The reader itself, or a gzip decoder over it when it starts with gzip's magic bytes.
fn unzipped(mut reader: Box<dyn BufRead>) -> std::io::Result<Box<dyn BufRead>> {
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(1 << 20, flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        reader
    })
}

/// What the inputs held.
#[derive(Debug, Default)]
pub struct Log {
    /// In the order of their first lines.
    pub messages: Vec<Message>,
    /// Every line read.
    pub lines: u64,
    /// Lines with a stamp, host and program in one of the styles read.
    pub understood: u64,
    /// Lines about a queued message that this reader follows.
    pub followed: u64,
}

/// A line kept for the merge: its time once known, and where it came from.
struct Kept {
    stamp: Stamp,
    /// New Years crossed before it in its file.
    shift: i32,
    at: i64,
    file: usize,
    text: String,
}

/// One input's lines among those kept, and what dates them.
struct Span {
    from: usize,
    to: usize,
    /// New Years crossed in the input.
    shifts: i32,
    /// The month and day of its last traditional stamp.
    last_local: Option<(u32, u32)>,
    written: NaiveDate,
}

impl Span {
    /// The year of the last line: the year the input was written in, or the year before when
    /// its last line's day comes later in the year than that.
    fn last_year(&self) -> i32 {
        let w = self.written;
        match self.last_local {
            Some((month, day)) if (month, day) > (w.month(), w.day()) => w.year() - 1,
            _ => w.year(),
        }
    }
}

/// Reads every source, merges their lines by time and joins them into messages. `year`
/// (`--year`): the year of the newest input's last line (the others keep their distance).
///
/// # Errors
/// An input that cannot be read.
pub fn read(sources: Vec<Source>, zone: &Zone, year: Option<i32>) -> std::io::Result<Log> {
    let mut log = Log::default();
    let mut kept: Vec<Kept> = Vec::new();
    let mut times = LocalTimes::new(*zone);
    let mut files = Vec::new();
    for (file, mut source) in sources.into_iter().enumerate() {
        let from = kept.len();
        let (mut shift, mut last_month) = (0i32, 0u32);
        let mut last_local = None;
        let mut buf = Vec::with_capacity(512);
        loop {
            buf.clear();
            if source.reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            log.lines += 1;
            let text = match std::str::from_utf8(&buf) {
                Ok(t) => t,
                Err(_) => &String::from_utf8_lossy(&buf),
            };
            let text = text.trim_end_matches(['\n', '\r']);
            let Some(head) = stamp::split(text) else { continue };
            log.understood += 1;
            if let Stamp::Local { month, day, .. } = head.stamp {
                // A drop of more than half a year is a New Year (a line a little out of order is
                // not).
                if last_month > month + 6 {
                    shift += 1;
                }
                last_month = month;
                last_local = Some((month, day));
            }
            if event::parse(head.program, head.message).is_none() {
                continue;
            }
            log.followed += 1;
            kept.push(Kept { stamp: head.stamp, shift, at: 0, file, text: text.to_owned() });
        }
        files.push(Span { from, to: kept.len(), shifts: shift, last_local, written: source.written });
    }
    // The year of each file's last line (and so of every line before it): from the day the file
    // was written; `--year` moves them all so that the newest is in that year.
    let newest = files.iter().filter(|f| f.last_local.is_some()).map(Span::last_year).max();
    let delta = year.zip(newest).map_or(0, |(year, newest)| year - newest);
    for f in &files {
        let last_year = f.last_year();
        for k in &mut kept[f.from..f.to] {
            k.at = match k.stamp {
                Stamp::Exact(at) => at,
                Stamp::Local { month, day, micros } => {
                    times.at(last_year + delta - (f.shifts - k.shift), month, day, micros)
                }
            };
        }
    }
    // Stable: lines of one time keep their order in their file.
    kept.sort_by_key(|k| (k.at, k.file));
    let mut joiner = Joiner::default();
    for k in &kept {
        let Some(head) = stamp::split(&k.text) else { continue };
        if let Some((qid, event)) = event::parse(head.program, head.message) {
            joiner.add(k.at, qid, &event);
        }
    }
    log.messages = joiner.finish();
    Ok(log)
}

/// Local wall-clock times to unix microseconds in one zone, the offset looked up once a minute
/// of local time (a log of a million lines spans few of them).
struct LocalTimes {
    zone: Zone,
    minute: i64,
    offset: i64,
}

impl LocalTimes {
    fn new(zone: Zone) -> Self {
        Self { zone, minute: i64::MIN, offset: 0 }
    }

    fn at(&mut self, year: i32, month: u32, day: u32, micros: i64) -> i64 {
        let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else { return 0 };
        let local = date.and_hms_opt(0, 0, 0).map_or(0, |m| m.and_utc().timestamp_micros()) + micros;
        let minute = local.div_euclid(60_000_000);
        if minute != self.minute {
            self.minute = minute;
            let wall = chrono::DateTime::from_timestamp_micros(minute * 60_000_000)
                .map(|t| t.naive_utc())
                .unwrap_or_default();
            self.offset = wall.and_utc().timestamp_micros() - self.zone.instant(wall).timestamp_micros();
        }
        local - self.offset
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn utc() -> Zone {
        Zone::Named(chrono_tz::UTC)
    }

    fn login(stamp: &str, qid: &str, user: &str) -> String {
        format!(
            "{stamp} mx postfix/smtpd[1]: {qid}: client=x[192.0.2.1], sasl_method=PLAIN, sasl_username={user}\n\
             {stamp} mx postfix/qmgr[2]: {qid}: from=<{user}>, size=10, nrcpt=1 (queue active)\n"
        )
    }

    fn secs(m: &Message) -> i64 {
        m.first / 1_000_000
    }

    fn unix(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).expect("valid").timestamp()
    }

    #[test]
    fn the_year_counts_back_over_a_new_year() {
        let text = login("Dec 31 23:59:58", "AAAAA1", "a") + &login("Jan  1 00:00:02", "AAAAA2", "b");
        let log =
            read(vec![Source::text("mail.log", text.clone(), date(2027, 1, 3))], &utc(), None).expect("read");
        let got: Vec<i64> = log.messages.iter().map(secs).collect();
        assert_eq!(got, [unix("2026-12-31T23:59:58Z"), unix("2027-01-01T00:00:02Z")]);
        // --year names the year of the last line.
        let log = read(vec![Source::text("-", text, date(2030, 6, 1))], &utc(), Some(2024)).expect("read");
        assert_eq!(secs(&log.messages[0]), unix("2023-12-31T23:59:58Z"));
        // A file written on Jan 2 whose last line is Dec 30: that December is the year before.
        let log = read(
            vec![Source::text("old", login("Dec 30 10:00:00", "AAAAA3", "c"), date(2027, 1, 2))],
            &utc(),
            None,
        )
        .expect("read");
        assert_eq!(secs(&log.messages[0]), unix("2026-12-30T10:00:00Z"));
    }

    #[test]
    fn local_times_are_in_the_configured_zone() {
        let berlin = Zone::Named(chrono_tz::Europe::Berlin);
        let log = read(
            vec![Source::text("m", login("Jul  1 12:00:00", "AAAAA1", "a"), date(2026, 7, 2))],
            &berlin,
            None,
        )
        .expect("read");
        assert_eq!(secs(&log.messages[0]), unix("2026-07-01T10:00:00Z"));
    }

    #[test]
    fn files_merge_by_time_gzip_is_read_and_other_lines_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let older = dir.path().join("mail.log.1.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(login("2026-12-06T10:00:00Z", "BBBBB1", "old").as_bytes()).expect("gzip");
        std::fs::write(&older, gz.finish().expect("gzip")).expect("write");
        let newer = dir.path().join("mail.log");
        let text = "-- Boot 123 --\n".to_owned()
            + &login("2026-12-07T10:00:00+00:00", "BBBBB2", "new")
            + "2026-12-07T10:00:01Z mx dovecot[9]: imap-login: Login: user=<new>\n";
        std::fs::write(&newer, text).expect("write");
        let today = date(2026, 12, 8);
        // Given newest first, as a shell glob gives them.
        let sources = vec![
            Source::open(&newer, &utc(), today).expect("open"),
            Source::open(&older, &utc(), today).expect("open"),
        ];
        let log = read(sources, &utc(), None).expect("read");
        let names: Vec<&str> = log.messages.iter().map(|m| m.sender.as_str()).collect();
        assert_eq!(names, ["old", "new"]);
        assert_eq!((log.lines, log.understood, log.followed), (6, 5, 4));
    }
}
