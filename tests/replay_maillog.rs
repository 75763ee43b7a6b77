//! Issue 35: `replay --input maillog` on the log a real Postfix wrote. The daemon decides a run of
//! SMTP logins and website mail (accepted, deferred, held, unauthenticated); replaying that
//! run's own mail.log under the same config gives the same action for every message.
//! Messages refused before the queue are sent with one recipient: the log does not give the
//! count.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::mail::{LOCAL, MailServer, REMOTE};
use common::{Daemon, Redis, erl, wait_for};

const CHECKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/pickup_header_checks");

/// `n` of the other host's mailboxes (r1 to r5).
fn rcpts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("r{i}@{REMOTE}")).collect()
}

/// The daemon's decision per queue ID, from its `erl` lines at END-OF-MESSAGE.
fn daemon_decisions(log: &str) -> BTreeMap<String, String> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("erl ")? + 4..];
            let action = match rest.split(' ').next()? {
                "ok" => "DUNNO",
                "DEFER" => "DEFER_IF_PERMIT",
                "REJECT" => "REJECT",
                "HOLD" => "HOLD",
                _ => return None,
            };
            if rest.contains("stage=RCPT") {
                return None;
            }
            let qid = rest.split(' ').find_map(|f| f.strip_prefix("queue_id="))?;
            (!qid.is_empty()).then(|| (qid.to_owned(), action.to_owned()))
        })
        .collect()
}

#[test]
fn a_replay_of_postfixs_own_log_decides_as_the_daemon_did() {
    let Some(redis) = Redis::start() else { return };
    let Some(mail) = MailServer::start(&["alice@local.test", "bob@local.test"]) else { return };
    mail.hook_milter("", &[Path::new(CHECKS)]);
    let milter = mail.queue_dir().join("private/email-ratelimit-milter");
    let config = format!(
        "server_name = \"mx1\"\n[listen]\nsocket_group = \"postfix\"\n[milter]\nlisten = {:?}\n\
         [limits]\nglobal = 1000\n[[limits.mailbox]]\nemail = \"alice@{LOCAL}\"\ndaily = 4\n\
         [limits.local]\ndaily = 2\n[redis]\nurl = \"{}\"\n",
        milter.display().to_string(),
        redis.url()
    );
    let daemon = Daemon::start_at(mail.policy_socket(), &config);
    daemon.wait_log(&format!("milter on unix:{}", milter.display()), 1);
    let alice = format!("alice@{LOCAL}");
    let bob = format!("bob@{LOCAL}");
    let send = |login: &str, n: usize| mail.send(mail.submission, Some(login), login, &rcpts(n));

    // SMTP logins: alice fills her cap of 4, then is deferred twice (one recipient each); bob's
    // three recipients pass.
    for (step, (login, n, code)) in
        [(&alice, 2, 0), (&alice, 2, 0), (&alice, 1, 26), (&bob, 3, 0), (&alice, 1, 26)]
            .into_iter()
            .enumerate()
    {
        let sent = send(login, n);
        assert_eq!(sent.code, code, "step {step}, {login}: {}", sent.transcript);
    }
    // Unauthenticated mail to a local mailbox (MX): not a sender's, not asked about.
    let inbound = mail.send(mail.mx, None, "someone@elsewhere.test", &[format!("r1@{LOCAL}")]);
    assert_eq!(inbound.code, 0, "{}", inbound.transcript);
    // Website mail: www-data's two recipients fill its cap of 2; its next message is held.
    assert!(mail.sendmail_as("www-data", "www-data", None, &rcpts(2), "contact form"));
    wait_for("the first website message decided", Duration::from_secs(20), || {
        daemon.log().contains("user=local:www-data@mx1").then_some(())
    });
    assert!(mail.sendmail_as("www-data", "www-data", None, &rcpts(1), "over the cap"));
    wait_for("the held message", Duration::from_secs(20), || (mail.held().len() == 1).then_some(()));

    let decided = wait_for("7 decisions in the daemon's log", Duration::from_secs(20), || {
        let d = daemon_decisions(&daemon.log());
        (d.len() == 7).then_some(d)
    });
    let actions: Vec<&str> = decided.values().map(String::as_str).collect();
    for (action, n) in [("DUNNO", 4), ("DEFER_IF_PERMIT", 2), ("HOLD", 1)] {
        assert_eq!(actions.iter().filter(|a| **a == action).count(), n, "{decided:?}");
    }
    // Every accepted message has left the queue (its `removed` line is logged).
    wait_for("the queue empty but the held message", Duration::from_secs(30), || {
        let log = mail.maillog();
        (log.matches(": removed").count() >= 5).then_some(())
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, &config).expect("config");
    let decisions = dir.path().join("decisions.jsonl");
    let out = erl()
        .args(["replay", "--input", "maillog", "--json", "--config"])
        .arg(&config_path)
        .arg("--decisions")
        .arg(&decisions)
        .arg(mail.root().join("maillog"))
        .output()
        .expect("replay");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let replayed: BTreeMap<String, String> = std::fs::read_to_string(&decisions)
        .expect("decisions")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .map(|d| {
            (
                d["queue_id"].as_str().unwrap_or_default().to_owned(),
                d["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        replayed,
        decided,
        "replay (left) and the daemon (right), by queue ID\n{summary:#}\nmaillog:\n{}",
        mail.maillog()
    );
    let inputs = &summary["inputs"];
    assert_eq!(inputs["lines"], inputs["understood"], "every line of Postfix's own log reads: {summary:#}");
    assert_eq!(inputs["refused_one_recipient"], 3, "two deferrals and one hold: {summary:#}");
    assert_eq!(inputs["skipped"]["unauthenticated"], 1, "{summary:#}");
    assert_eq!(summary["held"], serde_json::json!({"messages": 1, "recipients": 1}), "{summary:#}");
    assert_eq!(summary["deferred"]["mailbox/1d"], 2, "{summary:#}");
}
