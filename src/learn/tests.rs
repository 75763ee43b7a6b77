//! The learning rule over many days, with dates the test chooses (no clock, no sleeping).

use super::*;
use chrono::Days;

use crate::network::Networks;
use crate::store::Seen;

fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid").checked_add_days(Days::new(n)).expect("valid")
}

/// A history of `totals[i]` recipients on day i (0: no mail).
fn history(totals: &[u64]) -> History {
    let mut h = History::default();
    for (i, n) in totals.iter().enumerate() {
        if *n > 0 {
            h.totals.insert(day(i as u64), *n);
        }
    }
    h
}

fn on(s: &LearnSettings) -> LearnSettings {
    LearnSettings { enabled: true, ..*s }
}

#[test]
fn no_history_or_too_few_days_is_exactly_the_default() {
    let s = on(&LearnSettings::default());
    assert_eq!(allowance(&History::default(), day(40), 50, &s), None);
    // 6 days with mail: below min_days = 7.
    assert_eq!(allowance(&history(&[100, 100, 100, 100, 100, 100]), day(6), 50, &s), None);
    // The 7th day with mail: an allowance, first at most twice the default (max_growth).
    let h = history(&[100; 7]);
    assert_eq!(allowance(&h, day(7), 50, &s), Some(Learned { limit: 100, days: 7, p95: 100 }));
}

#[test]
fn the_allowance_is_factor_times_the_95th_percentile_growing_at_most_twice_a_day() {
    let s = on(&LearnSettings::default());
    // 28 days of 100 recipients: 3 x 100 = 300, reached by doubling from 50: 100, 200, 300.
    let h = history(&[100; 28]);
    let seen: Vec<Option<u64>> = (7..11).map(|d| allowance(&h, day(d), 50, &s).map(|l| l.limit)).collect();
    assert_eq!(seen, [Some(100), Some(200), Some(300), Some(300)]);
    // Nearest rank: 20 values 1..=20, the 95th percentile is the 19th (19).
    let h = history(&(1..=20).collect::<Vec<_>>());
    let l = allowance(&h, day(20), 1, &LearnSettings { max_growth: 100.0, ..s }).expect("learned");
    assert_eq!((l.p95, l.days, l.limit), (19, 20, 57));
}

#[test]
fn never_below_the_default_never_above_the_ceiling() {
    let s = on(&LearnSettings { ceiling: 500, max_growth: 100.0, ..LearnSettings::default() });
    // A quiet sender: 3 x 5 = 15 is below the default of 50: no allowance at all.
    assert_eq!(allowance(&history(&[5; 28]), day(28), 50, &s), None);
    // A very busy one: 3 x 1000 is clamped to the ceiling.
    assert_eq!(allowance(&history(&[1000; 28]), day(28), 50, &s).map(|l| l.limit), Some(500));
    // A default above the ceiling wins over it (the ceiling never lowers a cap).
    assert_eq!(allowance(&history(&[1000; 28]), day(28), 800, &s), None);
}

#[test]
fn excluded_days_earn_nothing_a_sender_at_its_cap_stays_there() {
    let s = on(&LearnSettings::default());
    // A thief that hammers its cap every day: every day refused by its own cap, so excluded.
    let mut h = history(&[50; 28]);
    h.excluded.extend((0..28).map(day));
    assert_eq!(allowance(&h, day(28), 50, &s), None, "no ratchet");
    // One day in 28 is above the 95th percentile anyway; two burst days lift it, unless they
    // are excluded (the sender was refused, a suspect or locked on them).
    let mut totals = vec![40u64; 28];
    totals[20] = 5000;
    assert_eq!(allowance(&history(&totals), day(28), 50, &s).map(|l| l.p95), Some(40));
    totals[21] = 5000;
    let mut h = history(&totals);
    assert_eq!(allowance(&h, day(28), 50, &s).map(|l| l.p95), Some(5000), "counted: it would");
    h.excluded.extend([day(20), day(21)]);
    assert_eq!(allowance(&h, day(28), 50, &s).map(|l| (l.p95, l.limit)), Some((40, 120)));
}

