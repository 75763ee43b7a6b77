//! `[database] layout = "erl-columns"` against a real `mariadbd` holding ISPConfig's `server`,
//! `mail_domain` and `mail_user` tables with the extension's columns and `email_ratelimit`
//! table (`tests/sql/ispconfig_erl_columns.sql`), and a real `redis-server`: the panel's caps
//! reach the daemon with their windows, rows of another server are ignored, a change is picked
//! up without a restart, and a missing `email_ratelimit` table is skipped.

mod common;

use std::time::Duration;

use common::{Daemon, Mariadb, Redis, wait_for};

const DB: &str = "ispc";

fn panel(db: &Mariadb) {
    let schema =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sql/ispconfig_erl_columns.sql"))
            .expect("schema");
    db.sql(&format!(
        "CREATE DATABASE {DB}; USE {DB}; {schema}; GRANT SELECT ON {DB}.* TO 'erl'@'127.0.0.1';\
         INSERT INTO server (server_id, server_name, mail_server, erl_enabled, erl_out_limit, erl_out_interval) VALUES \
           (1, 'mx1.test', 1, 'y', 3, 3600), (2, 'mx2.test', 1, 'y', 1, 60);\
         INSERT INTO mail_domain (server_id, domain, active, erl_limit_mode, erl_out_limit, erl_out_interval) VALUES \
           (1, 'plain.test', 'y', 'global', 0, 3600), (1, 'free.test', 'y', 'unlimited', 0, 3600), \
           (1, 'tight.test', 'y', 'custom', 2, 60), (2, 'other.test', 'y', 'custom', 1, 60);\
         INSERT INTO mail_user (server_id, email, password, erl_limit_mode, erl_out_limit, erl_out_interval) VALUES \
           (1, 'inherits@plain.test', 'x', 'domain', 0, 3600), (1, 'free@free.test', 'x', 'domain', 0, 3600), \
           (1, 'own@free.test', 'x', 'custom', 4, 86400), (1, 'min@tight.test', 'x', 'domain', 0, 3600), \
           (1, 'vip@plain.test', 'x', 'custom', 50, 3600), (1, 'a@agg.test', 'x', 'unlimited', 0, 3600), \
           (1, 'b@agg.test', 'x', 'unlimited', 0, 3600), (2, 'away@other.test', 'x', 'custom', 1, 60);\
         INSERT INTO email_ratelimit (server_id, source, type, `interval`, `limit`, active) VALUES \
           (1, 'vip@plain.test', 'both', 900, 2, 'y'), (1, '@agg.test', 'out', 3600, 3, 'y'), \
           (1, 'in@plain.test', 'in', 60, 1, 'y'), (2, '@plain.test', 'out', 60, 1, 'y');"
    ));
}

fn daemon(db: &Mariadb, redis: &Redis) -> Daemon {
    let d = Daemon::start(&format!(
        "[limits]\nglobal = 100000\n[redis]\nurl = \"{}\"\n[database]\nurl = \"mysql://erl:erlpw@127.0.0.1:{}/{DB}\"\n\
         layout = \"erl-columns\"\nserver_id = 1\nrefresh_secs = 1\ntimeout_secs = 2\n",
        redis.url(),
        db.port
    ));
    d.wait_log("limits loaded from database", 1);
    d
}

/// Sends until the first refusal; the accepted count and the refusal.
fn until_refused(d: &Daemon, user: &str, most: usize) -> (usize, String) {
    for sent in 0..most {
        let reply = d.send(user, 1);
        if reply != "DUNNO" {
            return (sent, reply);
        }
    }
    (most, "DUNNO".into())
}

