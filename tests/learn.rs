//! Issue 22 item 3 (DESIGN v3 "Learned allowances") on the real daemon and a real Redis, with a
//! clock the test sets: the history folded after midnight from the day's top senders, the
//! allowance applied to a mailbox on its domain's default caps (and its shorter windows scaled),
//! nothing for a mailbox without history or one that stayed at its cap, `status` showing it,
//! SIGHUP turning learning off; and `replay` learning as its virtual days pass.

mod common;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use common::*;
use nix::sys::signal::Signal;

const CAPS: &str =
    "[[limits.domain]]\ndomain = \"x.org\"\nmailbox_daily = 50\nmailbox_rates = [\"20/1h\", \"8msg/1h\"]\n";

fn day(today: NaiveDate, back: i64) -> String {
    (today - Duration::days(back)).to_string()
}

#[test]
fn a_daemon_learns_from_the_history_in_redis() {
    let Some(redis) = Redis::start() else { return };
    let today = NaiveDate::from_ymd_opt(2026, 11, 20).expect("date");
    // 27 folded days of 100 recipients for busy@, yesterday's 100 still in the top senders; a
    // thief that sat at its cap every day (each day excluded); nothing for new@.
    for back in 2..=28 {
        redis.cmd(&["HSET", "erl:hist:busy@x.org", &day(today, back), "100"]);
        let field = format!("x:{}", day(today, back));
        redis.cmd(&["HSET", "erl:hist:thief@x.org", &day(today, back), "50", &field, "1"]);
    }
    redis.cmd(&["ZADD", &format!("erl:top:{}", day(today, 1)), "100", "busy@x.org"]);
    let clock_dir = tempfile::tempdir().expect("tempdir");
    let clock = clock_dir.path().join("now");
    let noon = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).single().expect("valid");
    std::fs::write(&clock, noon.timestamp().to_string()).expect("clock");
    let env = [("EMAIL_RATELIMIT_TEST_CLOCK", clock.to_str().expect("utf-8"))];
    let config = |learn: bool| {
        format!("timezone = \"UTC\"\n{CAPS}[learn]\nenabled = {learn}\n[redis]\nurl = \"{}\"\n", redis.url())
    };
    let mut d = Daemon::start_with(&config(true), &env);
    d.wait_log("learned allowances: 1 mailbox(es) above their default, from the history of 2 sender(s)", 1);
    d.wait_log(&format!("history: {} folded for 1 sender(s)", day(today, 1)), 1);
    assert_eq!(redis.get(&format!("erl:hist:busy@x.org:{}", day(today, 1))), None, "a hash field, not a key");
    let folded: Option<String> = redis::cmd("HGET")
        .arg("erl:hist:busy@x.org")
        .arg(day(today, 1))
        .query(&mut redis.conn())
        .expect("HGET");
    assert_eq!(folded.as_deref(), Some("100"));
    assert_eq!(redis.get(&format!("erl:once:fold:{}", day(today, 1))), Some(1));

    // busy@: 3 x 100 = 300 a day; its hourly caps scaled by 6: 120 recipients, 48 messages.
    for _ in 0..12 {
        assert_eq!(d.send("busy@x.org", 10), "DUNNO");
    }
    let deferred = d.send("busy@x.org", 1);
    assert_eq!(deferred, "DEFER_IF_PERMIT busy@x.org: Your hourly limit of 120 recipients reached");
    // No history, or a history of days at the cap: exactly the defaults.
    for user in ["new@x.org", "thief@x.org"] {
        assert_eq!(d.send(user, 20), "DUNNO");
        assert_eq!(
            d.send(user, 1),
            format!("DEFER_IF_PERMIT {user}: Your hourly limit of 20 recipients reached")
        );
    }
    let (ok, status) = d.admin(&["status", "busy@x.org"]);
    assert!(
        ok && status.contains("learned:     300 a day, 3 x the 95th percentile (100) of 28 days"),
        "{status}"
    );
    assert!(status.contains("mailbox cap: 300 (remaining 180)"), "{status}");
    let (_, json) = d.admin(&["status", "--json", "busy@x.org"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["learned"], serde_json::json!({"limit": 300, "days": 28, "p95": 100}));
    let (_, json) = d.admin(&["status", "--json", "thief@x.org"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).expect("JSON")["learned"],
        serde_json::Value::Null
    );

    // Being refused by its own cap marks today excluded (the thief's and new@'s refusals above).
    let marked: Option<String> = redis::cmd("HGET")
        .arg("erl:hist:new@x.org")
        .arg(format!("x:{today}"))
        .query(&mut redis.conn())
        .expect("HGET");
    assert_eq!(marked.as_deref(), Some("1"));
    // An admin's lock marks the day too, whether or not the sender tries again.
    let (ok, out) = d.admin(&["lock", "quiet@x.org", "--reason", "phished"]);
    assert!(ok, "{out}");
    let marked: Option<String> = redis::cmd("HGET")
        .arg("erl:hist:quiet@x.org")
        .arg(format!("x:{today}"))
        .query(&mut redis.conn())
        .expect("HGET");
    assert_eq!(marked.as_deref(), Some("1"), "{out}");

    // The next day: SIGHUP (as the midnight look would) folds today's 120 in.
    let tomorrow = noon + Duration::days(1);
    std::fs::write(&clock, tomorrow.timestamp().to_string()).expect("clock");
    d.signal(Signal::SIGHUP);
    d.wait_log(&format!("history: {today} folded for 3 sender(s)"), 1);
    let folded: Option<String> = redis::cmd("HGET")
        .arg("erl:hist:busy@x.org")
        .arg(today.to_string())
        .query(&mut redis.conn())
        .expect("HGET");
    assert_eq!(folded.as_deref(), Some("120"));

    // Learning off (SIGHUP): the defaults again, at once.
    d.write_config(&config(false));
    d.signal(Signal::SIGHUP);
    d.wait_log("reloaded: mode=enforce", 2);
    assert_eq!(d.send("busy@x.org", 20), "DUNNO", "a new day, a new hour");
    assert_eq!(
        d.send("busy@x.org", 1),
        "DEFER_IF_PERMIT busy@x.org: Your hourly limit of 20 recipients reached"
    );
    d.stop();
}

