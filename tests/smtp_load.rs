//! The end-to-end benchmark's load client (`erl-smtp-load`, benches/postfix.sh) against a real
//! Postfix with the shipped hook: every message it sends reaches the daemon as Postfix sees it,
//! authenticated as its own user through `XCLIENT LOGIN=` (several users on one SMTP session),
//! from that user's address, and is counted for that user, recipient by recipient.

mod common;

use std::process::Command;

use common::mail::{MailServer, REMOTE};
use common::*;

#[test]
fn every_message_is_counted_for_its_xclient_user() {
    let Some(redis) = Redis::start() else { return };
    let fragment = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/main.cf.fragment"))
        .expect("main.cf fragment");
    // The client's address and every ADDR it gives (the next XCLIENT is authorized against it).
    let extra = format!("{fragment}\nsmtpd_authorized_xclient_hosts = 127.0.0.0/8, 10.0.0.0/8\n");
    let Some(mail) = MailServer::start_with(&[], &extra) else { return };
    let daemon = Daemon::start_at(
        mail.policy_socket(),
        &format!(
            "[listen]\nsocket_group = \"postfix\"\n[limits]\nglobal = 1000000\n\
             [redis]\nurl = \"{}\"\n[log]\nlevel = \"info\"\n",
            redis.url()
        ),
    );
    let users = 4;
    let out = Command::new(env!("CARGO_BIN_EXE_erl-smtp-load"))
        .args(["--server", &format!("127.0.0.1:{}", mail.submission), "--sessions", "2"])
        .args(["--duration", "1", "--warmup", "0", "--users", &users.to_string(), "--domain", "example.com"])
        .args(["--rcpt-domain", REMOTE, "--rcpt-names", "r1,r2,r3,r4,r5"])
        .output()
        .expect("run erl-smtp-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let result = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("a RESULT line");
    let field = |name: &str| -> u64 {
        result
            .split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {result}"))
    };
    assert_eq!((field("errors"), field("deferred")), (0, 0), "{stdout}\n{}", mail.maillog());
    let (messages, recipients) = (field("messages"), field("recipients"));
    assert!(messages >= 4 && recipients >= messages, "{result}");

    // Counted per user, as the daemon saw each message's sasl_username: together, exactly what
    // the client says was accepted; more than one user on the run's two sessions.
    let per_user: Vec<u64> =
        (0..users).map(|k| redis.get(&format!("erl:{}:user{k}@example.com", today())).unwrap_or(0)).collect();
    assert_eq!(per_user.iter().sum::<u64>(), recipients, "per user {per_user:?}: {result}");
    assert_eq!(redis.get(&format!("erl:{}:global", today())), Some(recipients));
    assert!(per_user.iter().filter(|&&n| n > 0).count() > 2, "per user {per_user:?}");
    // Each from its own address (XCLIENT ADDR=): user2 from 10.0.0.2.
    let log = daemon.log();
    let sent_by_2 =
        log.lines().filter(|l| l.contains("erl ok") && l.contains("user=user2@example.com ")).count();
    assert_eq!(sent_by_2 > 0, per_user[2] > 0, "user2's decisions in the log:\n{log}");
    assert!(
        log.lines().filter(|l| l.contains("user=user2@example.com ")).all(|l| l.contains("client=10.0.0.2")),
        "{log}"
    );
}
