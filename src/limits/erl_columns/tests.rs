//! One test per rule of `ISPCONFIG-ERL-COLUMNS.md`.

use super::*;

fn server(out_limit: u64, out_interval: u64, default_user_out: u64) -> Option<ServerRow> {
    Some(ServerRow { enabled: true, out_limit, out_interval, default_user_out })
}

fn policy(name: &str, mode: &str, out_limit: u64, out_interval: u64) -> PolicyRow {
    PolicyRow { name: name.into(), mode: mode.into(), out_limit, out_interval }
}

fn explicit(source: &str, direction: &str, limit: u64, interval: u64, active: bool) -> ExplicitRow {
    ExplicitRow { source: source.into(), direction: direction.into(), interval, limit, active }
}

/// The resolved mailbox caps as `address -> "N/w"`.
fn caps(r: &Resolved) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .mailboxes
        .iter()
        .map(|(m, c)| (m.to_string(), c.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")))
        .collect();
    v.sort();
    v
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[test]
fn a_server_switched_off_caps_nothing() {
    let mut rows = Rows {
        server: server(500, 3600, 0),
        mailboxes: vec![policy("a@x.org", "custom", 10, 3600)],
        explicit: vec![explicit("@x.org", "out", 100, 3600, true)],
        ..Rows::default()
    };
    rows.server.as_mut().expect("row").enabled = false;
    assert_eq!(resolve(&rows), Resolved::default());
    assert_eq!(resolve(&Rows { server: None, ..rows }), Resolved::default(), "no server row");
}

#[test]
fn mailbox_modes() {
    let rows = Rows {
        server: server(500, 3600, 0),
        mailboxes: vec![
            policy("inherits@x.org", "domain", 0, 3600),
            policy("free@x.org", "unlimited", 99, 60),
            policy("own@x.org", "custom", 20, 900),
            policy("zero@x.org", "custom", 0, 900),
        ],
        ..Rows::default()
    };
    assert_eq!(caps(&resolve(&rows)), pairs(&[("inherits@x.org", "500/1h"), ("own@x.org", "20/15m")]));
}

#[test]
fn domain_modes_for_the_mailboxes_that_inherit() {
    let rows = Rows {
        server: server(500, 86_400, 0),
        domains: vec![
            policy("global.org", "global", 7, 60),
            policy("free.org", "unlimited", 7, 60),
            policy("own.org", "custom", 40, 300),
            policy("zero.org", "custom", 0, 300),
        ],
        mailboxes: ["global.org", "free.org", "own.org", "zero.org", "unknown.org"]
            .iter()
            .map(|d| policy(&format!("m@{d}"), "domain", 0, 3600))
            .chain([policy("c@free.org", "custom", 3, 3600)])
            .collect(),
        ..Rows::default()
    };
    assert_eq!(
        caps(&resolve(&rows)),
        pairs(&[
            ("c@free.org", "3/1h"),
            ("m@global.org", "500/1d"),
            ("m@own.org", "40/5m"),
            ("m@unknown.org", "500/1d"),
        ])
    );
    let none = Rows { server: server(0, 3600, 0), ..rows };
    assert_eq!(
        caps(&resolve(&none)),
        pairs(&[("c@free.org", "3/1h"), ("m@own.org", "40/5m")]),
        "server default 0"
    );
}

#[test]
fn the_default_user_bound_lowers_inherited_caps_only() {
    let rows = Rows {
        server: server(500, 3600, 100),
        domains: vec![policy("own.org", "custom", 50, 3600), policy("free.org", "unlimited", 0, 3600)],
        mailboxes: vec![
            policy("a@x.org", "domain", 0, 3600),
            policy("b@own.org", "domain", 0, 3600),
            policy("c@x.org", "custom", 800, 3600),
            policy("d@free.org", "domain", 0, 3600),
        ],
        ..Rows::default()
    };
    assert_eq!(
        caps(&resolve(&rows)),
        pairs(&[("a@x.org", "100/1h"), ("b@own.org", "50/1h"), ("c@x.org", "800/1h")]),
        "500 lowered to 100; 50 already below; custom untouched; uncapped stays uncapped"
    );
}

#[test]
fn explicit_rows_win_and_domain_rows_are_aggregates() {
    let rows = Rows {
        server: server(500, 3600, 0),
        mailboxes: vec![policy("a@x.org", "custom", 20, 3600), policy("b@x.org", "domain", 0, 3600)],
        explicit: vec![
            explicit("A@X.org", "out", 5, 60, true),
            explicit("b@x.org", "in", 1, 60, true),
            explicit("b@x.org", "both", 9, 86_400, false),
            explicit("b@x.org", "out", 0, 60, true),
            explicit("new@y.org", "both", 3, 300, true),
            explicit("@Bücher.example", "out", 1000, 3600, true),
            explicit("@bad domain", "out", 1, 3600, true),
        ],
        ..Rows::default()
    };
    let r = resolve(&rows);
    assert_eq!(
        caps(&r),
        pairs(&[("a@x.org", "5/1m"), ("b@x.org", "500/1h"), ("new@y.org", "3/5m")]),
        "inbound, inactive and 0 rows do nothing; an address not in mail_user is capped too"
    );
    assert_eq!(r.domains, vec![("xn--bcher-kva.example".to_owned(), Rate::rcpt(1000, Window::HOUR))]);
    assert_eq!(r.skipped, 1);
}

/// Issue 20 item 8: several rows for one address or domain: the strictest cap per window, all
/// windows kept, whatever order the database returns them in.
#[test]
fn several_rows_for_one_source_keep_the_strictest_cap_per_window_in_any_order() {
    let rows = vec![
        explicit("a@x.org", "out", 2, 3600, true),
        explicit("a@x.org", "both", 1000, 86_400, true),
        explicit("a@x.org", "both", 5, 3600, true),
        explicit("a@x.org", "in", 1, 3600, true),
        explicit("@x.org", "out", 100, 3600, true),
        explicit("@x.org", "both", 50, 3600, true),
        explicit("@x.org", "out", 900, 86_400, true),
    ];
    for order in [rows.clone(), rows.iter().rev().cloned().collect()] {
        let r = resolve(&Rows {
            server: server(500, 3600, 0),
            mailboxes: vec![policy("a@x.org", "custom", 1, 60)],
            explicit: order,
            ..Rows::default()
        });
        assert_eq!(
            caps(&r),
            pairs(&[("a@x.org", "1000/1d 2/1h")]),
            "the explicit rows replace the mailbox's own"
        );
        let mut domains = r.domains.clone();
        domains.sort_by_key(|(_, rate)| rate.limit);
        assert_eq!(
            domains,
            vec![
                ("x.org".to_owned(), Rate::rcpt(50, Window::HOUR)),
                ("x.org".to_owned(), Rate::rcpt(900, Window::Day))
            ]
        );
    }
}

#[test]
fn intervals_map_to_windows_and_odd_ones_to_an_hour() {
    for (secs, w) in [
        (60, "1m"),
        (300, "5m"),
        (900, "15m"),
        (3600, "1h"),
        (21_600, "6h"),
        (86_400, "1d"),
        (7, "1h"),
        (0, "1h"),
        (7200, "1h"),
    ] {
        assert_eq!(window(secs).to_string(), w, "{secs}");
    }
    assert_eq!(cap(5_000_000_000, 60).map(|r| r.limit), Some(MAX_CAP), "clamped to the largest cap");
}

#[test]
fn the_fingerprint_moves_with_any_row() {
    let rows = Rows { server: server(500, 3600, 0), ..Rows::default() };
    let mut other = rows.clone();
    other.mailboxes.push(policy("a@x.org", "custom", 1, 60));
    assert_ne!(rows.fingerprint(), other.fingerprint());
    assert_eq!(rows.fingerprint(), rows.clone().fingerprint());
}