#[test]
fn replay_learns_as_its_days_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    // busy@ sends 40 recipients a day (4 messages of 10, in 4 hours) for 14 days, then 100 in
    // 10 messages over 10 hours on day 15. Within its defaults (50 a day, 20 an hour) until then.
    let start = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).single().expect("valid").timestamp();
    let mut lines = Vec::new();
    for d in 0..15 {
        let messages = if d == 14 { 10 } else { 4 };
        for m in 0..messages {
            let ts = start + d * 86_400 + m * 3600;
            lines.push(format!(
                "{{\"ts\": {ts}, \"sasl_username\": \"busy@x.org\", \"recipient_count\": 10, \"instance\": \"{d}.{m}\", \"size\": {}}}",
                1000 + d * 100 + m
            ));
        }
    }
    std::fs::write(&input, lines.join("\n") + "\n").expect("write");
    let replay = |learn: bool| {
        let config = dir.path().join(format!("c{learn}.toml"));
        std::fs::write(&config, format!("timezone = \"UTC\"\n{CAPS}[learn]\nenabled = {learn}\n"))
            .expect("write");
        let out =
            erl().args(["replay", "--json", "--config"]).arg(&config).arg(&input).output().expect("replay");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let fixed = replay(false);
    let learned = replay(true);
    // Without learning the 15th day stops at 50; with it, 40 x 3 = 120 a day takes all 100.
    assert_eq!(fixed["deferred"]["mailbox/1d"], 5, "{fixed}");
    assert_eq!(learned["deferred"], serde_json::json!({}), "{learned}");
    assert_eq!(learned["accepted"]["recipients"], 14 * 40 + 100);
}

