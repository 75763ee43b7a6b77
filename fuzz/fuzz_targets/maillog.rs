//! Fuzzes the reader of Postfix's log (`replay --input maillog`): arbitrary bytes, as lines and
//! as a whole log read, merged and joined into messages, must never panic; every line is counted,
//! and never more are understood than read.
#![no_main]

use email_ratelimit::clock::Zone;
use email_ratelimit::maillog::{Source, event, read, stamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    for line in text.lines() {
        if let Some(head) = stamp::split(line) {
            let _ = event::parse(head.program, head.message);
        }
    }
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 8).unwrap_or_default();
    let lines = text.lines().count() as u64;
    let zone = Zone::Named(chrono_tz::Europe::Berlin);
    if let Ok(log) = read(vec![Source::text("fuzz", text, today)], &zone, None) {
        assert_eq!(log.lines, lines, "every line counted");
        assert!(log.understood <= log.lines && log.followed <= log.understood);
    }
});
