//! Issue 24: website mail (PHP `mail()`, scripts, cron: `sendmail` into Postfix's pickup) under
//! `[limits.local]`, through the milter in `non_smtpd_milters`, on a real Postfix with the
//! shipped `postfix/pickup_header_checks`. Each local user is counted under its own name; over
//! its cap a message is held (never delivered, never lost) and `release` lets only that mail
//! go; no fault (Redis down, the daemon down, no marker, no passwd entry) stops a message.
//! Issue 31: `release` checks each message's own marker before it lets it go.

mod common;

use std::path::Path;
use std::time::Duration;

use common::mail::{LOCAL, MailServer, REMOTE, SIEVE};
use common::{Daemon, Redis, erl, today, wait_for};

fn rcpt(i: usize) -> String {
    format!("r{i}@{REMOTE}")
}

fn local_key(name: &str) -> String {
    format!("erl:{}:local:{name}@mx1", today())
}

const CHECKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/pickup_header_checks");

#[test]
fn website_mail_is_counted_per_user_held_over_its_cap_and_released() {
    let Some(mut redis) = Redis::start() else { return };
    let Some(mail) = MailServer::start(&[]) else { return };
    // Mail held for another reason: a header_checks HOLD (as an admin might have).
    let other = mail.root().join("hold.regexp");
    std::fs::write(&other, "/^Subject: hold-me/ HOLD held by the admin's rule\n").expect("hold.regexp");
    mail.hook_milter("", &[Path::new(CHECKS), &other]);
    let socket = mail.queue_dir().join("private/email-ratelimit-milter");
    let mut daemon = Daemon::start_at(
        mail.policy_socket(),
        &format!(
            "server_name = \"mx1\"\n[listen]\nsocket_group = \"postfix\"\n[milter]\nlisten = {:?}\n\
             [limits]\nglobal = 1\n[limits.local]\ndaily = 3\n[[limits.local.user]]\nname = \"nobody\"\ndaily = 50\n\
             [redis]\nurl = \"{}\"\n",
            socket.display().to_string(),
            redis.url()
        ),
    );
    daemon.wait_log(&format!("milter on unix:{}", socket.display()), 1);

    eprintln!("1. two local users, each counted under its own name, never on the server's counter");
    assert!(mail.sendmail_as("www-data", "www-data", None, &[rcpt(1), rcpt(2)], "contact form"));
    assert!(mail.sendmail_as("nobody", "nogroup", None, &[rcpt(3)], "cron"));
    for i in 1..=3 {
        mail.wait_delivered(&rcpt(i), 1);
    }
    assert_eq!(redis.get(&local_key("www-data")), Some(2));
    assert_eq!(redis.get(&local_key("nobody")), Some(1));
    assert_eq!(redis.get(&format!("erl:{}:global", today())), None, "the SMTP server cap (1) is not touched");
    let text = mail.delivered_texts(&rcpt(1)).concat();
    assert!(text.contains("(Postfix, from userid 33)"), "{text}");
    assert!(text.contains("X-Email-Ratelimit-Uid: 33 "), "the marker, as pickup's cleanup wrote it:\n{text}");
    let (ok, top) = daemon.admin(&["top", "--local"]);
    assert!(ok && top.contains("local:www-data@mx1  cap 3/1d"), "{top}");
    // `top` is SMTP senders' (DESIGN v4), and a local user's @server is no domain.
    for args in [&["top"][..], &["top", "--domains"]] {
        let (ok, top) = daemon.admin(args);
        assert!(ok && !top.contains("local:") && !top.contains("mx1"), "{args:?}: {top}");
    }

    eprintln!("2. over its cap: held, nothing delivered, the queue ID recorded, counted nothing");
    assert!(mail.sendmail_as("www-data", "www-data", None, &[rcpt(4), rcpt(5)], "spam"));
    let held = wait_for("the message in the hold queue", Duration::from_secs(20), || {
        let h = mail.held();
        (h.len() == 1).then_some(h)
    });
    daemon.wait_log("erl HOLD user=local:www-data@mx1 rcpt=2 local=2/3 client=127.0.0.1", 1);
    assert_eq!((mail.delivered(&rcpt(4)), mail.delivered(&rcpt(5))), (0, 0));
    assert_eq!(redis.get(&local_key("www-data")), Some(2));
    let recorded = redis.cmd(&["ZRANGE", "erl:held:mx1:www-data", "0", "-1"]);
    assert_eq!(recorded, redis::Value::Array(vec![redis::Value::BulkString(held[0].clone().into_bytes())]));
    let v = &redis.violations()[0];
    assert_eq!((v["type"].as_str(), v["user"].as_str()), (Some("local"), Some("local:www-data@mx1")), "{v}");
    let (ok, status) = daemon.admin(&["status", "local:www-data", "--json"]);
    assert!(ok, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(status["user"], "local:www-data@mx1");
    assert_eq!((status["caps"][0]["used"].as_u64(), status["caps"][0]["limit"].as_u64()), (Some(2), Some(3)));
    assert_eq!(status["held"], serde_json::json!([held[0]]));

    eprintln!("3. mail held for another reason stays held; release lets only ours go, uncounted");
    assert!(mail.sendmail_as("nobody", "nogroup", None, &[rcpt(3)], "hold-me"));
    let both = wait_for("two held messages", Duration::from_secs(20), || {
        let h = mail.held();
        (h.len() == 2).then_some(h)
    });
    let foreign: Vec<&String> = both.iter().filter(|id| **id != held[0]).collect();
    // Issue 31: a queue ID planted in www-data's record (as a local user who could reach the
    // milter once could) is checked against the message itself, and not released.
    redis.cmd(&["ZADD", "erl:held:mx1:www-data", "1", foreign[0]]);
    let (ok, out) = release(&daemon, &mail, "local:www-data");
    assert!(ok, "{out}");
    assert!(out.contains(&format!("released 1 message(s) of local:www-data: {}", held[0])), "{out}");
    assert!(
        out.contains(&format!(
            "not released: {} is recorded for local:www-data, but its own marker names local:nobody: left held",
            foreign[0]
        )),
        "{out}"
    );
    mail.wait_delivered(&rcpt(4), 1);
    mail.wait_delivered(&rcpt(5), 1);
    assert_eq!(mail.held(), vec![foreign[0].clone()], "the admin's held mail stays held");
    assert_eq!(redis.get(&local_key("www-data")), Some(2), "released mail is not counted again");
    let (ok, out) = release(&daemon, &mail, "local:www-data");
    assert!(!ok && out.contains("nothing released"), "{out}");
    assert_eq!(redis.violations()[0]["action"], "release");

    eprintln!("4. a uid without a passwd entry is counted as uid<N>");
    assert!(mail.sendmail_as("54321", "54321", Some("ghost@local.test"), &[rcpt(1)], "ghost"));
    mail.wait_delivered(&rcpt(1), 2);
    assert_eq!(redis.get(&local_key("uid54321")), Some(1));

    eprintln!(
        "5. without the marker (pickup's override skips header_checks, as content filters' setups do): counted as unknown, never held"
    );
    mail.postconf(&["-P", "pickup/unix/receive_override_options=no_header_body_checks"]);
    mail.postfix(&["reload"]);
    // 4 recipients, over [limits.local]'s daily 3: one counter for all unmarked mail never holds it.
    assert!(mail.sendmail_as("www-data", "www-data", None, &[rcpt(2), rcpt(3)], "no marker"));
    assert!(mail.sendmail_as("nobody", "nogroup", None, &[rcpt(4), rcpt(5)], "no marker either"));
    for (i, n) in [(2, 2), (3, 2), (4, 2), (5, 2)] {
        mail.wait_delivered(&rcpt(i), n);
    }
    assert_eq!(redis.get(&local_key("unknown")), Some(4));
    assert_eq!(mail.held(), vec![foreign[0].clone()], "nothing unmarked is held");
    daemon.wait_log("message(s) without a valid X-Email-Ratelimit-Uid header since the last warning", 1);
    assert!(daemon.log().contains("counted as local:unknown, never held"), "{}", daemon.log());
    mail.postconf(&["-PX", "pickup/unix/receive_override_options"]);
    mail.postfix(&["reload"]);

    eprintln!("6. Redis down: website mail flows");
    redis.stop();
    assert!(mail.sendmail_as("www-data", "www-data", None, &[rcpt(3)], "redis down"));
    mail.wait_delivered(&rcpt(3), 3);
    daemon.wait_log("erl fail-open reason=redis-", 1);

    eprintln!("7. the daemon down: website mail flows (default_action=accept for this milter only)");
    daemon.stop();
    assert!(mail.sendmail_as("www-data", "www-data", None, &[rcpt(4)], "daemon down"));
    mail.wait_delivered(&rcpt(4), 3);
    assert_eq!(mail.held(), vec![foreign[0].clone()]);
}

/// Issue 31 item 3: Dovecot's own mail (Sieve vacation replies and `redirect :copy`, what
/// ISPConfig's auto-responder and "send copy to" are) goes through sendmail as the mail user,
/// vmail: counted as local:vmail and never held, however full `[limits.local]` is.
#[test]
fn dovecot_sieve_mail_is_counted_as_the_mail_user_and_never_held() {
    let Some(redis) = Redis::start() else { return };
    let Some(mail) = MailServer::start_with_sieve(&[]) else { return };
    mail.hook_milter("", &[Path::new(CHECKS)]);
    let socket = mail.queue_dir().join("private/email-ratelimit-milter");
    let daemon = Daemon::start_at(
        mail.policy_socket(),
        &format!(
            "server_name = \"mx1\"\n[listen]\nsocket_group = \"postfix\"\n[milter]\nlisten = {:?}\n\
             [limits.local]\ndaily = 1\n[redis]\nurl = \"{}\"\n",
            socket.display().to_string(),
            redis.url()
        ),
    );
    daemon.wait_log(&format!("milter on unix:{}", socket.display()), 1);
    let mailbox = format!("r1@{SIEVE}");
    mail.sieve_script(
        &mailbox,
        &format!(
            "require [\"vacation\", \"copy\"];\nredirect :copy \"{}\";\n\
             vacation :days 1 :addresses [\"{mailbox}\"] :subject \"Away\" \"I am away.\";\n",
            rcpt(2)
        ),
    );
    // Two messages from outside, from two senders: each is delivered by Dovecot, copied to
    // r2@remote.test and answered: four messages from vmail, with room for one.
    for from in [format!("r3@{LOCAL}"), format!("r4@{LOCAL}")] {
        let sent = mail.send(mail.mx, None, &from, std::slice::from_ref(&mailbox));
        assert_eq!(sent.code, 0, "{}", sent.transcript);
    }
    mail.wait_sieve_delivered(&mailbox, 2);
    mail.wait_delivered(&rcpt(2), 2);
    mail.wait_delivered(&format!("r3@{LOCAL}"), 1);
    mail.wait_delivered(&format!("r4@{LOCAL}"), 1);
    let reply = mail.delivered_texts(&format!("r3@{LOCAL}")).concat();
    assert!(
        reply.contains("Subject: Away") && reply.contains("X-Email-Ratelimit-Uid: "),
        "the vacation reply, through pickup:\n{reply}"
    );
    assert!(mail.held().is_empty(), "nothing of vmail is held");
    assert_eq!(redis.get(&local_key("vmail")), Some(4), "counted, as local:vmail");
    daemon.wait_log("erl ok user=local:vmail@mx1 rcpt=1 local=4/-", 1);
}

/// `email-ratelimit release` on the test instance (`MAIL_CONFIG` names it for postqueue and
/// postsuper).
fn release(daemon: &Daemon, mail: &MailServer, user: &str) -> (bool, String) {
    let out = erl()
        .args(["release", "--config"])
        .arg(&daemon.config)
        .arg(user)
        .env("MAIL_CONFIG", mail.config_dir())
        .output()
        .expect("release");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}