/// `[learn] known_networks` (issue 22 item 5): a learned allowance applies only to mail from a
/// network the mailbox sent from before, on a day that was not excluded; the script remembers
/// each counted message's network (`n:<network>` = "FIRST LAST") in the history.
#[test]
fn a_learned_allowance_applies_only_from_known_networks() {
    let Some(redis) = Redis::start() else { return };
    let today = NaiveDate::from_ymd_opt(2026, 11, 20).expect("date");
    for back in 2..=28 {
        redis.cmd(&["HSET", "erl:hist:busy@x.org", &day(today, back), "100"]);
    }
    let (office, stolen) = ("n:192.0.2.0/24", "n:203.0.113.0/24");
    // The office since four weeks; a botnet's network met only on a day that was excluded.
    let office_seen = format!("{} {}", day(today, 28), day(today, 2));
    let stolen_seen = format!("{} {}", day(today, 3), day(today, 3));
    let mark = format!("x:{}", day(today, 3));
    redis.cmd(&["HSET", "erl:hist:busy@x.org", office, &office_seen, stolen, &stolen_seen, &mark, "1"]);
    let clock_dir = tempfile::tempdir().expect("tempdir");
    let clock = clock_dir.path().join("now");
    let noon = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).single().expect("valid");
    std::fs::write(&clock, noon.timestamp().to_string()).expect("clock");
    let env = [("EMAIL_RATELIMIT_TEST_CLOCK", clock.to_str().expect("utf-8"))];
    let config = format!(
        "timezone = \"UTC\"\n{CAPS}[learn]\nenabled = true\nknown_networks = true\n[redis]\nurl = \"{}\"\n",
        redis.url()
    );
    let mut d = Daemon::start_with(&config, &env);
    d.wait_log("learned allowances: 1 mailbox(es) above their default", 1);
    let ask = |client: &str, rcpt: u32| d.connect().ask(&eom_from("busy@x.org", rcpt, client));
    // From the botnet's network and from a new one: the defaults (20 an hour).
    assert_eq!(ask("203.0.113.9", 20), "DUNNO");
    assert_eq!(
        ask("198.51.100.4", 1),
        "DEFER_IF_PERMIT busy@x.org: Your hourly limit of 20 recipients reached"
    );
    // From the office (another address of its /24): the learned 300 a day, 120 an hour.
    assert_eq!(ask("192.0.2.200", 99), "DUNNO");
    assert_eq!(
        ask("192.0.2.10", 2),
        "DEFER_IF_PERMIT busy@x.org: Your hourly limit of 120 recipients reached"
    );
    // Counted messages remembered their networks; the refused one did not.
    let seen = |field: &str| -> Option<String> {
        redis::cmd("HGET").arg("erl:hist:busy@x.org").arg(field).query(&mut redis.conn()).expect("HGET")
    };
    assert_eq!(seen(office), Some(format!("{} {today}", day(today, 28))));
    assert_eq!(seen(stolen), Some(format!("{} {today}", day(today, 3))));
    assert_eq!(seen("n:198.51.100.0/24"), None);
    let (ok, status) = d.admin(&["status", "busy@x.org"]);
    assert!(ok && status.contains("only from its known networks: 192.0.2.0/24"), "{status}");
    let (_, json) = d.admin(&["status", "--json", "busy@x.org"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["learned"]["networks"], serde_json::json!(["192.0.2.0/24"]), "{json}");
    // Once remembered today, a network is not passed to the script again today (no read, no
    // write on every message): a field deleted behind the daemon's back stays deleted.
    redis.cmd(&["HDEL", "erl:hist:busy@x.org", office]);
    assert_eq!(ask("192.0.2.11", 1), "DUNNO");
    assert_eq!(seen(office), None);
    d.stop();
}

/// `replay` learns networks as the daemon does: the 15th day's mail from the office network
/// has the learned allowance, the same mail from elsewhere only the default.
#[test]
fn replay_learns_known_networks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).single().expect("valid").timestamp();
    let replay = |last_day_from: &str| {
        let input = dir.path().join("in.jsonl");
        let mut lines = Vec::new();
        for d in 0..15 {
            let (messages, client) = if d == 14 { (10, last_day_from) } else { (4, "192.0.2.7") };
            for m in 0..messages {
                let ts = start + d * 86_400 + m * 3600;
                lines.push(format!(
                    "{{\"ts\": {ts}, \"sasl_username\": \"busy@x.org\", \"recipient_count\": 10, \"client_address\": \"{client}\", \"instance\": \"{d}.{m}\"}}"
                ));
            }
        }
        std::fs::write(&input, lines.join("\n") + "\n").expect("write");
        let config = dir.path().join("c.toml");
        let learn = "[learn]\nenabled = true\nknown_networks = true\n";
        std::fs::write(&config, format!("timezone = \"UTC\"\n{CAPS}{learn}")).expect("write");
        let out = erl().args(["replay", "--json", "--config"]).arg(&config).arg(&input).output();
        let out = out.expect("replay");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let known = replay("192.0.2.99");
    assert_eq!(known["deferred"], serde_json::json!({}), "{known}");
    let stranger = replay("203.0.113.5");
    assert_eq!(stranger["deferred"]["mailbox/1d"], 5, "{stranger}");
}