#[test]
fn a_sudden_jump_takes_days_and_old_days_leave_the_window() {
    let s = on(&LearnSettings::default());
    // 20 quiet days, then 8 days of 400: the percentile jumps, the allowance only doubles a day.
    let mut totals = vec![20u64; 20];
    totals.extend([400; 8]);
    let h = history(&totals);
    let seen: Vec<u64> = (20..29).map(|d| allowance(&h, day(d), 50, &s).map_or(50, |l| l.limit)).collect();
    // Days 20 and 21: the 95th percentile is still 20 (one 400 in 21 days is above it) -> 60.
    // From day 22: 400 -> 1200, reached by doubling.
    assert_eq!(seen, [60, 60, 120, 240, 480, 960, 1200, 1200, 1200]);
    // 28 days later the busy days have left the window; with no mail at all, no allowance.
    assert_eq!(allowance(&h, day(28 + 28), 50, &s), None);
}

#[test]
fn history_fields_round_trip_and_stale_ones_are_named() {
    let h = History::from_fields([
        ("2026-01-05", "12"),
        ("x:2026-01-06", "1"),
        ("2026-01-06", "300"),
        ("junk", "1"),
        ("2026-01-07", "not a number"),
    ]);
    assert_eq!(h.totals.len(), 2);
    assert!(h.excluded.contains(&day(5)));
    let mut stale = h.stale_fields(day(34), 28);
    stale.sort();
    assert_eq!(stale, ["2026-01-05", "2026-01-06", "x:2026-01-06"]);
    assert!(h.stale_fields(day(32), 28).is_empty());
}

#[test]
fn the_table_finds_each_learned_mailbox_and_only_those() {
    let mb = |s: &str| crate::sender::normalize(s).expect("valid");
    let mut b = table::AllowancesBuilder::expecting(2, None);
    b.extend((0..1000u64).map(|i| table::Earned::new(&mb(&format!("u{i}@x.org")), 100 + i, [])));
    b.extend([table::Earned::new(&mb("u7@x.org"), 107, [])]); // met twice (a scan page repeated)
    let t = b.build();
    assert_eq!(t.len(), 1000);
    assert_eq!(t.get(&mb("u7@x.org"), "192.0.2.1"), Some(107));
    assert_eq!(t.get(&mb("U999@X.org"), "192.0.2.1"), Some(1099));
    assert_eq!(t.get(&mb("u1000@x.org"), "192.0.2.1"), None);
    assert!(Allowances::default().get(&mb("u1@x.org"), "192.0.2.1").is_none());
}

#[test]
fn networks_are_prefixes_of_the_client_address() {
    let n = Networks::default();
    assert_eq!(n.of("192.0.2.77").as_deref(), Some("192.0.2.0/24"));
    assert_eq!(n.of("::ffff:192.0.2.77").as_deref(), Some("192.0.2.0/24"), "IPv4-mapped");
    assert_eq!(n.of("2001:db8:1:2::9").as_deref(), Some("2001:db8:1::/48"));
    assert_eq!(n.of("127.0.0.1").as_deref(), Some("127.0.0.0/24"));
    assert_eq!(n.of("unknown"), None);
    assert_eq!(n.of(""), None);
    let wide = Networks { v4: 16, v6: 64 };
    assert_eq!(wide.of("100.64.200.3").as_deref(), Some("100.64.0.0/16"));
    assert_eq!(wide.of("2001:db8:1:2::9").as_deref(), Some("2001:db8:1:2::/64"));
    let whole = Networks { v4: 32, v6: 128 };
    assert_eq!(whole.of("192.0.2.77").as_deref(), Some("192.0.2.77/32"));
}