#[test]
fn the_panels_caps_reach_the_daemon_with_their_windows() {
    let Some(redis) = Redis::start() else { return };
    let Some(db) = Mariadb::start() else { return };
    panel(&db);
    let d = daemon(&db, &redis);
    let defer = |user: &str, text: &str| format!("DEFER_IF_PERMIT {user}: {text}");
    // The server's default (3 an hour) through a domain in "global" mode.
    assert_eq!(
        until_refused(&d, "inherits@plain.test", 10),
        (3, defer("inherits@plain.test", "Your hourly limit of 3 recipients reached"))
    );
    // A domain in "custom" mode: 2 a minute.
    assert_eq!(
        until_refused(&d, "min@tight.test", 10),
        (2, defer("min@tight.test", "Your limit of 2 recipients per minute reached"))
    );
    // Unlimited domain; a custom mailbox in it (4 a day).
    assert_eq!(until_refused(&d, "free@free.test", 10).0, 10);
    assert_eq!(
        until_refused(&d, "own@free.test", 10),
        (4, defer("own@free.test", "Your daily limit of 4 recipients reached"))
    );
    // An explicit row beats the mailbox's own custom cap.
    assert_eq!(
        until_refused(&d, "vip@plain.test", 10),
        (2, defer("vip@plain.test", "Your limit of 2 recipients per 15 minutes reached"))
    );
    // An @domain row: one cap for all its senders together.
    assert_eq!(d.send("a@agg.test", 1), "DUNNO");
    assert_eq!(d.send("b@agg.test", 1), "DUNNO");
    assert_eq!(d.send("a@agg.test", 1), "DUNNO");
    assert_eq!(
        d.send("b@agg.test", 1),
        defer("b@agg.test", "Hourly limit of 3 recipients for agg.test reached")
    );
    // Another server's rows (2 = mx2) are not ours; an inbound-only row does nothing.
    assert_eq!(until_refused(&d, "away@other.test", 5).0, 5);
    assert_eq!(until_refused(&d, "in@plain.test", 5).0, 5, "not a mailbox, inbound row only: uncapped");
    // status says where each cap comes from.
    let (_, status) = d.admin(&["status", "own@free.test"]);
    assert!(
        status.contains("mailbox    1d: 4 used today, cap 4 (remaining 0) (from: database (erl-columns))"),
        "{status}"
    );
    assert!(status.contains("server     1d: ") && status.contains("cap 100000 (remaining"), "{status}");
    assert!(
        status.lines().any(|l| l.starts_with("server") && l.ends_with("(from: config file)")),
        "{status}"
    );
    let (_, json) = d.admin(&["status", "--json", "b@agg.test"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let domain =
        v["caps"].as_array().expect("caps").iter().find(|c| c["scope"] == "domain" && c["window"] == "1h");
    assert_eq!(
        domain.map(|c| c["source"].clone()),
        Some(serde_json::json!("database (erl-columns)")),
        "{json}"
    );
    let (_, raised) = d.admin(&["raise", "own@free.test", "9/1d", "--for", "1h"]);
    let (_, status) = d.admin(&["status", "own@free.test"]);
    assert!(status.contains("cap 9 (remaining 5) (from: raise)"), "{raised}{status}");

    // A change in the panel, picked up without a restart.
    db.sql(&format!("UPDATE {DB}.mail_user SET erl_limit_mode = 'custom', erl_out_limit = 1, erl_out_interval = 60 WHERE email = 'free@free.test'"));
    wait_for("the new cap", Duration::from_secs(10), || {
        (d.send("free@free.test", 1)
            == defer("free@free.test", "Your limit of 1 recipient per minute reached"))
        .then_some(())
    });
    // The server switch off: no panel caps at all.
    db.sql(&format!("UPDATE {DB}.server SET erl_enabled = 'n' WHERE server_id = 1"));
    wait_for("the switch", Duration::from_secs(10), || {
        (d.send("inherits@plain.test", 1) == "DUNNO").then_some(())
    });
    assert_eq!(d.send("min@tight.test", 1), "DUNNO");
}

#[test]
fn a_missing_email_ratelimit_table_is_skipped_and_said_once() {
    let Some(redis) = Redis::start() else { return };
    let Some(db) = Mariadb::start() else { return };
    panel(&db);
    db.sql(&format!("DROP TABLE {DB}.email_ratelimit"));
    let d = daemon(&db, &redis);
    assert_eq!(
        until_refused(&d, "vip@plain.test", 60),
        (50, "DEFER_IF_PERMIT vip@plain.test: Your hourly limit of 50 recipients reached".to_owned()),
        "its own custom cap, without the explicit row"
    );
    d.wait_log("no table email_ratelimit", 1);
    // Refreshes later (the new cap is read), still said once.
    db.sql(&format!("UPDATE {DB}.mail_user SET erl_out_limit = 51 WHERE email = 'vip@plain.test'"));
    wait_for("the cap of 51", Duration::from_secs(10), || {
        (d.send("vip@plain.test", 1) == "DUNNO").then_some(())
    });
    assert_eq!(d.log().matches("no table email_ratelimit").count(), 1, "{}", d.log());
}

#[test]
fn the_explicit_limits_can_come_from_the_master_database() {
    let Some(redis) = Redis::start() else { return };
    let Some(db) = Mariadb::start() else { return };
    panel(&db);
    // A slave's local database has no email_ratelimit: it lives in the master's.
    db.sql(&format!(
        "CREATE DATABASE ispc_master; CREATE TABLE ispc_master.email_ratelimit LIKE {DB}.email_ratelimit; \
         INSERT INTO ispc_master.email_ratelimit SELECT * FROM {DB}.email_ratelimit; DROP TABLE {DB}.email_ratelimit; \
         UPDATE ispc_master.email_ratelimit SET `limit` = 1 WHERE source = 'vip@plain.test'; \
         GRANT SELECT ON ispc_master.* TO 'erl'@'127.0.0.1';"
    ));
    let d = Daemon::start(&format!(
        "[redis]\nurl = \"{}\"\n[database]\nurl = \"mysql://erl:erlpw@127.0.0.1:{port}/{DB}\"\n\
         master_url = \"mysql://erl:erlpw@127.0.0.1:{port}/ispc_master\"\nlayout = \"erl-columns\"\nserver_id = 1\n",
        redis.url(),
        port = db.port
    ));
    d.wait_log("limits loaded from database", 1);
    assert_eq!(
        until_refused(&d, "vip@plain.test", 5),
        (1, "DEFER_IF_PERMIT vip@plain.test: Your limit of 1 recipient per 15 minutes reached".to_owned())
    );
    assert!(!d.log().contains("no table email_ratelimit"), "{}", d.log());
}

/// Issue 20 item 8: several `email_ratelimit` rows for one address: the strictest cap per window
/// holds, whichever order MariaDB returns the rows in (a strict `out` 2/1h row followed by a
/// `both` 1000/1d row used to lose its hourly cap).
#[test]
fn several_rows_for_one_address_keep_the_strictest_in_either_order() {
    let Some(redis) = Redis::start() else { return };
    let Some(db) = Mariadb::start() else { return };
    panel(&db);
    let rows = [("out", 3600, 2), ("both", 86400, 1000)];
    for (round, order) in [rows, [rows[1], rows[0]]].iter().enumerate() {
        let user = format!("multi{round}@plain.test");
        let values: Vec<String> = order
            .iter()
            .map(|(kind, interval, limit)| format!("(1, '{user}', '{kind}', {interval}, {limit}, 'y')"))
            .collect();
        db.sql(&format!(
            "INSERT INTO {DB}.email_ratelimit (server_id, source, type, `interval`, `limit`, active) VALUES {};",
            values.join(", ")
        ));
    }
    let d = daemon(&db, &redis);
    for round in 0..2 {
        let user = format!("multi{round}@plain.test");
        assert_eq!(
            until_refused(&d, &user, 10),
            (2, format!("DEFER_IF_PERMIT {user}: Your hourly limit of 2 recipients reached")),
            "round {round}"
        );
        let (_, status) = d.admin(&["status", &user]);
        assert!(status.contains("1d") && status.contains("1000"), "the daily row holds too:\n{status}");
    }
}