#[test]
fn a_network_is_known_when_used_on_an_earlier_day_that_counts() {
    let (first, last) = (day(2).to_string(), day(9).to_string());
    let seen = |a: &str, b: &str| format!("{a} {b}");
    let h = History::from_fields([
        ("n:192.0.2.0/24", seen(&first, &last).as_str()),
        // Met only on day 5, which was excluded (a theft): never known.
        ("n:203.0.113.0/24", seen(&day(5).to_string(), &day(5).to_string()).as_str()),
        ("x:2026-01-06", "1"),
        // First met on the excluded day, used again on day 8: known from the day after.
        ("n:198.51.100.0/24", seen(&day(5).to_string(), &day(8).to_string()).as_str()),
        // Met today only: known from tomorrow.
        ("n:100.64.0.0/16", seen(&day(10).to_string(), &day(10).to_string()).as_str()),
        ("n:bad", "junk"),
    ]);
    assert_eq!(h.networks.len(), 4, "a value that does not read is ignored");
    let known = |today: u64| h.known_networks(day(today), 28).collect::<Vec<_>>();
    assert_eq!(known(10), ["192.0.2.0/24", "198.51.100.0/24"]);
    assert_eq!(known(11), ["100.64.0.0/16", "192.0.2.0/24", "198.51.100.0/24"]);
    // Not used in the last 28 days: forgotten, and pruned.
    assert_eq!(known(38), ["100.64.0.0/16"]);
    let mut stale = h.stale_fields(day(38), 28);
    stale.sort();
    assert_eq!(stale[0], "n:192.0.2.0/24");
    assert!(stale.contains(&"n:198.51.100.0/24".to_owned()));
    assert!(!stale.contains(&"n:100.64.0.0/16".to_owned()));
    // The script's rule: the first day stays, the last becomes the day of use.
    let s = Seen::used(Seen::parse(&seen(&first, &last)), day(12));
    assert_eq!(s.to_string(), format!("{first} {}", day(12)));
    assert_eq!(Seen::used(None, day(12)).to_string(), format!("{} {}", day(12), day(12)));
}

#[test]
fn with_known_networks_an_allowance_applies_only_from_them() {
    let mb = |s: &str| crate::sender::normalize(s).expect("valid");
    let mut b = table::AllowancesBuilder::expecting(2, Some(Networks::default()));
    b.extend([table::Earned::new(&mb("a@x.org"), 300, ["192.0.2.0/24", "2001:db8:1::/48"])]);
    b.extend([table::Earned::new(&mb("b@x.org"), 200, ["198.51.100.0/24"])]);
    let t = b.build();
    assert_eq!(t.get(&mb("a@x.org"), "192.0.2.9"), Some(300));
    assert_eq!(t.get(&mb("a@x.org"), "2001:db8:1:ffff::1"), Some(300));
    assert_eq!(t.get(&mb("a@x.org"), "198.51.100.9"), None, "b@'s network, not a@'s");
    assert_eq!(t.get(&mb("a@x.org"), "203.0.113.9"), None);
    assert_eq!(t.get(&mb("b@x.org"), "198.51.100.1"), Some(200));
    assert_eq!(t.get(&mb("a@x.org"), "unknown"), Some(300), "no address: not held to a network");
}

#[test]
fn pruning_forgets_what_the_stale_fields_name() {
    let mut h = History::from_fields([("2026-01-05", "12"), ("x:2026-01-06", "1"), ("2026-01-30", "3")]);
    assert!(h.prune(day(34), 28));
    assert_eq!((h.totals.len(), h.excluded.len()), (1, 0));
    let mut h = History::from_fields([("n:192.0.2.0/24", "2026-01-02 2026-01-05"), ("2026-01-30", "3")]);
    assert!(h.prune(day(34), 28));
    assert!(h.networks.is_empty(), "last used 29 days before");
    assert!(h.stale_fields(day(34), 28).is_empty());
    assert!(!h.prune(day(80), 28), "nothing left");
}
